"""LearnedEnsembleEmbedder: memory bank + MLPs trained with a cosine loss (learned-ensemble paper)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.preprocessing import FunctionTransformer, normalize
from sklearn.utils._param_validation import InvalidParameterError

from repens_sklearn import LearnedEnsembleEmbedder
from repens_sklearn.embedders._learned import _block_cosines


@pytest.fixture
def features():
    """Two non-negative 'backbones' of widths 6 and 4 sharing a latent cluster structure."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 5))
    latent = centres[rng.integers(0, 3, 90)] + 0.3 * rng.normal(size=(90, 5))
    a = np.maximum(latent @ rng.normal(size=(5, 6)), 0) + 0.01
    b = np.maximum(latent @ rng.normal(size=(5, 4)), 0) + 0.01
    return np.hstack([a, b]).astype(np.float32)


def _fast(**kwargs):
    params = dict(feature_groups=[6, 4], max_epochs=6, lr=1e-2, batch_size=32, device="cpu",
                  random_state=0)
    params.update(kwargs)
    return LearnedEnsembleEmbedder(**params)


def _recovery(emb, vectors, X):
    """Mean cosine between the frozen MLPs' outputs and the normalised targets."""
    module = emb.net_.module_
    targets = np.hstack([normalize(X[:, :6]), normalize(X[:, 6:])])
    with torch.no_grad():
        out = module.recover(torch.as_tensor(vectors))
        return float(_block_cosines(out, torch.as_tensor(targets), emb.feature_groups_).mean())


def test_transform_starts_from_the_zero_padded_normalised_average(features):
    emb = _fast(transform_epochs=0).fit(features)
    a, b = normalize(features[:, :6]), normalize(features[:, 6:])
    expected = normalize(a + np.pad(b, ((0, 0), (0, 2))))
    np.testing.assert_allclose(emb.transform(features), expected, rtol=1e-5, atol=1e-6)


def test_fit_transform_returns_the_learned_training_vectors(features):
    emb = _fast()
    Z = emb.fit_transform(features)
    assert Z.shape == (90, 6) and Z.dtype == np.float32
    np.testing.assert_array_equal(Z, emb.embedding_)
    np.testing.assert_array_equal(Z, emb.net_.module_.bank.weight.detach().numpy())
    init = emb.set_params(transform_epochs=0).transform(features)
    assert np.abs(Z - init).max() > 1e-3  # the vectors moved away from the average


def test_history_records_cosine_per_epoch_and_phase(features):
    emb = _fast(max_epochs=30).fit(features)
    cos = np.asarray(emb.history_[:, "train_cosine"])
    assert len(cos) == 30
    np.testing.assert_allclose(cos, 1 - np.asarray(emb.history_[:, "train_loss"]))
    assert emb.history_[:, "phase"] == ["warmup"] * 15 + ["joint"] * 15
    assert cos[-1] > cos[0] + 0.05 and cos[-1] > 0.85


def test_warmup_keeps_the_vectors_fixed(features):
    init = normalize(normalize(features[:, :6]) + np.pad(normalize(features[:, 6:]), ((0, 0), (0, 2))))
    moved = {}
    for fraction in (0.0, 0.75):
        emb = _fast(max_epochs=4, warmup_fraction=fraction).fit(features)
        moved[fraction] = np.abs(emb.embedding_ - init).mean()
    # 4 joint epochs move the vectors much more than 1 joint epoch after 3 of warm-up
    assert moved[0.75] < 0.6 * moved[0.0]


def test_only_the_rows_of_a_batch_move(features, monkeypatch):
    """Training vectors get one Adam step per epoch, like new vectors in transform:
    rows outside the batch must not drift on leftover momentum."""
    from skorch.callbacks import Callback

    from repens_sklearn.embedders import _learned

    moved_outside, moved_inside = [], []

    class Watch(Callback):
        def on_batch_begin(self, net, batch=None, training=False, **kwargs):
            self.before = net.module_.bank.weight.detach().clone()

        def on_batch_end(self, net, batch=None, training=False, **kwargs):
            if not training:
                return
            delta = (net.module_.bank.weight.detach() - self.before).abs().sum(1)
            inside = torch.zeros(len(delta), dtype=torch.bool)
            inside[batch[0]] = True
            moved_outside.append(float(delta[~inside].max()))
            moved_inside.append(float(delta[inside].max()))

    original = _learned._callbacks
    monkeypatch.setattr(_learned, "_callbacks",
                        lambda *a: original(*a) + [("watch", Watch())])
    _fast(max_epochs=4, batch_size=16, warmup_fraction=0.25).fit(features)
    assert max(moved_outside) == 0.0
    assert max(moved_inside) > 0.0  # the joint epochs do move the batch's rows


def test_transform_improves_recovery_and_is_per_sample(features):
    emb = _fast(max_epochs=20, transform_epochs=30).fit(features)
    learned = emb.transform(features)
    start = emb.set_params(transform_epochs=0).transform(features)
    emb.set_params(transform_epochs=30)
    assert _recovery(emb, learned, features) > _recovery(emb, start, features) + 0.005
    # each vector is optimised on its own: batch composition and size do not matter
    np.testing.assert_allclose(emb.transform(features[:7]), learned[:7], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.set_params(batch_size=5).transform(features), learned,
                               rtol=1e-5, atol=1e-6)


def test_mlps_transfer_to_other_data(features):
    emb = _fast(max_epochs=20).fit(features[:60])
    other = features[60:] * 1.7  # unseen samples of another scale
    learned = emb.transform(other)
    start = emb.set_params(transform_epochs=0).transform(other)
    assert learned.shape == (30, 6)
    assert _recovery(emb, learned, other) > _recovery(emb, start, other)
    np.testing.assert_array_equal(emb.net_.module_.bank.weight.shape, (60, 6))


def test_same_random_state_same_result(features):
    a = _fast().fit(features)
    b = _fast().fit(features)
    c = _fast(random_state=1).fit(features)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    np.testing.assert_array_equal(a.transform(features), b.transform(features))
    assert np.abs(a.embedding_ - c.embedding_).max() > 1e-4


def test_nonnegative_keeps_vectors_in_the_positive_orthant(features):
    signed = features - features.mean(axis=0)
    emb = _fast(final_activation="identity", nonnegative=True).fit(signed)
    assert emb.embedding_.min() >= 0
    assert emb.transform(signed).min() >= 0
    free = _fast(final_activation="identity").fit(signed)
    assert free.embedding_.min() < 0


def test_relu_head_warns_about_negative_targets(features):
    signed = features.copy()
    signed[:, 6:] -= signed[:, 6:].mean(axis=0)  # the second block only turns signed
    with pytest.warns(UserWarning, match=r"final_activation='relu' cannot reproduce the "
                                         r"negative values of 'block 1' \(\d+% of"):
        _fast(max_epochs=1).fit(signed)
    with pytest.warns(UserWarning, match="negative values of 'pca'"):  # "drop" not counted
        _fast(max_epochs=1, feature_groups=None,
              backbones=[("gone", "drop"), ("raw", "passthrough"), ("pca", PCA(2))]).fit(features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fast(max_epochs=1).fit(features)  # non-negative: no warning
        _fast(max_epochs=1, final_activation="identity").fit(signed)


def test_single_model_case_and_depth(features):
    emb = _fast(feature_groups=None, mlp_depth=3, hidden_dim=16).fit(features)
    assert emb.feature_groups_ == [10]
    assert emb.embedding_.shape == (90, 10)
    assert len(emb.net_.module_.mlps) == 1
    linears = [m for m in emb.net_.module_.mlps[0] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 16), (16, 16), (16, 10)]


def test_backbones_are_fitted_and_give_the_targets(features):
    backbones = [("pca", PCA(3)), ("raw", "passthrough"), ("net", "mlp")]
    emb = _fast(feature_groups=None, backbones=backbones, final_activation="identity").fit(features)
    assert emb.feature_groups_ == [3, 10, 64]
    assert emb.embedding_.shape == (90, 64)
    assert emb.n_features_in_ == 10
    assert emb.transform(features[:4]).shape == (4, 64)
    params = emb.get_params()
    assert params["pca__n_components"] == 3
    emb.set_params(pca__n_components=2, net="drop")
    assert emb.fit(features).feature_groups_ == [2, 10]


def test_pickle_round_trip(features):
    emb = _fast().fit(features)
    again = pickle.loads(pickle.dumps(emb))
    np.testing.assert_array_equal(again.transform(features), emb.transform(features))


def test_feature_groups_must_sum_to_columns(features):
    with pytest.raises(ValueError, match=r"feature_groups=\[6, 3\] sums to 9, but X has 10 columns"):
        _fast(feature_groups=[6, 3]).fit(features)


@pytest.mark.parametrize("groups", [[6, 0, 4], [[6, 4]], [6.5, 3.5]])
def test_feature_groups_must_be_positive_ints(features, groups):
    with pytest.raises(ValueError, match="feature_groups must be a list of positive ints"):
        _fast(feature_groups=groups).fit(features)


def test_feature_groups_with_backbones_is_an_error(features):
    with pytest.raises(ValueError, match="feature_groups is only for precomputed features"):
        _fast(backbones=[("pca", PCA(2))]).fit(features)


def test_backbone_width_change_is_an_error(features):
    emb = _fast(feature_groups=None, backbones=[("pca", PCA(3))],
                final_activation="identity").fit(features)
    emb.targets_.embedders_[0][1].components_ = emb.targets_.embedders_[0][1].components_[:2]
    with pytest.raises(ValueError, match="embedder 'pca' returned 2 features, but it returned 3"):
        emb.transform(features)


def test_nan_features_are_errors(features):
    bad = features.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        _fast().fit(bad)
    emb = _fast().fit(features)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        emb.transform(bad)
    nan_backbone = FunctionTransformer(lambda Z: np.where(Z > 1, np.nan, Z))
    with pytest.raises(ValueError, match="embedder 'nan' returned NaN or infinite features"):
        _fast(feature_groups=None, backbones=[("nan", nan_backbone)]).fit(features)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_warmup_fraction_outside_unit_interval(features, value):
    with pytest.raises(InvalidParameterError, match=r"'warmup_fraction' parameter .* range \[0.0, 1.0\)"):
        _fast(warmup_fraction=value).fit(features)


def test_transform_checks_columns(features):
    emb = _fast().fit(features)
    with pytest.raises(ValueError, match="X has 8 features, but LearnedEnsembleEmbedder is expecting 10"):
        emb.transform(features[:, :8])


def test_clone_keeps_params():
    emb = _fast(backbones=[("pca", PCA(2))], feature_groups=None, mlp_depth=3)
    cloned = clone(emb)
    assert cloned.get_params()["pca__n_components"] == 2 and cloned.mlp_depth == 3
