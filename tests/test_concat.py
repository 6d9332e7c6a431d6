"""ConcatEmbedder: per-block normalization, weights, fractions, diversity compression, mean."""

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler, normalize

from repens_sklearn import ConcatEmbedder, MeanTTAEmbedder


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 8)).astype(np.float32)


def test_fitted_members_are_used_as_they_are_unfitted_ones_are_cloned(X):
    pretrained = PCA(n_components=3).fit(X[:20] ** 2)  # fitted on other data
    fresh = PCA(n_components=3)
    emb = ConcatEmbedder([("pre", pretrained), ("fresh", fresh)], normalize=False).fit(X)
    assert emb.embedders_[0][1] is pretrained
    np.testing.assert_allclose(emb.transform(X)[:, :3], pretrained.transform(X), rtol=1e-5)
    assert not hasattr(fresh, "components_")  # the parameter itself stays unfitted
    np.testing.assert_allclose(
        emb.transform(X)[:, 3:], PCA(n_components=3).fit_transform(X), rtol=1e-4, atol=1e-5
    )


def test_blocks_are_l2_normalized_then_concatenated(X):
    emb = ConcatEmbedder([("scaled", StandardScaler()), ("raw", "passthrough")])
    Z = emb.fit_transform(X)
    expected = np.hstack([normalize(StandardScaler().fit_transform(X)), normalize(X)])
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(Z[:, :8], axis=1), 1.0, rtol=1e-5)
    assert Z.dtype == np.float32
    assert emb.block_widths_ == [8, 8]
    np.testing.assert_allclose(emb.transform(X), Z, rtol=1e-5, atol=1e-6)


def test_without_normalize_is_plain_feature_union(X):
    Z = ConcatEmbedder([("a", "passthrough"), ("b", PCA(3))], normalize=False).fit_transform(X)
    np.testing.assert_allclose(Z[:, :8], X, rtol=1e-6)
    np.testing.assert_allclose(Z[:, 8:], PCA(3).fit_transform(X), rtol=1e-4, atol=1e-5)


def test_weights_scale_normalized_blocks(X):
    Z = ConcatEmbedder([("a", "passthrough"), ("b", PCA(3))], weights={"b": 3.0}).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z[:, :8], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(Z[:, 8:], axis=1), 3.0, rtol=1e-5)


def test_fractions_keep_a_random_share_of_each_block(X):
    members = [("a", "passthrough"), ("b", StandardScaler())]
    emb = ConcatEmbedder(members, fractions={"a": 0.25, "b": 0.75}, random_state=0)
    Z = emb.fit_transform(X)
    cols_a, cols_b = emb.block_columns_
    assert (len(cols_a), len(cols_b)) == (2, 6)  # ceil(0.25 * 8), ceil(0.75 * 8)
    np.testing.assert_allclose(Z[:, :2], normalize(X)[:, cols_a], rtol=1e-5)
    np.testing.assert_allclose(emb.transform(X), Z, rtol=1e-5)
    assert list(emb.get_feature_names_out()[:2]) == [f"a__{i}" for i in cols_a]
    # the draw is seeded: same seed same columns, another seed other columns
    again = clone(emb).fit(X)
    assert all(np.array_equal(p, q) for p, q in zip(again.block_columns_, emb.block_columns_))
    draws = {
        tuple(clone(emb).set_params(random_state=s).fit(X).block_columns_[1]) for s in range(6)
    }
    assert len(draws) > 1


def test_float_fraction_applies_to_every_block(X):
    emb = ConcatEmbedder([("a", "passthrough"), ("b", PCA(4))], fractions=0.5, random_state=0)
    assert emb.fit_transform(X).shape == (40, 4 + 2)


def test_max_features_keeps_highest_variance_dimensions():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6)).astype(np.float32) * np.array([1, 1, 1, 1, 8, 1], np.float32)
    X[:, 1] *= 6
    emb = ConcatEmbedder(
        [("a", "passthrough"), ("b", "passthrough")], normalize=False, max_features=3
    ).fit(X)
    # columns 4 and 1 dominate in both copies; the third pick is one of the copies again
    assert set(emb.selected_features_[:2]) == {4, 10}
    assert set(emb.selected_features_) <= {4, 10, 1, 7}
    np.testing.assert_allclose(emb.feature_scores_, np.hstack([X, X]).var(axis=0), rtol=1e-4)
    assert emb.transform(X).shape == (200, 3)
    np.testing.assert_array_equal(emb.transform(X), np.hstack([X, X])[:, emb.selected_features_])


def test_combine_mean_is_the_normalized_average(X):
    emb = ConcatEmbedder([("a", "passthrough"), ("b", StandardScaler())], combine="mean")
    Z = emb.fit_transform(X)
    expected = normalize(normalize(X) + normalize(StandardScaler().fit_transform(X)))
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)
    assert Z.shape == (40, 8)
    assert list(emb.get_feature_names_out()) == [f"mean__{i}" for i in range(8)]


def test_params_reach_members(X):
    emb = ConcatEmbedder([("pca", PCA(2)), ("scaled", StandardScaler())])
    params = emb.get_params()
    assert params["pca__n_components"] == 2 and params["pca"] is emb.named_embedders.pca
    emb.set_params(pca__n_components=5, scaled="drop")
    assert emb.fit_transform(X).shape == (40, 5)
    pipe = Pipeline([("emb", emb)]).set_params(emb__pca__n_components=3)
    assert pipe.fit_transform(X).shape == (40, 3)


def test_registered_backbone_name_becomes_mean_tta_embedder(X):
    emb = ConcatEmbedder([("net", "mlp"), ("raw", "passthrough")], random_state=0).fit(X)
    net = emb.embedders_[0][1]
    assert isinstance(net, MeanTTAEmbedder) and net.n_augmentations == 0
    assert emb.block_widths_ == [64, 8]


class _CountingScaler(TransformerMixin, BaseEstimator):
    fits = 0

    def fit(self, X, y=None):
        type(self).fits += 1
        self.scale_ = np.abs(X).max(axis=0)
        return self

    def transform(self, X):
        return X / self.scale_


def test_memory_caches_member_fits(X, tmp_path):
    _CountingScaler.fits = 0
    emb = ConcatEmbedder([("c", _CountingScaler()), ("raw", "passthrough")], memory=str(tmp_path))
    first = emb.fit_transform(X)
    second = clone(emb).fit_transform(X)
    assert _CountingScaler.fits == 1
    np.testing.assert_array_equal(first, second)


def test_n_jobs_gives_the_same_result(X):
    members = [("a", StandardScaler()), ("b", PCA(3)), ("c", "passthrough")]
    serial = ConcatEmbedder(members).fit_transform(X)
    with parallel_config(backend="threading"):
        parallel = ConcatEmbedder(members, n_jobs=2).fit_transform(X)
    np.testing.assert_allclose(parallel, serial, rtol=1e-6)


def test_width_change_between_fit_and_transform_is_an_error(X):
    emb = ConcatEmbedder([("pca", PCA(3)), ("raw", "passthrough")]).fit(X)
    emb.embedders_[0][1].components_ = emb.embedders_[0][1].components_[:2]
    with pytest.raises(
        ValueError, match="embedder 'pca' returned 2 features, but it returned 3 in fit"
    ):
        emb.transform(X)


def test_nan_member_output_is_an_error(X):
    bad = FunctionTransformer(lambda Z: np.where(Z > 1, np.nan, Z))
    with pytest.raises(ValueError, match="embedder 'bad' returned NaN or infinite features"):
        ConcatEmbedder([("bad", bad)]).fit(X)


def test_nan_input_is_an_error(X):
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ConcatEmbedder([("a", "passthrough")]).fit(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(combine="mean"), r"combine='mean' needs members of equal width.*'a': 8, 'b': 3"),
        (dict(combine="mean", fractions=0.5), "fractions cannot be used with combine='mean'"),
        (dict(weights={"zz": 2.0}), r"weights names unknown members \['zz'\]"),
        (dict(fractions={"a": 0.5, "q": 0.5}), r"fractions names unknown members \['q'\]"),
        (dict(fractions={"a": 1.5}), r"fractions\['a'\] must be in \(0, 1\], got 1.5"),
        (dict(weights={"a": float("nan")}), r"weights\['a'\] must be a finite number"),
        (dict(max_features=50), "max_features=50 is more than the 11 combined dimensions"),
    ],
)
def test_bad_parameters(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConcatEmbedder([("a", "passthrough"), ("b", PCA(3))], **kwargs).fit(X)


@pytest.mark.parametrize(
    "embedders, error, match",
    [
        ([], ValueError, "embedders must be a non-empty list"),
        ([("a", "drop")], ValueError, "every member is 'drop'"),
        ([("a", PCA(2)), ("a", PCA(3))], ValueError, r"embedders has duplicate names \['a'\]"),
        ([("a", 3)], TypeError, "embedders: member 'a' must be a scikit-learn transformer"),
        ([("a", "no_such_backbone")], ValueError, "no_such_backbone"),
    ],
)
def test_bad_members(X, embedders, error, match):
    with pytest.raises(error, match=match):
        ConcatEmbedder(embedders).fit(X)


def test_transform_checks_number_of_features(X):
    emb = ConcatEmbedder([("a", "passthrough")]).fit(X)
    with pytest.raises(ValueError, match="X has 5 features, but ConcatEmbedder is expecting 8"):
        emb.transform(X[:, :5])


def test_tables_with_string_columns_go_to_the_members():
    pd = pytest.importorskip("pandas")
    from sklearn.preprocessing import OneHotEncoder

    df = pd.DataFrame({"colour": ["red", "blue", "red", "green"] * 5, "size": np.arange(20.0)})
    emb = ConcatEmbedder(
        [
            ("onehot", OneHotEncoder(sparse_output=False)),
            ("size", FunctionTransformer(lambda d: d[["size"]].to_numpy())),
        ],
        normalize=False,
    )
    Z = emb.fit_transform(df)
    assert Z.shape == (20, 3 + 20 + 1) and emb.n_features_in_ == 2
    np.testing.assert_array_equal(Z[:, -1], np.arange(20.0))
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing"):
        emb.transform(df[["colour"]])


class _FitRecorder(TransformerMixin, BaseEstimator):
    """A member that records every fit (and fails, when asked to)."""

    fits = 0

    def __init__(self, fail=False):
        self.fail = fail

    def fit(self, X, y=None):
        type(self).fits += 1
        if self.fail:
            raise RuntimeError("this member must not be fitted")
        self.n_ = X.shape[1]
        return self

    def transform(self, X):
        return X


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights={"zz": 2.0}), r"weights names unknown members \['zz'\]"),
        (dict(weights={"b": 2.0}), r"weights names unknown members \['b'\]"),  # "b" is dropped
        (dict(fractions={"q": 0.5}), r"fractions names unknown members \['q'\]"),
        (dict(fractions={"a": 0.0}), r"fractions\['a'\] must be in \(0, 1\]"),
        (dict(weights={"a": float("inf")}), r"weights\['a'\] must be a finite number"),
        (dict(combine="mean", fractions=0.5), "fractions cannot be used with combine='mean'"),
    ],
)
def test_parameters_are_checked_before_any_member_is_fitted(X, kwargs, match):
    _FitRecorder.fits = 0
    members = [("a", _FitRecorder(fail=True)), ("b", "drop"), ("c", _FitRecorder(fail=True))]
    with pytest.raises(ValueError, match=match):
        ConcatEmbedder(members, **kwargs).fit(X)
    assert _FitRecorder.fits == 0


def test_equal_widths_for_mean_need_the_fitted_members(X):
    _FitRecorder.fits = 0
    with pytest.raises(ValueError, match="combine='mean' needs members of equal width"):
        ConcatEmbedder([("a", _FitRecorder()), ("b", PCA(3))], combine="mean").fit(X)
    assert _FitRecorder.fits == 1


def test_random_state_fixes_named_backbones(X):
    def run(seed, members=(("a", "mlp"),)):
        return ConcatEmbedder(list(members), random_state=seed).fit_transform(X)

    np.testing.assert_array_equal(run(0), run(0))
    assert np.abs(run(0) - run(1)).max() > 1e-3
    # two members naming one backbone are two initialisations, not one twice
    twice = run(0, [("a", "mlp"), ("b", "mlp")])
    assert np.abs(twice[:, :64] - twice[:, 64:]).max() > 1e-3
    np.testing.assert_array_equal(twice, run(0, [("a", "mlp"), ("b", "mlp")]))
    # dropping a member leaves the other members' seeds alone
    dropped = run(0, [("a", "drop"), ("b", "mlp")])
    np.testing.assert_array_equal(dropped, twice[:, 64:])
    seeds = [
        m.random_state
        for _, m in ConcatEmbedder([("a", "mlp"), ("b", "mlp")], random_state=0).fit(X).embedders_
    ]
    assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]
    unseeded = ConcatEmbedder([("a", "mlp")]).fit(X).embedders_[0][1]
    assert unseeded.random_state is None
