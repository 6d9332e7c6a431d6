"""Model selection and ensembles of several pre-trained models.

Paper: "Deep Ensembles for Low-Data Transfer Learning" (kNN selection ->
fine-tuning sweep -> greedy ensemble), with the transferability scores
LogME, H-score and a cross-validated linear probe as alternatives to the
leave-one-out kNN accuracy, and NLEEP, SFDA, GBC, TransRate, ETran and
their rank aggregate (``scoring=[...]``); the displays of a fitted selector and of a greedy
ensemble (matplotlib, the ``plot`` extra; imported only when drawing).
"""

from ._caruana import greedy_selection
from ._displays import EnsembleCurveDisplay, SelectionDisplay
from ._finetune import FineTuneClassifier, PaperSchedule, make_finetune_sweep
from ._greedy import GreedyEnsembleClassifier
from ._loo import loo_knn_accuracy, loo_knn_predict
from ._selector import KNNModelSelector, TransferabilitySelector
from ._transferability import (
    etran_score,
    gbc_score,
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    mean_rank_score,
    nleep_score,
    sfda_score,
    transrate_score,
)

__all__ = [
    "EnsembleCurveDisplay",
    "FineTuneClassifier",
    "GreedyEnsembleClassifier",
    "KNNModelSelector",
    "PaperSchedule",
    "SelectionDisplay",
    "TransferabilitySelector",
    "etran_score",
    "gbc_score",
    "greedy_selection",
    "hscore",
    "knn_loo_score",
    "linear_cv_score",
    "logme_score",
    "loo_knn_accuracy",
    "loo_knn_predict",
    "make_finetune_sweep",
    "mean_rank_score",
    "nleep_score",
    "sfda_score",
    "transrate_score",
]
