"""Pairwise diversity metrics between two classifiers.

From Gontijo-Lopes et al., "No One Representation to Rule Them All:
Overlapping Features of Training Methods" (ICLR 2022).

Inputs are validated like :mod:`sklearn.metrics`: 1-D label vectors, probability
matrices of shape ``(n_samples, n_classes)`` whose columns follow ``labels``
(default: the sorted labels of ``y_true``), consistent lengths.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score
from sklearn.utils import check_array, check_consistent_length, column_or_1d
from sklearn.utils.multiclass import type_of_target, unique_labels

from .._warnings import warn

ErrorConsistency = namedtuple("ErrorConsistency", ["observed", "expected", "kappa"])
ErrorConsistency.__doc__ = """Result of :func:`error_consistency`.

observed : float
    Fraction of samples on which both models are right or both are wrong.
expected : float
    The agreement expected from two independent models with the same accuracies.
kappa : float
    Cohen's kappa ``(observed - expected) / (1 - expected)``; NaN when undefined.
"""


# --------------------------------------------------------------------------- validation
def _check_labels_1d(y, name):
    y = column_or_1d(y, warn=True)
    kind = type_of_target(y, input_name=name)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"{name} must hold class labels (binary or multiclass targets); got a {kind!r} target."
        )
    return y


def check_same_label_type(**arrays):
    """Raise unless the label arrays (passed by parameter name) hold one kind of label.

    scikit-learn's rule (``unique_labels``): strings and numbers never mix, nor
    do class labels and continuous values; ``"1"`` never equals ``1``, so a
    mix would count every sample as a mistake.
    """
    try:
        unique_labels(*arrays.values())
    except ValueError as exc:
        kinds = "; ".join(f"{name} holds {_label_kinds(a)}" for name, a in arrays.items())
        raise ValueError(
            f"{', '.join(arrays)} must hold labels of the same type ({kinds}): {exc}"
        ) from exc


def _label_kinds(labels):
    kinds = sorted({type(v).__name__ for v in np.asarray(labels).ravel().tolist()})
    return " and ".join(kinds) + " labels"


def _check_predictions(y_true, *y_preds):
    """1-D labels of equal length and of one type: ``y_true`` then each ``y_pred``."""
    y_true = _check_labels_1d(y_true, "y_true")
    names = ["y_pred_a", "y_pred_b"] if len(y_preds) == 2 else ["y_pred"] * len(y_preds)
    y_preds = [column_or_1d(p, warn=True) for p in y_preds]
    check_consistent_length(y_true, *y_preds)
    for name, p in zip(names, y_preds):
        if len(p) == 0:
            raise ValueError(f"{name} is empty; at least one sample is required.")
    check_same_label_type(y_true=y_true, **dict(zip(names, y_preds)))
    return y_true, y_preds


def _check_proba(y_prob, name):
    """A finite ``(n_samples, n_classes >= 2)`` float array whose rows are probabilities."""
    y_prob = check_array(y_prob, dtype=np.float64, ensure_all_finite=False, input_name=name)
    if y_prob.shape[1] < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, n_classes) with n_classes >= 2; "
            f"got shape {y_prob.shape}."
        )
    bad = ~np.isfinite(y_prob).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} contains NaN or infinite values in {int(bad.sum())} of {len(y_prob)} "
            f"rows (first: row {int(np.argmax(bad))}); probabilities must be finite."
        )
    if y_prob.max() > 1:
        raise ValueError(
            f"{name} contains values greater than 1: {y_prob.max()} (row "
            f"{int(np.argmax(y_prob.max(axis=1)))}); pass probabilities, not "
            "logits or scores."
        )
    if y_prob.min() < 0:
        raise ValueError(
            f"{name} contains values lower than 0: {y_prob.min()} (row "
            f"{int(np.argmin(y_prob.min(axis=1)))}); pass probabilities, not "
            "logits or scores."
        )
    sums = y_prob.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-4):
        row = int(np.argmax(np.abs(sums - 1)))
        raise ValueError(
            f"The {name} values do not sum to one (row {row} sums to {sums[row]:.6g}). Make "
            "sure to pass probabilities, e.g. the output of predict_proba."
        )
    return y_prob


def _resolve_labels(y_true, n_columns, labels, name, y_name="y_true"):
    """The class of every probability column; every y_true label must be among them."""
    if labels is None:
        labels = np.unique(y_true)
        if len(labels) != n_columns:
            raise ValueError(
                f"y_true and {name} contain different number of classes: {len(labels)} vs "
                f"{n_columns}. Please provide the true labels explicitly through the labels "
                f"argument. Classes found in y_true: {labels}"
            )
        return labels
    labels = column_or_1d(labels)
    check_same_label_type(**{y_name: y_true, "labels": labels})
    if len(np.unique(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}.")
    if len(labels) != n_columns:
        raise ValueError(
            f"The number of labels ({len(labels)}) does not match the number of columns "
            f"of {name} ({n_columns})."
        )
    missing = np.setdiff1d(y_true, labels)
    if len(missing):
        raise ValueError(f"y_true contains labels not present in labels: {missing}")
    return labels


def _check_probas(y_true, proba_a, proba_b, labels=None, *, y_true_required=True):
    """Validate a pair of probability matrices against ``y_true``; return numpy arrays."""
    proba_a = _check_proba(proba_a, "proba_a")
    proba_b = _check_proba(proba_b, "proba_b")
    if proba_a.shape[1] != proba_b.shape[1]:
        raise ValueError(
            "proba_a and proba_b must have the same number of classes (columns); got "
            f"{proba_a.shape[1]} and {proba_b.shape[1]}."
        )
    if y_true is None:
        check_consistent_length(proba_a, proba_b)
        if labels is None:
            labels = np.arange(proba_a.shape[1])
        return None, proba_a, proba_b, np.asarray(labels)
    y_true = _check_labels_1d(y_true, "y_true")
    check_consistent_length(y_true, proba_a, proba_b)
    labels = _resolve_labels(y_true, proba_a.shape[1], labels, "proba_a")
    return y_true, proba_a, proba_b, labels


def _correct(y_true, proba, labels):
    return labels[np.argmax(proba, axis=1)] == y_true


_AVERAGING = ("proba", "logit")
_LOG_EPS = 1e-12  # as scikit-learn's temperature scaling turns probabilities into logits

# The specialisation angle beyond which the more confident model's top-1 class always
# wins the probability average: the lines c_b = 2 c_a - 1 and c_a = 2 c_b - 1 (Fig. 9).
_THETA_ALWAYS_WINS = float(np.arctan(2.0) - np.pi / 4)


def _check_option(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}.")
    return value


# --------------------------------------------------------------------------- metrics
def error_inconsistency(y_true, y_pred_a, y_pred_b):
    """Fraction of samples on which exactly one of two models is right.

    The paper's measure of error (de)correlation (§4, Fig. 1): the higher it is,
    the more the two models' mistakes fall on different samples, which is what an
    ensemble can convert into correct predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred_a, y_pred_b : array-like of shape (n_samples,)
        Predicted labels of the two models.

    Returns
    -------
    float
        In ``[0, 1]``.

    See Also
    --------
    error_consistency : Observed agreement on correctness and Cohen's kappa.

    Examples
    --------
    >>> from repens_sklearn.diversity import error_inconsistency
    >>> error_inconsistency([0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1])
    0.5
    """
    y_true, (a, b) = _check_predictions(y_true, y_pred_a, y_pred_b)
    return float(np.mean((a == y_true) != (b == y_true)))


def error_consistency(y_true, y_pred_a, y_pred_b):
    """Error consistency of two models (Geirhos et al., 2020).

    ``observed`` is the fraction of samples where both models are right or both
    wrong (``1 - error_inconsistency``); ``expected`` is that fraction for two
    independent models with the same accuracies ``p_a p_b + (1 - p_a)(1 - p_b)``;
    ``kappa`` is Cohen's kappa of the two correctness vectors, computed by
    :func:`sklearn.metrics.cohen_kappa_score`. Kappa is undefined (NaN, with an
    ``UndefinedMetricWarning``) when ``expected == 1``, i.e. when each model is
    right everywhere or wrong everywhere.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred_a, y_pred_b : array-like of shape (n_samples,)
        Predicted labels of the two models.

    Returns
    -------
    ErrorConsistency
        Named tuple ``(observed, expected, kappa)``.

    See Also
    --------
    error_inconsistency : The fraction of samples where exactly one model is right.

    Examples
    --------
    >>> from repens_sklearn.diversity import error_consistency
    >>> res = error_consistency([0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1])
    >>> float(res.observed), float(res.kappa)
    (1.0, 1.0)
    """
    y_true, (a, b) = _check_predictions(y_true, y_pred_a, y_pred_b)
    ca, cb = a == y_true, b == y_true
    observed = float(np.mean(ca == cb))
    pa, pb = ca.mean(), cb.mean()
    expected = float(pa * pb + (1 - pa) * (1 - pb))
    if np.isclose(expected, 1.0):
        warn(
            "Cohen's kappa is undefined: each model is right on every sample or wrong on "
            "every sample, so the expected agreement is 1. Returning kappa=nan.",
            UndefinedMetricWarning,
        )
        return ErrorConsistency(observed, expected, float("nan"))
    kappa = cohen_kappa_score(ca, cb, labels=[False, True])
    return ErrorConsistency(observed, expected, float(kappa))


def ensemble_proba(proba_a, proba_b, weights=None, *, averaging="proba"):
    """Probabilities of the two-model ensemble: averaged probabilities or averaged logits.

    ``averaging="proba"`` is the weighted mean of the probabilities;
    ``averaging="logit"`` the softmax of the weighted mean of the logits, taken
    as ``log(p + 1e-12)`` (log-probabilities differ from a model's logits by a
    constant per sample, which the softmax removes): the normalized weighted
    geometric mean of the probabilities. The paper averages the logits of
    temperature-calibrated models and finds equal weights as good as any
    (§3.2, appendix Fig. 11).

    Parameters
    ----------
    proba_a, proba_b : array-like of shape (n_samples, n_classes)
        Predicted probabilities of the two models.
    weights : array-like of shape (2,), default=None
        Weights of A and B (finite, non-negative, not both 0); equal by default.
    averaging : {"proba", "logit"}, default="proba"
        Average the probabilities or the logits.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to one.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import ensemble_proba
    >>> pa, pb = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    >>> ensemble_proba(pa, pb).round(3)
    array([[0.55, 0.45]])
    >>> ensemble_proba(pa, pb, averaging="logit").round(3)
    array([[0.6, 0.4]])
    """
    _check_option("averaging", averaging, _AVERAGING)
    pa, pb = _check_proba(proba_a, "proba_a"), _check_proba(proba_b, "proba_b")
    if pa.shape != pb.shape:
        raise ValueError(
            f"proba_a and proba_b must have the same shape (n_samples, n_classes); got "
            f"{pa.shape} and {pb.shape}."
        )
    w = _check_pair_weights(weights)
    if averaging == "proba":
        return w * pa + (1 - w) * pb
    logits = w * np.log(pa + _LOG_EPS) + (1 - w) * np.log(pb + _LOG_EPS)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def _check_pair_weights(weights):
    """The share of model A from ``weights`` (2 finite non-negative numbers, positive sum)."""
    if weights is None:
        return 0.5
    w = check_array(
        weights, ensure_2d=False, ensure_all_finite=False, dtype=np.float64, input_name="weights"
    )
    if w.shape != (2,) or not np.isfinite(w).all() or w.min() < 0 or w.sum() <= 0:
        raise ValueError(
            "weights must be 2 finite, non-negative numbers (of proba_a and proba_b) with "
            f"a positive sum; got {np.asarray(weights).tolist()}."
        )
    return float(w[0] / w.sum())


def conversion_rate(
    y_true, proba_a, proba_b, *, labels=None, among="inconsistent", averaging="proba"
):
    """Share of the samples the members get wrong that the ensemble gets right.

    With ``among="inconsistent"`` (the paper's conversion rate, §4.2, Fig. 2
    right): among the samples where exactly one of the two models is right (its
    top-1 class), the fraction where the ensemble's top-1 class is the true
    class. With ``among="neither"`` (appendix Fig. 10): among the samples where
    neither model is right, the fraction the ensemble gets right all the same
    (the paper counts 94 of 7154 for two ResNet-50 reinitialisations, 355 of
    5192 for ResNet-50 with CLIP).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    proba_a, proba_b : array-like of shape (n_samples, n_classes)
        Predicted probabilities; columns follow ``labels``.
    labels : array-like of shape (n_classes,), default=None
        The class of each probability column; default ``np.unique(y_true)``.
    among : {"inconsistent", "neither"}, default="inconsistent"
        The samples to convert: those exactly one model gets right, or those
        both get wrong.
    averaging : {"proba", "logit"}, default="proba"
        How the ensemble combines the models (:func:`ensemble_proba`).

    Returns
    -------
    float
        In ``[0, 1]``; NaN with an ``UndefinedMetricWarning`` when there is no
        such sample.

    See Also
    --------
    error_inconsistency : How many samples there are to convert.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import conversion_rate
    >>> pa = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> pb = np.array([[0.4, 0.6], [0.1, 0.9]])
    >>> conversion_rate([0, 1], pa, pb)
    1.0
    >>> p3a = np.array([[0.5, 0.4, 0.1]])
    >>> p3b = np.array([[0.1, 0.4, 0.5]])
    >>> conversion_rate([1], p3a, p3b, labels=[0, 1, 2], among="neither")
    1.0
    """
    _check_option("among", among, ("inconsistent", "neither"))
    _check_option("averaging", averaging, _AVERAGING)
    y_true, pa, pb, labels = _check_probas(y_true, proba_a, proba_b, labels)
    ca, cb = _correct(y_true, pa, labels), _correct(y_true, pb, labels)
    subset = (ca != cb) if among == "inconsistent" else (~ca & ~cb)
    if not subset.any():
        what = "has exactly one model right" if among == "inconsistent" else "has both models wrong"
        warn(
            f"conversion_rate is undefined: no sample {what}. Returning nan.",
            UndefinedMetricWarning,
        )
        return float("nan")
    ens = _correct(y_true, ensemble_proba(pa, pb, averaging=averaging), labels)
    return float(ens[subset].mean())


def specialization_angle(proba_a, proba_b, y_true=None, *, labels=None):
    """The paper's specialisation angle theta of every sample (§4.3, Fig. 3 and 9).

    With ``c_a`` and ``c_b`` the top-1 confidences (largest probability) of the
    two models, a sample is the point ``(c_a, c_b)`` of the confidence-confidence
    plane. In the averaged probabilities, A's top-1 class gets at least
    ``c_a / 2`` and any other class at most ``((1 - c_a) + c_b) / 2``, so A's
    top-1 class wins whatever the other probabilities are exactly when
    ``c_b < 2 c_a - 1`` (and B's when ``c_a < 2 c_b - 1``). These thresholds,
    the dotted lines of Fig. 9, are lines through ``(1, 1)``, the corner where
    both models are certain. So theta is the angle measured about ``(1, 1)``,
    from the diagonal to the sample::

        theta = arctan2(1 - c_b, 1 - c_a) - pi/4

    0 on the diagonal (equally confident, and at ``(1, 1)``), up to ``+pi/4``
    when model A is the more confident, down to ``-pi/4`` when model B is. It is
    constant along every line through ``(1, 1)``, so the thresholds are the
    fixed angles ``+-(arctan 2 - pi/4) = +-0.3218``:
    beyond them the more confident model's top-1 class is the ensemble's, as
    Fig. 9 asks of theta ("measures distances in a way that aligns with these
    thresholds"). An angle about the origin, like ``c_a - c_b``, does not: along
    the threshold ``c_b = 2 c_a - 1`` it runs from 0.27 at ``c_a = 0.7`` to 0.005
    at ``c_a = 0.99``.

    Parameters
    ----------
    proba_a, proba_b : array-like of shape (n_samples, n_classes)
        Predicted probabilities.
    y_true : array-like of shape (n_samples,), default=None
        Ground truth; optional, only checked against the probabilities (lengths,
        classes) so that the angles can be grouped by correctness afterwards.
    labels : array-like of shape (n_classes,), default=None
        The class of each probability column (used with ``y_true``).

    Returns
    -------
    ndarray of shape (n_samples,)
        Angles in radians, in ``[-pi/4, pi/4]``.

    See Also
    --------
    ConfidenceDisplay : Scatter of the confidences and histograms of theta.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import specialization_angle
    >>> specialization_angle([[0.9, 0.1]], [[0.5, 0.5]]).round(3)
    array([0.588])
    >>> # two points of the threshold c_b = 2 c_a - 1: the same angle
    >>> pa = np.array([[0.7, 0.1, 0.1, 0.1], [0.9, 0.1, 0.0, 0.0]])
    >>> pb = np.array([[0.4, 0.2, 0.2, 0.2], [0.8, 0.2, 0.0, 0.0]])
    >>> specialization_angle(pa, pb).round(4)
    array([0.3218, 0.3218])
    """
    _, pa, pb, _ = _check_probas(y_true, proba_a, proba_b, labels)
    # distances from the corner (1, 1); at the corner itself arctan2(0, 0) = 0 would
    # give -pi/4, but both models are equally (fully) confident there: theta = 0
    da, db = 1.0 - pa.max(axis=1), 1.0 - pb.max(axis=1)
    corner = (da == 0) & (db == 0)
    return np.where(corner, 0.0, np.arctan2(db, da) - np.pi / 4)


def ensemble_gain(y_true, proba_a, proba_b, *, labels=None, baseline="mean", averaging="proba"):
    """Accuracy of the averaged ensemble minus the accuracy of its members.

    The paper's ensemble performance improvement relative to the mean accuracy
    of the members (§4.2, Fig. 2 left); ``baseline="max"`` measures against the
    better member instead.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    proba_a, proba_b : array-like of shape (n_samples, n_classes)
        Predicted probabilities; columns follow ``labels``.
    labels : array-like of shape (n_classes,), default=None
        The class of each probability column; default ``np.unique(y_true)``.
    baseline : {"mean", "max"}, default="mean"
        Which member accuracy to subtract.
    averaging : {"proba", "logit"}, default="proba"
        How the ensemble combines the models (:func:`ensemble_proba`).

    Returns
    -------
    float
        In ``[-1, 1]``, positive when the ensemble helps.

    See Also
    --------
    pairwise_diversity : Every pair's gain, inconsistency and kappa at once.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import ensemble_gain
    >>> pa = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> pb = np.array([[0.4, 0.6], [0.1, 0.9]])
    >>> ensemble_gain([0, 1], pa, pb)
    0.5
    """
    if baseline not in ("mean", "max"):
        raise ValueError(f"baseline must be 'mean' or 'max'; got {baseline!r}.")
    _check_option("averaging", averaging, _AVERAGING)
    y_true, pa, pb, labels = _check_probas(y_true, proba_a, proba_b, labels)
    acc_a = _correct(y_true, pa, labels).mean()
    acc_b = _correct(y_true, pb, labels).mean()
    acc_ens = _correct(y_true, ensemble_proba(pa, pb, averaging=averaging), labels).mean()
    ref = (acc_a + acc_b) / 2 if baseline == "mean" else max(acc_a, acc_b)
    return float(acc_ens - ref)


def _debiased_hsic_helper(xty, rows_x, rows_y, norm_x, norm_y, n):
    # Unbiased HSIC estimator (Song et al., 2012) written in feature space.
    return xty - n / (n - 2.0) * rows_x.dot(rows_y) + norm_x * norm_y / ((n - 1) * (n - 2))


def linear_cka(X, Y, *, debiased=False):
    """Linear centred kernel alignment between two representations (Kornblith et al., 2019).

    ``CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` on
    column-centred features; 1 for representations equal up to an orthogonal
    transform and isotropic scaling. ``debiased=True`` uses the unbiased HSIC
    estimator, which removes the upward bias of CKA with few samples and many
    features (needs at least 4 samples).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        First representation.
    Y : array-like of shape (n_samples, n_features_y)
        Second representation of the same samples.
    debiased : bool, default=False
        Use the debiased estimator.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import linear_cka
    >>> X = np.random.default_rng(0).normal(size=(50, 5))
    >>> round(linear_cka(X, 3 * X), 6)
    1.0
    """
    X = check_array(X, dtype=np.float64, input_name="X")
    Y = check_array(Y, dtype=np.float64, input_name="Y")
    check_consistent_length(X, Y)
    n = X.shape[0]
    if debiased and n < 4:
        raise ValueError(f"linear_cka(debiased=True) needs at least 4 samples; got {n}.")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    xty = np.linalg.norm(Y.T @ X) ** 2
    xtx = np.linalg.norm(X.T @ X)
    yty = np.linalg.norm(Y.T @ Y)
    if debiased:
        rows_x, rows_y = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
        nx, ny = rows_x.sum(), rows_y.sum()
        xty = _debiased_hsic_helper(xty, rows_x, rows_y, nx, ny, n)
        xtx = np.sqrt(_debiased_hsic_helper(xtx**2, rows_x, rows_x, nx, nx, n))
        yty = np.sqrt(_debiased_hsic_helper(yty**2, rows_y, rows_y, ny, ny, n))
    denom = xtx * yty
    if denom == 0:
        raise ValueError("linear_cka is undefined when a representation is constant.")
    return float(xty / denom)
