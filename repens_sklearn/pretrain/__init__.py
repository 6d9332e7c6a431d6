"""Self-supervised pretraining: EnSiam and the SimSiam K-aug baseline
("EnSiam: Self-Supervised Learning With Ensemble Representations", Han & Lee)."""

from ._estimator import EnSiamPretrainer
from ._knn import weighted_knn_accuracy
from ._losses import collapse_std, ensemble_loss, negative_cosine, pair_loss
from ._modules import SiameseNetwork, prediction_mlp, projection_mlp
from ._net import CollapseMonitor, CollapseWarning, KNNMonitor, NonFiniteLossError

__all__ = [
    "CollapseMonitor",
    "CollapseWarning",
    "EnSiamPretrainer",
    "KNNMonitor",
    "NonFiniteLossError",
    "SiameseNetwork",
    "collapse_std",
    "ensemble_loss",
    "negative_cosine",
    "pair_loss",
    "prediction_mlp",
    "projection_mlp",
    "weighted_knn_accuracy",
]
