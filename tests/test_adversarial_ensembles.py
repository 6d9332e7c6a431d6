"""Issue #21, sections 1 and 5: no silent wrong answer from diverged training or bad inputs.

Diverged fine-tuning must raise (naming the step and the learning rate), a greedy
ensemble must leave such candidates out (and never pick non-finite probabilities),
and the diversity metrics must refuse mixed label types, non-finite or non-probability
rows, mismatched shapes and unusable weights.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from repens_sklearn import FineTuneClassifier, GreedyEnsembleClassifier, make_finetune_sweep
from repens_sklearn.diversity import (
    calibrate_probas,
    calibrate_temperature,
    conversion_rate,
    ensemble_proba,
    error_consistency,
    error_inconsistency,
    pairwise_diversity,
)
from repens_sklearn.exceptions import (
    CandidateDroppedWarning,
    NonFiniteLossError,
    NonFiniteOutputError,
)
from repens_sklearn.selection import greedy_selection


@pytest.fixture(scope="module")
def scaled():
    """The issue's data: 80 x 12 Gaussian features times 100, separable on feature 0."""
    X = np.random.default_rng(0).normal(size=(80, 12)).astype("float32") * 100
    return X, (X[:, 0] > 0).astype(int)


def _diverging(**params):
    params = {"lr": 1e6, "max_steps": 10, "momentum": 0.0, "batch_size": 16, **params}
    return FineTuneClassifier("mlp", random_state=0, **params)


class _StubClassifier(ClassifierMixin, BaseEstimator):
    """Predicts fixed probabilities; ``mode`` makes them NaN, scores, or diverge on refit."""

    def __init__(self, mode="nan", max_fit_samples=None):
        self.mode = mode
        self.max_fit_samples = max_fit_samples

    def fit(self, X, y):
        if self.max_fit_samples is not None and len(X) > self.max_fit_samples:
            raise NonFiniteLossError(f"loss became nan at step 2 of {len(X)} (lr=1)")
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        X = np.asarray(X)
        proba = np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))
        if self.mode == "nan":
            proba[:] = np.nan
        elif self.mode == "scores":  # logits, not probabilities
            proba = np.stack([X[:, 0], -X[:, 0]], axis=1)
        elif self.mode == "nan_far":  # NaN only far from the training range
            proba[X[:, 0] > 1e3] = np.nan
        return proba


# ----------------------------------------------------------------- FineTuneClassifier
def test_finetune_diverging_loss_raises_naming_step_and_lr(scaled):
    # old: fit returned, predict_proba was NaN everywhere and predict said class 0
    X, y = scaled
    clf = _diverging()
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss became nan at step 3 of 10 with "
        r"learning rate 1e\+06 at that step \(lr=1e\+06\)",
    ):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):  # a diverged model is not left looking fitted
        check_is_fitted(clf)


def test_finetune_weights_overflowing_after_the_last_step_raise(scaled):
    # the last step's loss is finite, its update (at lr 1e38) is not: no later loss notices
    X, y = scaled
    clf = FineTuneClassifier(
        "mlp",
        lr=0.1,
        max_steps=2,
        momentum=0.0,
        batch_size=16,
        schedule=lambda step: 1e39 if step == 1 else 1.0,
        random_state=0,
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"the network's 'backbone.net.0.weight' is "
        r"not finite after step 2 of 2 \(lr=0.1\)",
    ):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)


def test_finetune_overflowing_outputs_raise_instead_of_class_0(scaled):
    # two steps at lr 1e6: finite loss (2.8e21) and weights, but logits overflow
    X, y = scaled
    clf = _diverging(max_steps=2, schedule="constant").fit(X, y)
    msg = r"outputs are not finite for 5 of 5 samples \(first: sample 0\).*lr=1e\+06"
    with pytest.raises(NonFiniteOutputError, match=msg):
        clf.predict_proba(X[:5])
    with pytest.raises(NonFiniteOutputError, match=msg):
        clf.predict(X[:5])


# ----------------------------------------------------------------- GreedyEnsembleClassifier
def test_greedy_leaves_out_a_diverged_candidate(scaled):
    # old: ensemble_ == ['bad'], score 0.525 (a NaN log loss wins argmin)
    X, y = scaled
    g = GreedyEnsembleClassifier(
        [("lr", LogisticRegression()), ("bad", _diverging())], max_size=3, random_state=0
    )
    with pytest.warns(
        CandidateDroppedWarning,
        match=r"candidate 'bad' is left out of the "
        r"ensemble: NonFiniteLossError: .*step 3 of 10.*lr=1e\+06",
    ):
        g.fit(X, y)
    assert g.ensemble_ == ["lr"]
    assert list(g.candidate_scores_) == ["lr"]
    assert list(g.dropped_candidates_) == ["bad"]
    assert g.score(X, y) == 1.0


def test_finetune_sweep_with_one_diverging_lr_ensembles_the_others():
    X = np.random.default_rng(1).normal(size=(60, 6)).astype("float32")
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    sweep = make_finetune_sweep(
        ["mlp"],
        lrs=(0.1, 1e6),
        steps=(60,),
        augment=False,
        momentum=0.9,
        batch_size=16,
        random_state=0,
    )
    g = GreedyEnsembleClassifier(sweep, max_size=2, random_state=0)
    with pytest.warns(CandidateDroppedWarning, match=r"'mlp-lr1e\+06-steps60' is left out"):
        g.fit(X, y)
    assert g.ensemble_ == ["mlp-lr0.1-steps60"]
    assert list(g.dropped_candidates_) == ["mlp-lr1e+06-steps60"]
    assert np.isfinite(g.predict_proba(X)).all()
    assert g.score(X, y) > 0.8


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("nan", r"its validation probabilities contains NaN or infinite values in 16 of 16 rows"),
        ("scores", r"its validation probabilities contains values (greater than 1|lower than 0)"),
    ],
)
def test_greedy_never_picks_non_finite_or_non_probability_candidates(scaled, mode, reason):
    # old: the NaN candidate was picked first (argmin of NaN losses)
    X, y = scaled
    g = GreedyEnsembleClassifier(
        [("odd", _StubClassifier(mode)), ("lr", LogisticRegression())], max_size=2, random_state=0
    )
    with pytest.warns(CandidateDroppedWarning, match=rf"candidate 'odd' is left out.*{reason}"):
        g.fit(X, y)
    assert g.ensemble_ == ["lr"]
    assert g.dropped_candidates_.keys() == {"odd"}


def test_greedy_every_candidate_left_out_raises(scaled):
    X, y = scaled
    g = GreedyEnsembleClassifier(
        [("a", _StubClassifier("nan")), ("b", _diverging())], random_state=0
    )
    with pytest.raises(
        ValueError,
        match=r"every candidate was left out, so there is no "
        r"ensemble to build: 'a': .*NaN.*; 'b': NonFiniteLossError: .*step 3",
    ):
        g.fit(X, y)


def test_greedy_member_diverging_on_refit_says_so(scaled):
    # old: a RuntimeError, the divergence only in its text
    X, y = scaled
    g = GreedyEnsembleClassifier(
        [("frail", _StubClassifier("uniform", max_fit_samples=70))], random_state=0
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"ensemble member 'frail' diverged when "
        r"refitted on all the data .*refit=False keeps the members",
    ):
        g.fit(X, y)
    assert g.set_params(refit=False).fit(X, y).ensemble_ == ["frail"]


def test_greedy_predict_proba_refuses_a_member_with_nan_probabilities(scaled):
    # old: NaN rows, which predict turned into classes_[0]
    X, y = scaled
    g = GreedyEnsembleClassifier([("m", _StubClassifier("nan_far"))], random_state=0).fit(X, y)
    far = X[:4].copy()
    far[1:3, 0] = 1e4
    with pytest.raises(
        NonFiniteOutputError,
        match=r"ensemble member 'm' predicts non-finite "
        r"probabilities for 2 of 4 samples \(first: sample 1\)",
    ):
        g.predict(far)


def test_greedy_selection_rejects_non_finite_candidates():
    # old: picks == [1], the NaN candidate
    P = np.full((2, 3, 2), 0.5)
    P[1, 2] = np.nan
    with pytest.raises(
        ValueError,
        match=r"P\[1\] contains NaN or infinite values in 1 of 3 "
        r"rows \(first: row 2\)",
    ):
        greedy_selection(P, [0, 1, 0])


def test_greedy_selection_rejects_bad_class_indices():
    # old: an IndexError deep in the loss, or labels taken as column indices
    P = np.full((2, 3, 2), 0.5)
    with pytest.raises(
        ValueError,
        match=r"y_idx must hold class indices \(integers in "
        r"\[0, 2\)\).*from 0 to 2",
    ):
        greedy_selection(P, [0, 1, 2])
    with pytest.raises(ValueError, match="y_idx holds 2 labels but P holds 3 samples"):
        greedy_selection(P, [0, 1])


def test_greedy_selection_rejects_unknown_scoring_and_sizes():
    # old: any scoring but "log_loss" silently scored accuracy; max_size=0 crashed in argmin
    P = np.full((2, 3, 2), 0.5)
    with pytest.raises(ValueError, match="scoring must be 'log_loss' or 'accuracy'; got 'logloss'"):
        greedy_selection(P, [0, 1, 0], scoring="logloss")
    for size in (0, 2.5, True):
        with pytest.raises(ValueError, match=rf"max_size must be an integer >= 1; got {size!r}"):
            greedy_selection(P, [0, 1, 0], max_size=size)


# ----------------------------------------------------------------- diversity metrics
MIXED = (
    r"holds str labels; y_pred_a holds int labels; y_pred_b holds int labels\): "
    r"Mix of label input types \(string and number\)"
)


@pytest.mark.parametrize("metric", [error_inconsistency, error_consistency])
def test_prediction_metrics_reject_mixed_label_types(metric):
    # old: error_inconsistency == 0.0 (every prediction "wrong" for both models)
    with pytest.raises(
        ValueError,
        match=r"y_true, y_pred_a, y_pred_b must hold labels of "
        r"the same type \(y_true " + MIXED,
    ):
        metric(["a", "b", "a"], [0, 1, 0], [1, 1, 0])


def test_probability_metrics_reject_labels_of_another_type():
    pa = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    pb = np.array([[0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    with pytest.raises(
        ValueError,
        match=r"y_true, labels must hold labels of the same type "
        r"\(y_true holds str labels; labels holds int labels\)",
    ):
        conversion_rate(["0", "1", "1"], pa, pb, labels=[0, 1])
    with pytest.raises(ValueError, match=r"y_calib holds str labels; labels holds int"):
        calibrate_probas(pa, ["0", "1", "1"], pb, labels=[0, 1])


def test_classifier_metrics_reject_labels_of_another_type():
    # old: "y_true contains labels not present in labels: ['0' '1']" / "[0, 1] missing"
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    a, b = LogisticRegression().fit(X, y), LogisticRegression(C=0.01).fit(X, y)
    with pytest.raises(
        ValueError,
        match=r"y holds str labels; the classifiers' classes_ "
        r"holds int labels",
    ):
        pairwise_diversity({"a": a, "b": b}, X, y.astype(str), calibrate=False)
    with pytest.raises(
        ValueError,
        match=r"y_calib holds str labels; the estimator's "
        r"classes_ holds int labels",
    ):
        calibrate_temperature(a, X, y.astype(str))


def test_ensemble_proba_rejects_mismatched_shapes():
    # old: (4, 2) broadcast with (1, 2) into four copies of one row
    with pytest.raises(
        ValueError,
        match=r"proba_a and proba_b must have the same shape "
        r"\(n_samples, n_classes\); got \(4, 2\) and \(1, 2\)",
    ):
        ensemble_proba(np.full((4, 2), 0.5), [[0.2, 0.8]])


@pytest.mark.parametrize(
    "bad, message",
    [
        ([[np.nan, 0.5]], r"proba_b contains NaN or infinite values in 1 of 1 rows"),
        (
            [[2.0, -1.0]],
            r"proba_b contains values greater than 1: 2.0 \(row 0\); pass "
            r"probabilities, not logits",
        ),
        ([[0.2, 0.2]], r"The proba_b values do not sum to one \(row 0 sums to 0.4\)"),
    ],
)
def test_ensemble_proba_rejects_rows_that_are_not_probabilities(bad, message):
    # old: NaN and logits passed through into the "probabilities"
    for averaging in ("proba", "logit"):
        with pytest.raises(ValueError, match=message):
            ensemble_proba([[0.5, 0.5]], bad, averaging=averaging)


@pytest.mark.parametrize("weights", [[0, 0], [1], [1, 2, 3], [-1, 2], [np.nan, 1], [np.inf, 1]])
def test_ensemble_proba_rejects_unusable_weights(weights):
    # old: [0, 0] ended in a bare ZeroDivisionError, [-1, 2] extrapolated
    with pytest.raises(
        ValueError,
        match=r"weights must be 2 finite, non-negative numbers "
        r"\(of proba_a and proba_b\) with a positive sum; got",
    ):
        ensemble_proba([[0.9, 0.1]], [[0.2, 0.8]], weights=weights)


def test_ensemble_proba_weights_still_weigh():
    pa, pb = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    np.testing.assert_allclose(ensemble_proba(pa, pb, weights=[3, 1]), [[0.725, 0.275]])
    np.testing.assert_allclose(ensemble_proba(pa, pb, weights=[0, 2]), pb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid input: no warning either
        ensemble_proba(pa, pb, weights=np.array([1.0, 1.0]), averaging="logit")
