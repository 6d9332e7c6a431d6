"""GreedyEnsembleClassifier: Caruana greedy ensembles built on a validation split."""

from __future__ import annotations

from collections import Counter
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from joblib import delayed
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted

from .._base import PARAMETER_CONSTRAINTS
from .._compat import Interval, StrOptions, _fit_context, _num_samples, _safe_indexing
from .._composition import NamedMembers, check_named_list
from .._compute import seed_from
from .._inputs import check_classification_y, check_split_inputs
from .._member_fitting import temperature_calibrated, temperature_calibrated_prefit
from .._warnings import warn
from ..diversity._metrics import _check_proba  # one rule for "rows are probabilities"
from ..exceptions import CandidateDroppedWarning, NonFiniteLossError, NonFiniteOutputError
from ._candidates import make_parallel, raise_naming
from ._caruana import best_size, ensemble_score, greedy_selection


class GreedyEnsembleClassifier(ClassifierMixin, NamedMembers):
    """Greedy ensemble of classifiers chosen on a validation split (Caruana et al., 2004).

    Step 3 of the paper's algorithm (section 2.3; evaluation protocol of
    section 3): the data are split (stratified) into a training and a
    validation part (VTAB-1k: 800 / 200, hence ``validation_fraction=0.2``);
    every candidate is fitted on the training part, in parallel; starting from
    the empty ensemble, the candidate whose addition gives the best validation
    score is added, up to ``max_size`` members (the paper's inference budget,
    15). The ensemble size with the best validation score is kept, and its
    members are refitted on all the data. Cross-entropy is the default
    criterion: it generalised better than accuracy and gives no ties
    (appendix C.9); selection with replacement and bootstrapped validation
    points per step are the other remedies tried there.

    A candidate whose training diverges (``NonFiniteLossError``, e.g. one
    learning rate of a :func:`make_finetune_sweep` set too high) or whose
    validation probabilities are not finite probabilities is left out, with a
    ``CandidateDroppedWarning`` naming it and why, and the ensemble is built
    from the others; if every candidate is left out, ``fit`` raises.

    The ensemble predicts the weighted average of its members' probabilities
    (weights = how often each was picked). Any scikit-learn classifier with
    ``predict_proba`` is a candidate; one already fitted elsewhere can be given
    as ``sklearn.frozen.FrozenEstimator(clf)`` (it is then never refitted).

    Parameters
    ----------
    estimators : list of (str, classifier)
        Named candidate classifiers, each with ``predict_proba``.
    max_size : int, default=15
        Number of greedy picks (the inference budget).
    scoring : {"log_loss", "accuracy"}, default="log_loss"
        Validation criterion: log loss (minimised) or accuracy (maximised).
    replacement : bool, default=False
        Whether a member may be picked again (its weight then grows).
    validation_fraction : float in (0, 1), default=0.2
        Share of the samples held out, stratified, for the greedy selection.
    bootstrap_fraction : float or None, default=None
        When set, each greedy step decides on ``round(bootstrap_fraction *
        n_validation)`` validation points drawn with replacement (section C.9).
    calibration : {"temperature"} or None, default=None
        Temperature-scale every candidate on the validation part before the
        selection, with ``CalibratedClassifierCV(FrozenEstimator(clf),
        method="temperature")``. With ``refit=True`` the chosen members are
        refitted as ``CalibratedClassifierCV(clf, method="temperature",
        ensemble=False)`` over a stratified K-fold of all the data (K from
        ``validation_fraction``), so their temperature is learned on held-out
        predictions as well.
    refit : bool, default=True
        Refit the chosen members on all the data (False keeps the members
        fitted on the training part).
    n_jobs : int or None, default=None
        Candidates are fitted and refitted in parallel with ``joblib.Parallel``.
    random_state : int, RandomState or None, default=None
        Seeds the split and the bootstrap draws.
    verbose : int or bool, default=False
        joblib verbosity.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    estimators_ : list of classifiers
        The fitted ensemble members (each once, in order of first pick).
    named_estimators_ : sklearn.utils.Bunch
        Members by name.
    weights_ : ndarray of shape (len(estimators_),)
        Weight of each member (share of the picks), aligned with ``estimators_``.
    ensemble_ : list of str
        Names in pick order, truncated at the chosen size (repeats allowed
        with replacement).
    validation_curve_ : ndarray of shape (n_picks,)
        Entry i: validation score (in the ``scoring`` metric) of the greedy
        ensemble after i + 1 picks.
    candidate_scores_ : dict
        ``{name: validation score of that candidate alone}`` (candidates left
        out excepted).
    dropped_candidates_ : dict
        ``{name: why it was left out}`` for the candidates whose training
        diverged or whose validation probabilities were not finite
        probabilities; empty when every candidate was usable.
    n_features_in_ : int
        Number of features seen during fit (from the first member).

    See Also
    --------
    TransferabilitySelector : step 1, ranking pre-trained models.
    FineTuneClassifier, make_finetune_sweep : step 2, the candidates.
    sklearn.ensemble.VotingClassifier : a fixed, unweighted choice of members.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from repens_sklearn import GreedyEnsembleClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GreedyEnsembleClassifier(
    ...     [("lr", LogisticRegression()), ("nb", GaussianNB()),
    ...      ("tree", DecisionTreeClassifier(random_state=0))],
    ...     max_size=3, random_state=0).fit(X, y)
    >>> clf.ensemble_[0]
    'lr'
    """

    _members_param = "estimators"
    _parameter_constraints = {
        "estimators": ["array-like"],
        "max_size": [Interval(Integral, 1, None, closed="left")],
        "scoring": [StrOptions({"log_loss", "accuracy"})],
        "replacement": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "bootstrap_fraction": [Interval(Real, 0, None, closed="neither"), None],
        "calibration": [StrOptions({"temperature"}), None],
        "refit": ["boolean"],
        "n_jobs": PARAMETER_CONSTRAINTS["n_jobs"],
        "random_state": PARAMETER_CONSTRAINTS["random_state"],
        "verbose": PARAMETER_CONSTRAINTS["verbose"],
    }

    def __init__(
        self,
        estimators,
        *,
        max_size=15,
        scoring="log_loss",
        replacement=False,
        validation_fraction=0.2,
        bootstrap_fraction=None,
        calibration=None,
        refit=True,
        n_jobs=None,
        random_state=None,
        verbose=False,
    ):
        self.estimators = estimators
        self.max_size = max_size
        self.scoring = scoring
        self.replacement = replacement
        self.validation_fraction = validation_fraction
        self.bootstrap_fraction = bootstrap_fraction
        self.calibration = calibration
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the candidates on a training split and build the greedy ensemble.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image sources
            Training inputs, indexed with ``sklearn.utils._safe_indexing``
            and passed to the candidates.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : GreedyEnsembleClassifier
        """
        candidates = check_named_list(self.estimators, "estimators", "classifier", owner=self)
        for name, est in candidates:
            if not hasattr(est, "fit") or not hasattr(est, "predict_proba"):
                raise TypeError(
                    f"estimator {name!r} must be a classifier with fit and predict_proba, "
                    f"got {type(est).__name__}"
                )
        X = _indexable(check_split_inputs(X))
        y = self._check_y(y, X)
        rng = check_random_state(self.random_state)
        train, val = self._split(y, seed_from(rng))
        X_tr, X_val = _safe_indexing(X, train), _safe_indexing(X, val)
        y_val_idx = np.searchsorted(self.classes_, y[val])
        results = make_parallel(self.n_jobs, self.verbose, "fitting candidates")(
            delayed(_fit_candidate)(
                name, clone(est), X_tr, y[train], X_val, y[val], self.classes_, self.calibration
            )
            for name, est in candidates
        )
        candidates, results = self._drop_unusable(candidates, results)
        P = np.stack([proba for _, proba in results])
        names = [name for name, _ in candidates]
        self.candidate_scores_ = {
            name: ensemble_score(P[m], y_val_idx, self.scoring) for m, name in enumerate(names)
        }
        picks, self.validation_curve_ = greedy_selection(
            P,
            y_val_idx,
            max_size=self.max_size,
            scoring=self.scoring,
            replacement=self.replacement,
            bootstrap_fraction=self.bootstrap_fraction,
            random_state=rng,
        )
        picks = picks[: best_size(self.validation_curve_, self.scoring)]
        self.ensemble_ = [names[m] for m in picks]
        counts = Counter(picks)
        members = list(counts)  # first-pick order
        self.weights_ = np.asarray([counts[m] for m in members], dtype=np.float64) / len(picks)
        if self.refit:
            fitted = make_parallel(self.n_jobs, self.verbose, "refitting members")(
                delayed(_refit_member)(
                    names[m],
                    clone(candidates[m][1]),
                    X,
                    y,
                    self.classes_,
                    self.calibration,
                    self._refit_cv(y, seed_from(rng)),
                )
                for m in members
            )
        else:
            fitted = [results[m][0] for m in members]
        self.estimators_ = fitted
        self.named_estimators_ = Bunch(**{names[m]: est for m, est in zip(members, fitted)})
        return self

    def _drop_unusable(self, candidates, results):
        """Leave out (with a warning) the candidates that diverged; raise if none is left.

        ``results`` holds ``(estimator, proba, reason)``; ``reason`` is None for a
        usable candidate. Sets ``dropped_candidates_``.
        """
        self.dropped_candidates_ = {
            name: reason
            for (name, _), (_, _, reason) in zip(candidates, results)
            if reason is not None
        }
        if len(self.dropped_candidates_) == len(candidates):
            why = "; ".join(
                f"{name!r}: {reason}" for name, reason in self.dropped_candidates_.items()
            )
            raise ValueError(
                f"every candidate was left out, so there is no ensemble to build: {why}"
            )
        for name, reason in self.dropped_candidates_.items():
            warn(
                f"candidate {name!r} is left out of the ensemble: {reason}", CandidateDroppedWarning
            )
        kept = [i for i, (_, _, reason) in enumerate(results) if reason is None]
        return [candidates[i] for i in kept], [results[i][:2] for i in kept]

    def _check_y(self, y, X):
        if _num_samples(X) == 0:
            raise ValueError("X holds 0 samples; at least 4 samples (2 per class) are required")
        y, self.classes_, y_idx = check_classification_y(self, y, _num_samples(X))
        counts = np.bincount(y_idx, minlength=len(self.classes_))
        rare = self.classes_[counts < 2]
        if len(rare):
            raise ValueError(
                f"every class needs at least 2 samples so that both the training and the "
                f"validation split hold it; classes {rare.tolist()} have 1 sample"
            )
        return y

    def _split(self, y, seed):
        n = len(y)
        n_val = int(np.ceil(self.validation_fraction * n))
        n_classes = len(self.classes_)
        if n_val < n_classes or n - n_val < n_classes:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} splits {n} samples into "
                f"{n - n_val} for training and {n_val} for validation, but each part must "
                f"hold every one of the {n_classes} classes"
            )
        train, val = train_test_split(np.arange(n), test_size=n_val, stratify=y, random_state=seed)
        missing = np.setdiff1d(self.classes_, y[val])
        if len(missing):
            raise ValueError(
                f"classes {missing.tolist()} are missing from the validation split; "
                f"give more samples of them or a larger validation_fraction"
            )
        return np.sort(train), np.sort(val)

    def _refit_cv(self, y, seed):
        if self.calibration is None:
            return None
        # as many folds as the validation split suggests, and no more than the rarest class allows
        rarest = int(np.unique(y, return_counts=True)[1].min())
        n_splits = max(2, min(int(round(1 / self.validation_fraction)), rarest))
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def predict_proba(self, X):
        """Weighted average of the members' class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        check_is_fitted(self)
        total = None
        for name, weight, est in zip(self.named_estimators_, self.weights_, self.estimators_):
            proba = np.asarray(est.predict_proba(X), dtype=np.float64)
            bad = ~np.isfinite(proba).all(axis=1)
            if bad.any():  # one NaN member would make every ensemble row NaN -> classes_[0]
                raise NonFiniteOutputError(
                    f"ensemble member {name!r} predicts non-finite probabilities for "
                    f"{int(bad.sum())} of {len(proba)} samples (first: sample "
                    f"{int(np.argmax(bad))})"
                )
            total = weight * proba if total is None else total + weight * proba
        return total

    def predict(self, X):
        """Class with the highest ensemble probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def n_features_in_(self):
        """Number of features seen during fit (from the first member)."""
        try:
            check_is_fitted(self)
        except Exception as exc:
            raise AttributeError(f"{type(self).__name__} has no n_features_in_ before fit") from exc
        return self.estimators_[0].n_features_in_

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimators_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _indexable(X):
    """X in a form ``_safe_indexing`` can slice; sparse matrices become CSR."""
    if sp.issparse(X):
        return X.tocsr()
    if isinstance(X, (list, tuple, np.ndarray)) or hasattr(X, "iloc"):
        return X
    if hasattr(X, "__array__"):
        return np.asarray(X)
    return X


def _fit_candidate(name, estimator, X_tr, y_tr, X_val, y_val, classes, calibration):
    """Fit one candidate on the training part.

    Returns ``(estimator, validation probabilities, None)``, or ``(None, None,
    reason)`` when the candidate must be left out: its training diverged or
    its validation probabilities are not finite probabilities.
    """
    try:
        estimator.fit(X_tr, y_tr)
        _check_classes(name, estimator, classes)
        if calibration == "temperature":
            estimator = temperature_calibrated_prefit(estimator, X_val, y_val)
        proba = np.asarray(estimator.predict_proba(X_val), dtype=np.float64)
    except FloatingPointError as exc:  # NonFiniteLossError, NonFiniteOutputError, numpy's
        return None, None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        raise_naming(exc, f"estimator {name!r} failed")
    if proba.shape != (len(y_val), len(classes)):
        raise ValueError(
            f"estimator {name!r}: predict_proba returned shape {proba.shape} on the "
            f"validation split; expected {(len(y_val), len(classes))} (samples, classes)"
        )
    try:
        _check_proba(proba, "its validation probabilities")
    except ValueError as exc:
        return None, None, str(exc)
    return estimator, proba, None


def _refit_member(name, estimator, X, y, classes, calibration, cv):
    try:
        if calibration == "temperature":
            estimator = temperature_calibrated(estimator, cv=cv, ensemble=False)
        estimator.fit(X, y)
        _check_classes(name, estimator, classes)
    except NonFiniteLossError as exc:
        # the member was chosen for its validation score: dropping it now would give an
        # ensemble that was never validated
        raise NonFiniteLossError(
            f"ensemble member {name!r} diverged when refitted on all the data ({exc}); "
            "refit=False keeps the members fitted on the training part"
        ) from exc
    except Exception as exc:
        raise_naming(exc, f"estimator {name!r} failed to refit on all data")
    return estimator


def _check_classes(name, estimator, classes):
    fitted = getattr(estimator, "classes_", None)
    if fitted is None or not np.array_equal(np.asarray(fitted), classes):
        raise ValueError(
            f"estimator {name!r} has classes_ {None if fitted is None else list(fitted)}, "
            f"which disagree with the classes in y {list(classes)}"
        )
