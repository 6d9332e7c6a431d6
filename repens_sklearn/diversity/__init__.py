"""Diversity of classifiers and representations (Gontijo-Lopes et al., "No One Representation
to Rule Them All", ICLR 2022): error (in)consistency, conversion rate, specialisation angle,
ensemble gain, pairwise tables, linear CKA, temperature calibration through scikit-learn, and
matplotlib displays (the ``plot`` extra; imported only when drawing).

The displays of selection objects, :class:`~repens_sklearn.selection.SelectionDisplay`
and :class:`~repens_sklearn.selection.EnsembleCurveDisplay`, live in
``repens_sklearn.selection``; they stay importable from here, loaded on first use
so that importing ``diversity`` does not import ``selection``.
"""

import importlib

from ._calibration import calibrate_probas, calibrate_temperature
from ._displays import ConfidenceDisplay, PairwiseDiversityDisplay
from ._metrics import (
    ErrorConsistency,
    conversion_rate,
    ensemble_gain,
    ensemble_proba,
    error_consistency,
    error_inconsistency,
    linear_cka,
    specialization_angle,
)
from ._pairwise import pairwise_diversity

__all__ = [
    "ConfidenceDisplay",
    "ErrorConsistency",
    "PairwiseDiversityDisplay",
    "calibrate_probas",
    "calibrate_temperature",
    "conversion_rate",
    "ensemble_gain",
    "ensemble_proba",
    "error_consistency",
    "error_inconsistency",
    "linear_cka",
    "pairwise_diversity",
    "specialization_angle",
]

# Former home of selection's displays: names kept for code written against it (PEP 562).
_MOVED = {
    "EnsembleCurveDisplay": "repens_sklearn.selection",
    "SelectionDisplay": "repens_sklearn.selection",
}


def __getattr__(name):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MOVED])
