"""GreedyEnsembleClassifier and the running-sum Caruana selection."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from repens_sklearn import GreedyEnsembleClassifier
from repens_sklearn.selection import greedy_selection


def _reference(P, y, max_size, scoring, replacement):
    """Plain Caruana: re-average the chosen members for every trial (scikit-learn metrics)."""
    picks, curve = [], []
    labels = np.arange(P.shape[2])
    for _ in range(max_size if replacement else min(max_size, len(P))):
        best, best_loss = None, np.inf
        for m in range(len(P)):
            if not replacement and m in picks:
                continue
            avg = P[picks + [m]].mean(axis=0)
            loss = (
                log_loss(y, avg, labels=labels)
                if scoring == "log_loss"
                else -accuracy_score(y, avg.argmax(1))
            )
            if loss < best_loss - 1e-12:
                best, best_loss = m, loss
        picks.append(best)
        avg = P[picks].mean(axis=0)
        curve.append(
            log_loss(y, avg, labels=labels)
            if scoring == "log_loss"
            else accuracy_score(y, avg.argmax(1))
        )
    return picks, np.asarray(curve)


def _random_probas(seed, n_models=12, n=80, n_classes=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n_models, n, n_classes)) + 1.5 * np.eye(n_classes)[y] * rng.uniform(
        0, 2, size=(n_models, 1, 1)
    )
    P = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return P, y


@pytest.mark.parametrize("scoring", ["log_loss", "accuracy"])
@pytest.mark.parametrize("replacement", [False, True])
def test_running_sums_match_re_averaging(scoring, replacement):
    P, y = _random_probas(0)
    picks, curve = greedy_selection(P, y, max_size=8, scoring=scoring, replacement=replacement)
    ref_picks, ref_curve = _reference(P, y, 8, scoring, replacement)
    assert picks == ref_picks
    np.testing.assert_allclose(curve, ref_curve, rtol=1e-9)


def test_with_replacement_can_repeat_and_without_cannot():
    P, y = _random_probas(1, n_models=3)
    picks, _ = greedy_selection(P, y, max_size=6, replacement=True)
    assert len(picks) == 6 and len(set(picks)) < 6
    picks, _ = greedy_selection(P, y, max_size=6, replacement=False)
    assert sorted(picks) == [0, 1, 2]


def test_bootstrap_is_seeded_and_changes_decisions():
    P, y = _random_probas(2, n_models=20, n=40)
    a = greedy_selection(P, y, max_size=10, bootstrap_fraction=0.5, random_state=0)[0]
    b = greedy_selection(P, y, max_size=10, bootstrap_fraction=0.5, random_state=0)[0]
    plain = greedy_selection(P, y, max_size=10)[0]
    others = [
        greedy_selection(P, y, max_size=10, bootstrap_fraction=0.5, random_state=s)[0]
        for s in range(1, 6)
    ]
    assert a == b
    assert any(o != plain for o in others)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


def _candidates():
    return [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))),
        ("nb", GaussianNB()),
        ("tree", DecisionTreeClassifier(max_depth=6, random_state=0)),
        ("lr_weak", make_pipeline(StandardScaler(), LogisticRegression(C=1e-3, max_iter=300))),
    ]


def _split(X, y, seed_state=0, fraction=0.2):
    """The split GreedyEnsembleClassifier draws for random_state=seed_state."""
    from repens_sklearn._compute import seed_from

    n_val = int(np.ceil(fraction * len(y)))
    tr, va = train_test_split(
        np.arange(len(y)),
        test_size=n_val,
        stratify=y,
        random_state=seed_from(np.random.RandomState(seed_state)),
    )
    return np.sort(tr), np.sort(va)


def test_fit_attributes_and_predictions(data):
    X, y = data
    clf = GreedyEnsembleClassifier(_candidates(), max_size=4, random_state=0).fit(X, y)
    tr, va = _split(X, y)
    # candidate scores are the validation log loss of each candidate fitted on the train part
    for name, est in _candidates():
        expected = log_loss(y[va], est.fit(X[tr], y[tr]).predict_proba(X[va]), labels=clf.classes_)
        assert clf.candidate_scores_[name] == pytest.approx(expected, rel=1e-6)
    assert clf.ensemble_[0] == min(clf.candidate_scores_, key=clf.candidate_scores_.get)
    assert clf.validation_curve_[0] == pytest.approx(min(clf.candidate_scores_.values()))
    assert len(clf.ensemble_) == int(np.argmin(clf.validation_curve_)) + 1
    assert list(clf.named_estimators_) == list(dict.fromkeys(clf.ensemble_))
    assert clf.weights_.sum() == pytest.approx(1.0) and len(clf.weights_) == len(clf.estimators_)
    expected = sum(w * est.predict_proba(X) for w, est in zip(clf.weights_, clf.estimators_))
    np.testing.assert_allclose(clf.predict_proba(X), expected)
    assert np.array_equal(clf.predict(X), clf.classes_[expected.argmax(1)])


def test_refit_on_all_data_or_not(data):
    X, y = data
    cands = [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))),
        ("nb", GaussianNB()),
    ]
    refit = GreedyEnsembleClassifier(cands, max_size=1, random_state=0).fit(X, y)
    kept = GreedyEnsembleClassifier(cands, max_size=1, random_state=0, refit=False).fit(X, y)
    name = refit.ensemble_[0]
    full = clone(dict(cands)[name]).fit(X, y)
    tr, _ = _split(X, y)
    part = clone(dict(cands)[name]).fit(X[tr], y[tr])
    np.testing.assert_allclose(
        refit.named_estimators_[name].predict_proba(X), full.predict_proba(X)
    )
    np.testing.assert_allclose(kept.named_estimators_[name].predict_proba(X), part.predict_proba(X))


def test_frozen_members_are_never_refitted(data):
    X, y = data
    prefit = GaussianNB().fit(X[:100], y[:100])
    before = prefit.theta_.copy()
    clf = GreedyEnsembleClassifier(
        [("frozen", FrozenEstimator(prefit))], max_size=1, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(prefit.theta_, before)
    np.testing.assert_allclose(clf.predict_proba(X), prefit.predict_proba(X))


def test_accuracy_scoring_and_replacement(data):
    X, y = data
    clf = GreedyEnsembleClassifier(
        _candidates(), max_size=6, scoring="accuracy", replacement=True, random_state=0
    ).fit(X, y)
    assert clf.scoring == "accuracy"
    assert clf.validation_curve_.shape == (6,)
    assert clf.validation_curve_[0] == pytest.approx(max(clf.candidate_scores_.values()))
    assert len(clf.ensemble_) == int(np.argmax(clf.validation_curve_)) + 1
    counts = {n: clf.ensemble_.count(n) for n in clf.named_estimators_}
    np.testing.assert_allclose(clf.weights_, np.array(list(counts.values())) / len(clf.ensemble_))


def test_temperature_calibration(data):
    X, y = data
    clf = GreedyEnsembleClassifier(
        _candidates()[:2], max_size=2, calibration="temperature", random_state=0
    ).fit(X, y)
    assert all(
        isinstance(est, CalibratedClassifierCV) and est.method == "temperature"
        for est in clf.estimators_
    )
    # temperature scaling cannot make a member's validation log loss worse than raw
    raw = GreedyEnsembleClassifier(_candidates()[:2], max_size=2, random_state=0).fit(X, y)
    for name in clf.candidate_scores_:
        assert clf.candidate_scores_[name] <= raw.candidate_scores_[name] + 1e-6
    assert clf.score(X, y) > 0.9


def test_temperature_calibration_small_validation_split():
    # 60 samples of 10 classes: 12 validation points, 1-2 per class, fewer than
    # CalibratedClassifierCV's default 5 folds need; calibration must still work.
    X, y = load_digits(return_X_y=True)
    X, y = X[:60], y[:60]
    clf = GreedyEnsembleClassifier(
        _candidates()[:2], max_size=2, calibration="temperature", random_state=0
    ).fit(X, y)
    assert all(isinstance(est, CalibratedClassifierCV) for est in clf.estimators_)
    assert clf.score(X, y) > 0.9


def test_nested_params_reach_the_members(data):
    from sklearn.model_selection import GridSearchCV

    X, y = data
    clf = GreedyEnsembleClassifier(
        [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB())], random_state=0
    )
    assert clf.get_params()["lr__C"] == 1.0
    clf.set_params(lr__C=0.5, nb=DecisionTreeClassifier(max_depth=2))
    assert clf.estimators[0][1].C == 0.5 and isinstance(
        clf.estimators[1][1], DecisionTreeClassifier
    )
    search = GridSearchCV(clf, {"lr__C": [1e-4, 1.0]}, cv=2).fit(X, y)
    assert search.best_params_ == {"lr__C": 1.0}


def test_string_labels(data):
    X, y = data
    names = np.array(list("abcdefghij"))[y]
    clf = GreedyEnsembleClassifier(_candidates()[:2], max_size=2, random_state=0).fit(X, names)
    assert set(clf.predict(X)) <= set("abcdefghij")
    assert clf.score(X, names) > 0.9


def test_error_one_class(data):
    X, _ = data
    with pytest.raises(ValueError, match="at least 2 classes in y; got 1 class"):
        GreedyEnsembleClassifier(_candidates()).fit(X, np.zeros(len(X)))


def test_error_class_missing_from_validation_split(data):
    X, y = data
    y = y % 2
    y[0] = 7  # a class with one sample cannot be in both parts
    with pytest.raises(ValueError, match=r"classes \[7\] have 1 sample"):
        GreedyEnsembleClassifier(_candidates()).fit(X, y)
    with pytest.raises(ValueError, match="each part must hold every one of the 10 classes"):
        GreedyEnsembleClassifier(_candidates(), validation_fraction=0.01).fit(*data)


def test_error_duplicate_names(data):
    with pytest.raises(ValueError, match=r"duplicate names \['nb'\]"):
        GreedyEnsembleClassifier([("nb", GaussianNB()), ("nb", GaussianNB())]).fit(*data)


def test_error_candidate_that_fails_is_named(data):
    bad = DecisionTreeClassifier(max_depth=-1)
    with pytest.raises(ValueError, match="estimator 'bad' failed"):
        GreedyEnsembleClassifier([("nb", GaussianNB()), ("bad", bad)]).fit(*data)


def test_error_classes_disagree(data):
    X, y = data
    other = GaussianNB().fit(X[y < 5], y[y < 5])
    with pytest.raises(ValueError, match="estimator 'half' has classes_ .* disagree"):
        GreedyEnsembleClassifier([("nb", GaussianNB()), ("half", FrozenEstimator(other))]).fit(X, y)


def test_error_not_a_classifier(data):
    with pytest.raises(TypeError, match="estimator 'scaler' must be a classifier"):
        GreedyEnsembleClassifier([("scaler", StandardScaler())]).fit(*data)


def test_with_a_finetune_sweep(data):
    from repens_sklearn import make_finetune_sweep

    X, y = data
    X = (X / 16.0).astype(np.float32)
    sweep = make_finetune_sweep(
        ["mlp"],
        lrs=(0.1, 1e-6),
        steps=(40,),
        batch_size=32,
        augment=False,
        momentum=0.9,
        head_init="default",
        backbone_params={"hidden_dim": 32, "embedding_dim": 16},
        device="cpu",
        random_state=0,
    )
    clf = GreedyEnsembleClassifier(sweep, max_size=2, random_state=0).fit(X, y)
    # the learning rate of 1e-6 learns nothing: the lr=0.1 model is picked first and alone
    assert clf.ensemble_ == ["mlp-lr0.1-steps40"]
    assert clf.candidate_scores_["mlp-lr1e-06-steps40"] > np.log(10) - 0.2
    assert clf.score(X, y) > 0.4  # chance is 0.1; 40 steps only


def test_verbose_sequential_fit_reports_without_crashing(capsys):
    """joblib's sequential path crashes on verbose progress; ours must not."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    from repens_sklearn import GreedyEnsembleClassifier

    X, y = load_iris(return_X_y=True)
    est = GreedyEnsembleClassifier(
        [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB())],
        max_size=2,
        random_state=0,
        verbose=True,
    ).fit(X, y)
    assert est.score(X, y) > 0.9


def test_x_is_validated_with_the_users_indices_before_splitting():
    X = np.random.default_rng(0).random((20, 3))
    X[3, 1] = np.nan
    y = np.arange(20) % 2
    clf = GreedyEnsembleClassifier([("lr", LogisticRegression())])
    with pytest.raises(ValueError, match=r"contains NaN \(first at sample 3\)"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match=r"X is a single string \('abc'\)"):
        clf.fit("abc", [0])


def test_verbose_reports_progress_with_the_default_n_jobs(capsys):
    X = np.random.default_rng(0).random((40, 3))
    y = np.arange(40) % 2
    GreedyEnsembleClassifier(
        [("lr", LogisticRegression()), ("lr2", LogisticRegression(C=0.1))],
        verbose=True,
        random_state=0,
    ).fit(X, y)
    err = capsys.readouterr().err
    assert "fitting candidates" in err and "2/2" in err and "refitting members" in err
