"""Diversity of classifiers and representations (Gontijo-Lopes et al., "No One Representation
to Rule Them All", ICLR 2022): error (in)consistency, conversion rate, specialisation angle,
ensemble gain, pairwise tables, linear CKA, temperature calibration through scikit-learn, and
matplotlib displays (the ``plot`` extra; imported only when drawing).
"""

from ._calibration import calibrate_probas, calibrate_temperature
from ._displays import (
    ConfidenceDisplay,
    EnsembleCurveDisplay,
    PairwiseDiversityDisplay,
    SelectionDisplay,
)
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
    "EnsembleCurveDisplay",
    "ErrorConsistency",
    "PairwiseDiversityDisplay",
    "SelectionDisplay",
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
