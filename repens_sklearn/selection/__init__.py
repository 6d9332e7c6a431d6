"""Model selection and ensembles of several pre-trained models.

Paper: deep-ensembles-low-data-transfer (kNN selection -> fine-tuning sweep ->
greedy ensemble).
"""

from ._caruana import greedy_selection
from ._finetune import FineTuneClassifier, PaperSchedule, make_finetune_sweep
from ._greedy import GreedyEnsembleClassifier
from ._knn import KNNModelSelector
from ._loo import loo_knn_accuracy, loo_knn_predict

__all__ = [
    "FineTuneClassifier",
    "GreedyEnsembleClassifier",
    "KNNModelSelector",
    "PaperSchedule",
    "greedy_selection",
    "loo_knn_accuracy",
    "loo_knn_predict",
    "make_finetune_sweep",
]
