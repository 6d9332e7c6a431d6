"""Temperature calibration through scikit-learn's ``CalibratedClassifierCV``.

"No One Representation to Rule Them All" (Gontijo-Lopes et al., ICLR 2022)
calibrates every model with temperature scaling before ensembling (§3.2: "we
found it necessary to calibrate all models"; Guo et al., 2017). We never
optimise the temperature ourselves:
``CalibratedClassifierCV(FrozenEstimator(model), method="temperature")`` fits it
on held-out data, or, without held-out data, on the other folds of the
evaluated samples (:func:`cross_fitted_probas`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_consistent_length

from .._member_fitting import temperature_calibrated_prefit
from ._metrics import _check_labels_1d, _check_proba, _resolve_labels, check_same_label_type


def calibrate_temperature(estimator, X_calib, y_calib):
    """Temperature-scale a fitted classifier on held-out data.

    Parameters
    ----------
    estimator : fitted classifier
        Must have ``predict_proba`` or ``decision_function``; it is not refitted.
    X_calib : array-like
        Held-out samples (not used to fit ``estimator``).
    y_calib : array-like of shape (n_samples,)
        Their labels.

    Returns
    -------
    CalibratedClassifierCV
        Fitted; ``predict_proba`` gives calibrated probabilities and
        ``calibrated_classifiers_[0].calibrators[0].beta_`` the inverse temperature.

    See Also
    --------
    calibrate_probas : The same for probability arrays.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from repens_sklearn.diversity import calibrate_temperature
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=500).fit(X[::2], y[::2])
    >>> cal = calibrate_temperature(clf, X[1::2], y[1::2])
    >>> cal.predict_proba(X[:2]).shape
    (2, 3)
    """
    if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
        raise TypeError(
            "estimator must be a fitted classifier with predict_proba or "
            f"decision_function; got {type(estimator).__name__}."
        )
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        y_calib = _check_labels_1d(y_calib, "y_calib")
        check_same_label_type(**{"y_calib": y_calib, "the estimator's classes_": classes})
        _check_every_class(y_calib, np.asarray(classes))
    return temperature_calibrated_prefit(estimator, X_calib, y_calib)


def _check_every_class(y_calib, labels):
    """``CalibratedClassifierCV`` needs every class among the calibration labels."""
    missing = np.setdiff1d(labels, y_calib)
    if len(missing):
        raise ValueError(
            f"y_calib must contain every class to fit a temperature; {missing.tolist()} "
            f"missing (classes: {np.asarray(labels).tolist()})."
        )


class _ProbaPassthrough(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose input is already its probability output.

    Lets ``CalibratedClassifierCV`` temperature-scale stored probability arrays
    (it takes their log as logits).
    """

    def __init__(self, classes):
        self.classes = classes

    def fit(self, X, y=None):
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)

    def predict(self, X):
        return self.classes_[np.argmax(X, axis=1)]


def calibrate_probas(proba_calib, y_calib, proba, *, labels=None):
    """Temperature-scale stored probabilities with a temperature fitted on held-out ones.

    Parameters
    ----------
    proba_calib : array-like of shape (n_calib, n_classes)
        The model's probabilities on held-out samples.
    y_calib : array-like of shape (n_calib,)
        Labels of those samples.
    proba : array-like of shape (n_samples, n_classes)
        The probabilities to calibrate (e.g. on the test split).
    labels : array-like of shape (n_classes,), default=None
        The class of each column; default ``np.unique(y_calib)``.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        ``softmax(log(proba) / T)`` with ``T`` fitted by
        ``CalibratedClassifierCV(method="temperature")``.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import calibrate_probas
    >>> p = np.array([[0.99, 0.01], [0.02, 0.98], [0.97, 0.03], [0.99, 0.01]])
    >>> bool(calibrate_probas(p, [0, 1, 1, 0], p)[0, 0] < 0.99)
    True
    """
    y_calib = _check_labels_1d(y_calib, "y_calib")
    proba_calib = _check_proba(proba_calib, "proba_calib")
    proba = _check_proba(proba, "proba")
    check_consistent_length(proba_calib, y_calib)
    if proba.shape[1] != proba_calib.shape[1]:
        raise ValueError(
            "proba and proba_calib must have the same number of columns; got "
            f"{proba.shape[1]} and {proba_calib.shape[1]}."
        )
    labels = _resolve_labels(y_calib, proba_calib.shape[1], labels, "proba_calib", y_name="y_calib")
    _check_every_class(y_calib, labels)
    model = _ProbaPassthrough(labels).fit(proba_calib)
    return temperature_calibrated_prefit(model, proba_calib, y_calib).predict_proba(proba)


CALIBRATION_FOLDS = 5


def calibration_folds(y, n_folds=CALIBRATION_FOLDS):
    """Fold index of every sample: stratified, balanced and deterministic.

    Samples sorted by class (stable) are dealt to the folds in turn, so fold
    sizes differ by at most one and a class with at least two samples appears
    in every fold's complement. ``min(n_folds, n_samples)`` folds.
    """
    y = np.asarray(y)
    folds = np.empty(len(y), dtype=np.intp)
    folds[np.argsort(y, kind="stable")] = np.arange(len(y)) % min(n_folds, len(y))
    return folds


def cross_fitted_probas(proba, y, labels, n_folds=CALIBRATION_FOLDS):
    """Temperature-scale ``proba`` without held-out data, by cross-fitting.

    Each fold's probabilities are scaled with a temperature fitted (by
    :func:`calibrate_probas`) on the other folds, so no sample's own label sets
    its temperature.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Validated probabilities of one model on the evaluated samples.
    y : ndarray of shape (n_samples,)
        Their labels; every class needs at least two samples.
    labels : ndarray of shape (n_classes,)
        The class of each column.
    n_folds : int, default=5
        Number of folds (at most ``n_samples``).

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
    """
    classes, counts = np.unique(y, return_counts=True)
    if len(y) < 2 or counts.min() < 2 or len(classes) < len(labels):
        few = (
            classes[counts < 2].tolist()
            if len(classes) == len(labels)
            else np.setdiff1d(labels, classes).tolist()
        )
        raise ValueError(
            "calibrate=True without held-out data fits each model's temperature on the "
            "other folds of the evaluated samples, which needs at least 2 samples of every "
            f"class; classes {few} have fewer. Pass held-out data (X_calib, y_calib) or "
            "calibrate=False."
        )
    folds = calibration_folds(y, n_folds)
    out = np.empty_like(proba)
    for k in np.unique(folds):
        test = folds == k
        out[test] = calibrate_probas(proba[~test], y[~test], proba[test], labels=labels)
    return out
