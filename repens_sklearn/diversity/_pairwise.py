"""Every pair of a set of models: inconsistency, kappa, ensemble accuracy, gain, conversion.

The analysis of Gontijo-Lopes et al., "No One Representation to Rule Them All:
Overlapping Features of Training Methods" (ICLR 2022), §4 and appendix A.6.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from sklearn.exceptions import NotFittedError, UndefinedMetricWarning
from sklearn.utils.validation import check_is_fitted

from .._composition import check_named_list
from ._calibration import calibrate_probas, calibrate_temperature, cross_fitted_probas
from ._metrics import (
    _AVERAGING,
    _check_labels_1d,
    _check_option,
    _check_proba,
    _correct,
    _resolve_labels,
    check_same_label_type,
    conversion_rate,
    ensemble_proba,
    error_consistency,
)

COLUMNS = [
    "model_a",
    "model_b",
    "accuracy_a",
    "accuracy_b",
    "error_inconsistency",
    "error_consistency",
    "kappa",
    "ensemble_accuracy",
    "ensemble_gain",
    "conversion_rate",
    "conversion_rate_neither",
]


def _is_classifier_like(obj):
    return hasattr(obj, "predict_proba")


def _named_items(
    models_or_probas, param="models_or_probas", what="fitted classifier or probability array"
):
    """A dict or a list of ``(name, object)`` pairs -> list of pairs with unique str names."""
    return check_named_list(models_or_probas, param, what, mapping=True)


def _estimator_labels(items):
    """The shared ``classes_`` of the classifiers among ``items`` (None if there are none)."""
    clfs = []
    for name, obj in items:
        if _is_classifier_like(obj):
            try:
                check_is_fitted(obj)
            except NotFittedError as exc:
                raise NotFittedError(f"classifier {name!r} is not fitted: {exc}") from exc
            clfs.append((name, np.asarray(obj.classes_)))
    for name, classes in clfs[1:]:
        if not np.array_equal(classes, clfs[0][1]):
            raise ValueError(
                f"All classifiers must have the same classes_; {name!r} has {classes}, "
                f"expected {clfs[0][1]}."
            )
    return clfs[0][1] if clfs else None


def collect_probas(
    models_or_probas,
    X=None,
    y=None,
    *,
    calibrate=True,
    X_calib=None,
    y_calib=None,
    labels=None,
    min_models=2,
):
    """Probabilities of every model on ``X`` (calibrated if asked) and their column labels.

    With ``calibrate`` each model is temperature-scaled on the held-out data
    when it is given, else cross-fitted on the evaluated samples
    (:func:`cross_fitted_probas`). Returns ``(names, probas, y, labels)`` with
    ``probas`` a list of validated ``(n_samples, n_classes)`` arrays.
    """
    items = _named_items(models_or_probas)
    if len(items) < min_models:
        raise ValueError(
            f"models_or_probas must hold at least {min_models} models; got {len(items)}."
        )
    if y is None:
        raise ValueError("y is required: the true labels of the evaluated samples.")
    y = _check_labels_1d(y, "y")
    est_labels = _estimator_labels(items)
    if est_labels is not None:
        check_same_label_type(**{"y": y, "the classifiers' classes_": est_labels})
        if labels is not None and not np.array_equal(np.asarray(labels), est_labels):
            raise ValueError(
                f"labels {np.asarray(labels)} differ from the classifiers' classes_ {est_labels}."
            )
        labels = est_labels
        if X is None:
            raise ValueError("X is required when models_or_probas holds fitted classifiers.")
    if (X_calib is None) != (y_calib is None):
        raise ValueError(
            "X_calib and y_calib go together: held-out samples for classifiers (for "
            "probability arrays, a dict name -> held-out probabilities) and their labels; "
            f"got only {'X_calib' if y_calib is None else 'y_calib'}."
        )
    held_out = calibrate and y_calib is not None
    calib = None
    if held_out and any(not _is_classifier_like(obj) for _, obj in items):
        calib = dict(_named_items(X_calib, "X_calib", "held-out probability array"))
    names, probas = [], []
    for name, obj in items:
        if _is_classifier_like(obj):
            model = calibrate_temperature(obj, X_calib, y_calib) if held_out else obj
            proba = _check_proba(model.predict_proba(X), f"predict_proba of {name!r}")
        else:
            proba = _check_proba(obj, f"the probabilities of {name!r}")
            if held_out:
                if name not in calib:
                    raise ValueError(
                        f"X_calib has no held-out probabilities for {name!r}; it has "
                        f"{sorted(calib)}."
                    )
                proba = calibrate_probas(calib[name], y_calib, proba, labels=labels)
        if len(proba) != len(y):
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: y has {len(y)} "
                f"but the probabilities of {name!r} have {len(proba)}."
            )
        names.append(name)
        probas.append(proba)
    widths = {p.shape[1] for p in probas}
    if len(widths) > 1:
        raise ValueError(f"The models give different numbers of classes: {sorted(widths)}.")
    labels = _resolve_labels(y, probas[0].shape[1], labels, "the probabilities", y_name="y")
    if calibrate and not held_out:
        probas = [cross_fitted_probas(p, y, labels) for p in probas]
    return names, probas, y, labels


def _pair_row(name_a, name_b, pa, pb, y, labels, averaging):
    ca, cb = _correct(y, pa, labels), _correct(y, pb, labels)
    acc_a, acc_b = ca.mean(), cb.mean()
    ens = _correct(y, ensemble_proba(pa, pb, averaging=averaging), labels).mean()
    with warnings.catch_warnings():
        # An undefined kappa / conversion rate is reported as NaN in the table.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        pred_a, pred_b = labels[pa.argmax(1)], labels[pb.argmax(1)]
        cons = error_consistency(y, pred_a, pred_b)
        conv = conversion_rate(y, pa, pb, labels=labels, averaging=averaging)
        conv_neither = conversion_rate(
            y, pa, pb, labels=labels, among="neither", averaging=averaging
        )
    return (
        name_a,
        name_b,
        float(acc_a),
        float(acc_b),
        float(np.mean(ca != cb)),
        cons.observed,
        cons.kappa,
        float(ens),
        float(ens - (acc_a + acc_b) / 2),
        conv,
        conv_neither,
    )


def _import_pandas():
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _to_table(rows):
    pd = _import_pandas()
    if pd is None:  # structured array, same columns
        width = max([len(r[0]) for r in rows] + [len(r[1]) for r in rows] + [1])
        dtype = [(c, f"U{width}") for c in COLUMNS[:2]] + [(c, "f8") for c in COLUMNS[2:]]
        return np.array(rows, dtype=dtype)
    return pd.DataFrame(rows, columns=COLUMNS)


def pairwise_diversity(
    models_or_probas,
    X=None,
    y=None,
    *,
    calibrate=True,
    X_calib=None,
    y_calib=None,
    labels=None,
    reference=None,
    averaging="proba",
):
    """Diversity and ensemble benefit of every pair of models.

    For each pair: both accuracies, error inconsistency (fraction where exactly
    one is right), error consistency and Cohen's kappa (Geirhos et al., 2020),
    accuracy of the two-model ensemble, its gain over the mean member accuracy,
    the conversion rate of the samples exactly one model gets right (§4.2) and
    of those neither gets right (appendix Fig. 10) (Gontijo-Lopes et al., "No
    One Representation to Rule Them All", ICLR 2022).

    Every model is temperature-calibrated before ensembling by default, as in
    the paper ("we found it necessary to calibrate all models using temperature
    scaling ... to maximize ensemble performance", §3.2). Calibration never
    changes a model's top-1 predictions, so accuracies, inconsistency and kappa
    are the same either way; only the ensemble columns change.

    Parameters
    ----------
    models_or_probas : dict or list of (str, object) pairs
        Each object is a fitted classifier (``predict_proba`` on ``X``) or an
        array of probabilities on the evaluated samples.
    X : array-like, default=None
        Samples for the classifiers; required when any object is a classifier.
    y : array-like of shape (n_samples,)
        True labels of the evaluated samples.
    calibrate : bool, default=True
        Temperature-scale every model before ensembling, with
        ``CalibratedClassifierCV(FrozenEstimator(model), method="temperature")``
        fitted on ``X_calib, y_calib`` when given. Without held-out data the
        temperature is cross-fitted on the evaluated samples: they are dealt
        into 5 class-stratified folds and each fold is scaled with a
        temperature fitted on the other four (every class needs 2 samples).
        False ensembles the raw probabilities.
    X_calib : array-like or dict, default=None
        Held-out data for calibration: samples for classifiers; for probability
        arrays, a dict (or list of pairs) name -> held-out probabilities. Must
        hold every class.
    y_calib : array-like, default=None
        Labels of the held-out data.
    labels : array-like, default=None
        Class of each probability column for arrays (default ``np.unique(y)``);
        classifiers use their ``classes_``, which must agree.
    reference : str, default=None
        If given, only the pairs (reference, other) — the paper's base-model design.
    averaging : {"proba", "logit"}, default="proba"
        How a pair is ensembled: mean of the probabilities, or softmax of the
        mean of the logits (appendix Fig. 11); see :func:`ensemble_proba`.

    Returns
    -------
    pandas.DataFrame or numpy structured array
        One row per pair with columns ``model_a, model_b, accuracy_a, accuracy_b,
        error_inconsistency, error_consistency, kappa, ensemble_accuracy,
        ensemble_gain, conversion_rate, conversion_rate_neither`` (NaN where no
        sample has exactly one / neither model right). A structured array with
        the same fields when pandas is not installed.

    See Also
    --------
    PairwiseDiversityDisplay : Heat map of one of these columns.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import pairwise_diversity
    >>> y = np.array([0, 1, 1, 0])
    >>> p = {"a": np.eye(2)[[0, 1, 0, 0]], "b": np.eye(2)[[0, 0, 1, 0]] * 0.8 + 0.1}
    >>> float(pairwise_diversity(p, y=y)["error_inconsistency"][0])
    0.5
    """
    _check_option("averaging", averaging, _AVERAGING)
    names, probas, y, labels = collect_probas(
        models_or_probas, X, y, calibrate=calibrate, X_calib=X_calib, y_calib=y_calib, labels=labels
    )
    if reference is None:
        pairs = list(itertools.combinations(range(len(names)), 2))
    else:
        if reference not in names:
            raise ValueError(f"reference {reference!r} is not one of the models: {names}.")
        r = names.index(reference)
        pairs = [(r, j) for j in range(len(names)) if j != r]
    rows = [
        _pair_row(names[i], names[j], probas[i], probas[j], y, labels, averaging) for i, j in pairs
    ]
    return _to_table(rows)
