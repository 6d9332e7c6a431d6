"""Ensemble members: fit a clone unless the user handed over a fitted one; calibrate."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted


def is_fitted(estimator) -> bool:
    """Whether ``estimator`` is fitted by scikit-learn's rule (False for non-estimators)."""
    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return False
    return True


def fit_embed(transformer, X, y):
    """Fit a clone of ``transformer`` and embed ``X``; a fitted one is used as it is.

    Returns ``(fitted transformer, dense float32 (n_samples, d) embedding)``.
    Module-level so that ``joblib.Memory`` can cache it: the key is the
    transformer's parameters (and fitted state) plus X and y.
    """
    if is_fitted(transformer):
        return transformer, as_embedding(transformer.transform(X))
    fitted = clone(transformer)
    if hasattr(fitted, "fit_transform"):
        Z = fitted.fit_transform(X, y)
    else:
        Z = fitted.fit(X, y).transform(X)
    return fitted, as_embedding(Z)


def as_embedding(Z):
    """Dense float32 2-D array from whatever a transformer returned."""
    if hasattr(Z, "toarray"):
        Z = Z.toarray()
    Z = np.asarray(Z, dtype=np.float32)
    return Z.reshape(len(Z), -1)


def temperature_calibrated(estimator, **params):
    """``CalibratedClassifierCV(estimator, method="temperature", **params)``.

    Temperature scaling arrived in scikit-learn 1.8 (which needs Python >= 3.11);
    on older versions this says so instead of failing in parameter validation.
    """
    import sklearn
    from sklearn.utils.fixes import parse_version

    if parse_version(sklearn.__version__).release < (1, 8):
        raise ImportError(
            "temperature calibration needs scikit-learn >= 1.8 (CalibratedClassifierCV("
            f"method='temperature')); scikit-learn {sklearn.__version__} is installed"
        )
    return CalibratedClassifierCV(estimator, method="temperature", **params)


def temperature_calibrated_prefit(estimator, X_calib, y_calib):
    """Temperature-scale a fitted classifier on held-out ``(X_calib, y_calib)``; fitted.

    The estimator is frozen, so one "split" whose test part is every held-out
    sample gives the prefit behaviour without cross-validation's minimum number
    of samples per class.
    """
    from sklearn.frozen import FrozenEstimator

    whole = [(np.arange(len(y_calib)), np.arange(len(y_calib)))]
    return temperature_calibrated(FrozenEstimator(estimator), cv=whole).fit(X_calib, y_calib)
