"""The one place that imports scikit-learn's private helpers.

scikit-learn moves its private names between releases; importing them here
only (as imbalanced-learn does in ``imblearn.utils.fixes``) means a release
that moves one breaks this file and nothing else.
"""

from sklearn.base import _fit_context
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Hidden, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import _num_samples

__all__ = [
    "HasMethods",
    "Hidden",
    "Interval",
    "StrOptions",
    "_BaseComposition",
    "_fit_context",
    "_num_samples",
    "_safe_indexing",
]
