"""TransferabilitySelector, its scoring choices and the blocked leave-one-out kNN scores."""

from functools import partial

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from repens_sklearn import TransferabilitySelector
from repens_sklearn.selection import (
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    loo_knn_accuracy,
    loo_knn_predict,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300].astype(np.float32), y[:300]


@pytest.mark.parametrize(
    "metric, k", [("euclidean", 1), ("cosine", 1), ("euclidean", 3), ("cosine", 5)]
)
def test_loo_accuracy_matches_sklearn_leave_one_out(digits, metric, k):
    X, y = digits
    X = X[:80] + np.random.default_rng(0).normal(0, 1e-3, X[:80].shape)  # no distance ties
    y = y[:80] % 2  # two classes, odd k: no vote ties either
    knn = KNeighborsClassifier(k, metric=metric, algorithm="brute")
    expected = cross_val_score(knn, X, y, cv=LeaveOneOut()).mean()
    assert loo_knn_accuracy(X, y, n_neighbors=k, metric=metric) == pytest.approx(expected)


def test_blocks_give_the_same_predictions(digits):
    X, y = digits
    full = loo_knn_predict(X, y, n_neighbors=3)
    assert np.array_equal(loo_knn_predict(X, y, n_neighbors=3, block_size=7), full)


def test_own_sample_is_excluded():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = rng.integers(0, 2, 200)
    # with the sample itself counted, 1-NN would be 100 % right on random labels
    assert loo_knn_accuracy(X, y) < 0.7
    # an exact duplicate with the same label is the nearest other sample
    assert loo_knn_accuracy(np.vstack([X, X]), np.concatenate([y, y])) == 1.0


def test_vote_ties_go_to_nearest_class():
    # query 0's two neighbours: sample 1 (class 1, nearer) and sample 2 (class 2)
    X = np.array([[0.0], [1.0], [-2.0], [10.0], [11.0]])
    y = np.array([0, 1, 2, 0, 0])
    pred = loo_knn_predict(X, y, n_neighbors=2, metric="euclidean")
    assert pred[0] == 1
    X[1, 0], X[2, 0] = 2.0, -1.0  # now class 2 is nearer
    assert loo_knn_predict(X, y, n_neighbors=2, metric="euclidean")[0] == 2


def test_selector_scores_ranking_and_selection(digits):
    X, y = digits
    candidates = [
        ("pca2", PCA(2)),
        ("raw", FunctionTransformer()),
        ("pca20", PCA(20)),
        ("raw_again", FunctionTransformer()),
    ]
    sel = TransferabilitySelector(candidates, n_select=2).fit(X, y)
    assert list(sel.scores_) == ["pca2", "raw", "pca20", "raw_again"]
    assert sel.scores_["raw"] == pytest.approx(loo_knn_accuracy(X, y))
    assert sel.scores_["raw"] == sel.scores_["raw_again"]
    # equal scores keep candidate order
    assert sel.ranking_.index("raw") == sel.ranking_.index("raw_again") - 1
    assert sel.ranking_[-1] == "pca2"
    assert sel.selected_ == sel.ranking_[:2]
    assert [n for n, _ in sel.selected_candidates_] == sel.selected_
    Z = sel.transform(X)
    expected = np.hstack([t.transform(X) for _, t in sel.selected_candidates_])
    np.testing.assert_allclose(Z, expected, rtol=1e-6)
    assert Z.dtype == np.float32
    assert len(sel.get_feature_names_out()) == Z.shape[1]


def test_threshold_keeps_candidates_near_the_best(digits):
    X, y = digits
    candidates = [("pca2", PCA(2)), ("raw", FunctionTransformer()), ("pca20", PCA(20))]
    sel = TransferabilitySelector(candidates, threshold=0.95, n_select=None).fit(X, y)
    best = max(sel.scores_.values())
    assert sel.selected_ == [n for n in sel.ranking_ if sel.scores_[n] >= 0.95 * best]
    assert "pca2" not in sel.selected_ and len(sel.selected_) == 2
    sel1 = TransferabilitySelector(candidates, threshold=0.95, n_select=1).fit(X, y)
    assert sel1.selected_ == sel.selected_[:1]


def test_fitted_candidates_are_used_as_they_are(digits):
    X, y = digits
    fitted = PCA(5).fit(X[::-1][:50])  # fitted elsewhere: must not be refitted
    unfitted = PCA(5)
    sel = TransferabilitySelector([("fitted", fitted), ("unfitted", unfitted)]).fit(X, y)
    got = dict(sel.selected_candidates_)
    assert got["fitted"] is fitted
    assert got["unfitted"] is not unfitted and not hasattr(unfitted, "components_")
    np.testing.assert_allclose(got["unfitted"].components_, PCA(5).fit(X).components_, atol=1e-5)


def test_frozen_candidates_stay_fitted_through_clone(digits):
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    X, y = digits
    pretrained = PCA(5).fit(X[::-1][:50])
    sel = clone(TransferabilitySelector([("frozen", FrozenEstimator(pretrained))])).fit(X, y)
    np.testing.assert_allclose(sel.transform(X[:10]), pretrained.transform(X[:10]), rtol=1e-5)


def test_backbone_name_is_wrapped_in_mean_tta_embedder(digits):
    from repens_sklearn import MeanTTAEmbedder

    X, y = digits
    sel = TransferabilitySelector([("mlp", "mlp")]).fit(X[:60], y[:60])
    ((name, emb),) = sel.selected_candidates_
    assert isinstance(emb, MeanTTAEmbedder) and emb.backbone == "mlp"
    assert emb.n_augmentations == 0
    assert 0.0 < sel.scores_["mlp"] <= 1.0


def test_backbone_names_are_seeded_by_random_state(digits):
    X, y = digits
    scores = [
        TransferabilitySelector([("mlp", "mlp")], random_state=seed).fit(X[:80], y[:80]).scores_
        for seed in (0, 0, 1)
    ]
    assert scores[0] == scores[1]
    a = TransferabilitySelector([("mlp", "mlp")], random_state=0).fit(X[:80], y[:80])
    b = TransferabilitySelector([("mlp", "mlp")], random_state=1).fit(X[:80], y[:80])
    assert not np.allclose(a.transform(X[:5]), b.transform(X[:5]))


def test_nested_params_reach_the_candidates(digits):
    from sklearn.model_selection import GridSearchCV

    X, y = digits
    sel = TransferabilitySelector([("pca", PCA(2)), ("raw", "passthrough")], n_select=1)
    assert sel.get_params()["pca__n_components"] == 2
    sel.set_params(pca__n_components=5, raw=StandardScaler())
    assert sel.candidates[0][1].n_components == 5
    assert isinstance(sel.candidates[1][1], StandardScaler)
    pipe = make_pipeline(
        TransferabilitySelector([("pca", PCA(2))]), LogisticRegression(max_iter=300)
    )
    search = GridSearchCV(pipe, {"transferabilityselector__pca__n_components": [2, 16]}, cv=2)
    assert search.fit(X, y).best_params_ == {"transferabilityselector__pca__n_components": 16}


def test_selector_in_a_pipeline(digits):
    X, y = digits
    pipe = make_pipeline(
        TransferabilitySelector([("scaled", StandardScaler()), ("pca2", PCA(2))], n_select=1),
        LogisticRegression(max_iter=500),
    ).fit(X, y)
    assert pipe[0].selected_ == ["scaled"]
    assert pipe.score(X, y) > 0.95


def test_string_labels(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    sel = TransferabilitySelector([("raw", FunctionTransformer())]).fit(X, names)
    assert sel.scores_["raw"] == pytest.approx(loo_knn_accuracy(X, y))


def test_error_duplicate_names(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"duplicate names \['a'\]"):
        TransferabilitySelector([("a", PCA(2)), ("a", PCA(3))]).fit(X, y)


def test_error_one_class(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="at least 2 classes in y; got 1 class"):
        TransferabilitySelector([("a", PCA(2))]).fit(X, np.zeros(len(X)))


def test_error_candidate_that_fails_is_named(digits):
    X, y = digits
    with pytest.raises(ValueError, match="candidate 'too_many' failed to fit/embed"):
        TransferabilitySelector([("ok", PCA(2)), ("too_many", PCA(1000))]).fit(X, y)


def test_error_not_a_transformer(digits):
    X, y = digits
    with pytest.raises(TypeError, match="candidates: member 'lr' must be a scikit-learn"):
        TransferabilitySelector([("lr", LogisticRegression())]).fit(X, y)


def test_error_bad_candidates_shape(digits):
    X, y = digits
    with pytest.raises(TypeError, match=r"candidates\[0\] must be a \(name, embedder\) pair"):
        TransferabilitySelector([PCA(2)]).fit(X, y)
    with pytest.raises(ValueError, match="candidates must be a non-empty list"):
        TransferabilitySelector([]).fit(X, y)


def test_error_too_many_neighbours(digits):
    X, y = digits
    with pytest.raises(ValueError, match="n_neighbors=5 needs at least 6 samples"):
        TransferabilitySelector([("a", PCA(2))], n_neighbors=5).fit(X[:5], y[:5])


def test_error_bad_metric(digits):
    X, y = digits
    with pytest.raises(ValueError, match="'metric' parameter"):
        TransferabilitySelector([("a", PCA(2))], metric="manhattan").fit(X, y)


def test_error_non_finite_embeddings_are_named(digits):
    X, y = digits
    bad = FunctionTransformer(lambda X: np.full_like(X, np.nan))
    with pytest.raises(ValueError, match="candidate 'nan': returned embeddings holding NaN"):
        TransferabilitySelector([("ok", PCA(2)), ("nan", bad)]).fit(X, y)


def test_error_wrong_number_of_embeddings_is_named(digits):
    X, y = digits
    bad = FunctionTransformer(lambda X: X[:10])
    with pytest.raises(ValueError, match="candidate 'short': returned 10 embeddings for 300"):
        TransferabilitySelector([("short", bad)]).fit(X, y)


def test_tables_with_string_columns_go_to_the_candidates():
    pd = pytest.importorskip("pandas")
    from sklearn.preprocessing import OneHotEncoder

    df = pd.DataFrame({"colour": ["red", "blue"] * 10, "noise": ["a", "b", "c", "d", "e"] * 4})
    y = np.array([0, 1] * 10)
    sel = TransferabilitySelector(
        [
            (
                "colour",
                make_pipeline(FunctionTransformer(lambda d: d[["colour"]]), OneHotEncoder()),
            ),
            ("noise", make_pipeline(FunctionTransformer(lambda d: d[["noise"]]), OneHotEncoder())),
        ],
        n_select=1,
    ).fit(df, y)
    assert sel.scores_["colour"] == 1.0 and sel.selected_ == ["colour"]


# --------------------------------------------------------------------------- scoring (issue 17)

_SCORES = {
    "knn_loo": knn_loo_score,
    "logme": logme_score,
    "hscore": hscore,
    "linear_cv": linear_cv_score,
}


def _three(X):
    """Candidates of clearly different quality on digits (scaled to [0, 1])."""
    return [("pca2", PCA(2)), ("raw", FunctionTransformer()), ("pca20", PCA(20))]


@pytest.mark.parametrize("scoring", list(_SCORES))
def test_scoring_names_give_the_public_functions_scores(digits, scoring):
    X, y = digits
    X = X / 16
    sel = TransferabilitySelector(_three(X), scoring=scoring, n_select=2).fit(X, y)
    for name, fitted in [("raw", FunctionTransformer()), ("pca20", PCA(20).fit(X))]:
        Z = fitted.transform(X).astype(np.float32)
        assert sel.scores_[name] == pytest.approx(_SCORES[scoring](Z, y), rel=1e-6)
    assert sel.ranking_[-1] == "pca2"  # every score puts 2 PCA components last
    assert sel.selected_ == sel.ranking_[:2]


def test_callable_scoring_gets_the_embeddings_and_labels(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    seen = []

    def width_score(Z, labels):
        seen.append((Z.dtype, Z.shape, labels))
        return Z.shape[1]

    sel = TransferabilitySelector(_three(X), scoring=width_score, n_select=1).fit(X, names)
    assert sel.scores_ == {"pca2": 2.0, "raw": 64.0, "pca20": 20.0}
    assert sel.selected_ == ["raw"]
    assert all(
        dtype == np.float32 and shape[0] == len(X) and np.array_equal(labels, names)
        for dtype, shape, labels in seen
    )


def test_callable_scoring_pickles_for_parallel_workers(digits):
    X, y = digits
    scoring = partial(hscore, shrinkage=0)
    sel = TransferabilitySelector(_three(X), scoring=scoring, n_jobs=2).fit(X, y)
    assert sel.scores_["raw"] == pytest.approx(hscore(X.astype(np.float32), y, shrinkage=0))


@pytest.mark.parametrize("bad", [np.nan, "high", None, [0.1, 0.2]])
def test_error_callable_scoring_must_return_a_number(digits, bad):
    X, y = digits
    with pytest.raises(
        ValueError,
        match=r"candidate 'pca2': scoring callable .*<lambda> "
        r"returned .*one finite real number",
    ):
        TransferabilitySelector([("pca2", PCA(2))], scoring=lambda Z, y: bad).fit(X, y)


def test_error_unknown_scoring_names_the_parameter(digits):
    X, y = digits
    with pytest.raises(ValueError, match="'scoring' parameter of TransferabilitySelector"):
        TransferabilitySelector([("a", PCA(2))], scoring="accuracy").fit(X, y)


def test_threshold_is_min_max_for_unbounded_scores(digits):
    X, y = digits
    X = X / 16
    candidates = _three(X) + [("pca5", PCA(5))]
    full = TransferabilitySelector(candidates, scoring="logme", n_select=None).fit(X, y)
    assert full.threshold_score_ is None and len(full.selected_) == 4
    scores = np.array(list(full.scores_.values()))
    # LogME of both signs here: "a fraction of the best" would be meaningless
    assert (scores < 0).any() and (scores > 0).any()
    lo, hi = scores.min(), scores.max()
    for threshold in (0.0, 0.5, 0.9, 1.0):
        sel = TransferabilitySelector(
            candidates, scoring="logme", threshold=threshold, n_select=None
        ).fit(X, y)
        assert sel.threshold_score_ == pytest.approx(lo + threshold * (hi - lo))
        normalized = {n: (s - lo) / (hi - lo) for n, s in full.scores_.items()}
        expected = [n for n in full.ranking_ if normalized[n] >= threshold - 1e-12]
        assert sel.selected_ == expected
    assert (
        len(
            TransferabilitySelector(candidates, scoring="logme", threshold=0.0, n_select=None)
            .fit(X, y)
            .selected_
        )
        == 4
    )
    assert (
        TransferabilitySelector(candidates, scoring="logme", threshold=1.0, n_select=None)
        .fit(X, y)
        .selected_
        == full.ranking_[:1]
    )


def test_threshold_is_a_fraction_of_the_best_for_accuracies(digits):
    X, y = digits
    for scoring in ("knn_loo", "linear_cv"):
        sel = TransferabilitySelector(_three(X), scoring=scoring, threshold=0.9, n_select=None).fit(
            X, y
        )
        best = max(sel.scores_.values())
        assert sel.threshold_score_ == pytest.approx(0.9 * best)
        assert sel.selected_ == [n for n in sel.ranking_ if sel.scores_[n] >= 0.9 * best]


def test_threshold_one_keeps_the_best_despite_rounding():
    # lo + 1.0 * (hi - lo) rounds above hi for these values
    X = np.zeros((6, 1))
    y = np.array([0, 1] * 3)
    fixed = {"a": -0.7, "b": -0.1}
    candidates = [(n, FunctionTransformer(lambda X, v=v: X + v)) for n, v in fixed.items()]
    sel = TransferabilitySelector(
        candidates, scoring=lambda Z, y: float(Z[0, 0]), threshold=1.0, n_select=None
    ).fit(X, y)
    assert -0.7 + 1.0 * (-0.1 + 0.7) > -0.1
    assert sel.selected_ == ["b"]


def test_n_neighbors_only_constrains_knn_loo(digits):
    X, y = digits
    sel = TransferabilitySelector([("a", PCA(2))], scoring="logme", n_neighbors=5).fit(X[:5], y[:5])
    assert np.isfinite(sel.scores_["a"])


def test_fitted_attributes_end_with_an_underscore(digits):
    X, y = digits
    for params in ({}, {"scoring": "logme", "threshold": 0.5}):
        sel = TransferabilitySelector(_three(X), **params)
        before = set(vars(sel))
        sel.fit(X, y)
        added = set(vars(sel)) - before
        assert added, "fit must add fitted attributes"
        assert all(a.endswith("_") and not a.startswith("_") for a in added), sorted(added)
        assert sel.embedding_widths_ == {"pca2": 2, "raw": 64, "pca20": 20}


def test_feature_names_follow_the_selection(digits):
    X, y = digits
    sel = TransferabilitySelector(_three(X), n_select=2).fit(X, y)
    names = sel.get_feature_names_out()
    widths = [sel.embedding_widths_[n] for n in sel.selected_]
    assert list(names[:2]) == [f"{sel.selected_[0]}__0", f"{sel.selected_[0]}__1"]
    assert len(names) == sum(widths) == sel.transform(X).shape[1]


def test_other_scoring_reuses_the_cached_embeddings(digits, tmp_path):
    from joblib import Memory

    X, y = digits
    memory = Memory(str(tmp_path), verbose=0)
    _CountingScaler.fits = 0
    scores = {}
    for scoring in ("knn_loo", "logme", "hscore"):
        sel = TransferabilitySelector(
            [("counted", _CountingScaler())], scoring=scoring, memory=memory
        ).fit(X, y)
        scores[scoring] = sel.scores_["counted"]
    assert _CountingScaler.fits == 1  # embedded once, scored three ways
    Z = StandardScaler().fit_transform(X).astype(np.float32)
    assert scores["logme"] == pytest.approx(logme_score(Z, y), rel=1e-6)


class _CountingScaler(StandardScaler):
    """StandardScaler counting its fits (class-level: not part of joblib's cache key)."""

    fits = 0

    def fit(self, X, y=None, sample_weight=None):
        type(self).fits += 1
        return super().fit(X, y, sample_weight)
