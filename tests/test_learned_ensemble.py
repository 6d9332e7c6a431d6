"""LearnedEnsembleEmbedder: memory bank + MLPs trained with a cosine loss.

The method of "Learning Rich Nearest Neighbor Representations from Self-supervised
Ensembles" (section 3).
"""

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
    params = dict(
        feature_groups=[6, 4], max_epochs=6, lr=1e-2, batch_size=32, device="cpu", random_state=0
    )
    params.update(kwargs)
    return LearnedEnsembleEmbedder(**params)


def _recovery(emb, vectors, X):
    """Mean cosine between the frozen MLPs' outputs and the normalized targets."""
    module = emb.net_.module_
    targets = np.hstack([normalize(X[:, :6]), normalize(X[:, 6:])])
    with torch.no_grad():
        out = module.recover(torch.as_tensor(vectors))
        return float(_block_cosines(out, torch.as_tensor(targets), emb.feature_groups_).mean())


def test_transform_starts_from_the_zero_padded_normalized_average(features):
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
    init = normalize(
        normalize(features[:, :6]) + np.pad(normalize(features[:, 6:]), ((0, 0), (0, 2)))
    )
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
    monkeypatch.setattr(_learned, "_callbacks", lambda *a: original(*a) + [("watch", Watch())])
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
    np.testing.assert_allclose(
        emb.set_params(batch_size=5).transform(features), learned, rtol=1e-5, atol=1e-6
    )


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
    with pytest.warns(
        UserWarning,
        match=r"final_activation='relu' cannot reproduce the "
        r"negative values of 'block 1' \(\d+% of",
    ):
        _fast(max_epochs=1).fit(signed)
    with pytest.warns(UserWarning, match="negative values of 'pca'"):  # "drop" not counted
        _fast(
            max_epochs=1,
            feature_groups=None,
            embedders=[("gone", "drop"), ("raw", "passthrough"), ("pca", PCA(2))],
        ).fit(features)
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
    emb = _fast(feature_groups=None, embedders=backbones, final_activation="identity").fit(features)
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
    with pytest.raises(
        ValueError, match=r"feature_groups=\[6, 3\] sums to 9, but X has 10 columns"
    ):
        _fast(feature_groups=[6, 3]).fit(features)


@pytest.mark.parametrize("groups", [[6, 0, 4], [[6, 4]], [6.5, 3.5]])
def test_feature_groups_must_be_positive_ints(features, groups):
    with pytest.raises(ValueError, match="feature_groups must be a list of positive ints"):
        _fast(feature_groups=groups).fit(features)


def test_feature_groups_with_backbones_is_an_error(features):
    with pytest.raises(ValueError, match="feature_groups is only for precomputed features"):
        _fast(embedders=[("pca", PCA(2))]).fit(features)


def test_backbone_width_change_is_an_error(features):
    emb = _fast(feature_groups=None, embedders=[("pca", PCA(3))], final_activation="identity").fit(
        features
    )
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
        _fast(feature_groups=None, embedders=[("nan", nan_backbone)]).fit(features)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_warmup_fraction_outside_unit_interval(features, value):
    with pytest.raises(
        InvalidParameterError, match=r"'warmup_fraction' parameter .* range \[0.0, 1.0\)"
    ):
        _fast(warmup_fraction=value).fit(features)


def test_transform_checks_columns(features):
    emb = _fast().fit(features)
    with pytest.raises(
        ValueError, match="X has 8 features, but LearnedEnsembleEmbedder is expecting 10"
    ):
        emb.transform(features[:, :8])


def test_clone_keeps_params():
    emb = _fast(embedders=[("pca", PCA(2))], feature_groups=None, mlp_depth=3)
    cloned = clone(emb)
    assert cloned.get_params()["pca__n_components"] == 2 and cloned.mlp_depth == 3


# --------------------------------------------------------------------------- step parity
def _init(X):
    return normalize(normalize(X[:, :6]) + np.pad(normalize(X[:, 6:]), ((0, 0), (0, 2))))


def test_a_rows_first_update_has_the_same_size_in_fit_and_transform(features):
    """Every vector's first Adam step moves each coordinate by lr, in fit as in transform.

    (With a tensor-wide step count, the rows of a later batch of the epoch moved by
    0.58-0.74 lr in fit, 1.0 lr in transform.)
    """
    lr = 1e-3
    emb = _fast(max_epochs=1, warmup_fraction=0.0, lr=lr, batch_size=16).fit(features)
    init = _init(features)
    fit_step = np.abs(emb.embedding_ - init).max(axis=1) / lr
    transform_step = (
        np.abs(emb.set_params(transform_epochs=1).transform(features) - init).max(axis=1) / lr
    )
    np.testing.assert_allclose(fit_step, 1.0, rtol=1e-3)
    np.testing.assert_allclose(transform_step, 1.0, rtol=1e-3)


def test_a_rows_kth_update_in_fit_is_torch_adam_on_that_row_alone(features, monkeypatch):
    """Replaying each row's own gradients through torch.optim.Adam on that row alone (what
    transform does for a new vector) gives the trained bank: the per-row step count, not the
    number of batches seen by the whole bank, sets the bias correction."""
    from skorch.callbacks import Callback

    from repens_sklearn.embedders import _learned

    grads = []

    class Grab(Callback):
        def on_grad_computed(self, net, named_parameters, X=None, y=None, training=False, **kwargs):
            grad = net.module_.bank.weight.grad
            if grad is not None:
                grads.append(grad.coalesce().clone())

    original = _learned._callbacks
    monkeypatch.setattr(_learned, "_callbacks", lambda *a: original(*a) + [("grab", Grab())])
    lr = 1e-2
    emb = _fast(max_epochs=4, warmup_fraction=0.25, lr=lr, batch_size=16).fit(features)
    assert len(grads) == 3 * 6  # 3 joint epochs of 6 batches
    expected = torch.as_tensor(_init(features))
    for row in range(len(expected)):
        vector = torch.nn.Parameter(expected[row].clone())
        adam = torch.optim.Adam([vector], lr=lr)
        for grad in grads:
            hit = torch.nonzero(grad.indices()[0] == row).flatten()
            if len(hit):
                vector.grad = grad.values()[hit[0]].clone()
                adam.step()
        expected[row] = vector.detach()
    np.testing.assert_allclose(emb.embedding_, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_row_adam_is_torch_adam_per_row():
    from repens_sklearn.embedders._learned import _RowAdam

    rng = np.random.default_rng(0)
    grads = [torch.as_tensor(rng.normal(size=(3, 4)), dtype=torch.float32) for _ in range(5)]
    dense = torch.nn.Parameter(torch.ones(3, 4))
    reference = torch.nn.Parameter(torch.ones(3, 4))
    ours, adam = _RowAdam([dense], lr=0.1), torch.optim.Adam([reference], lr=0.1)
    for g in grads:  # dense gradients: plain Adam
        dense.grad, reference.grad = g.clone(), g.clone()
        ours.step()
        adam.step()
    np.testing.assert_allclose(dense.detach(), reference.detach(), rtol=1e-6)
    # sparse gradients: row 1 is only updated from the third step on, as Adam's first step
    sparse = torch.nn.Parameter(torch.ones(3, 4))
    ours = _RowAdam([sparse], lr=0.1)
    for k, g in enumerate(grads):
        rows = torch.tensor([0, 2] if k < 2 else [0, 1, 2])
        sparse.grad = torch.sparse_coo_tensor(rows[None], g[rows], (3, 4), check_invariants=True)
        ours.step()
    row1 = torch.nn.Parameter(torch.ones(4))
    adam = torch.optim.Adam([row1], lr=0.1)
    for g in grads[2:]:
        row1.grad = g[1].clone()
        adam.step()
    np.testing.assert_allclose(sparse.detach()[1], row1.detach(), rtol=1e-6)
    np.testing.assert_allclose(sparse.detach()[[0, 2]], reference.detach()[[0, 2]], rtol=1e-6)
    assert ours.state[sparse]["step"].tolist() == [5, 3, 5]


# --------------------------------------------------------------------------- composition, device
def test_params_come_from_base_composition(features):
    from repens_sklearn._compat import _BaseComposition

    emb = _fast(feature_groups=None, embedders=[("pca", PCA(2)), ("raw", "passthrough")])
    assert isinstance(emb, _BaseComposition)
    params = emb.get_params()
    assert params["pca"] is emb.embedders[0][1] and params["pca__n_components"] == 2
    assert "pca" not in emb.get_params(deep=False)
    emb.set_params(embedders=[("pca", PCA(3))], pca__whiten=True)
    assert emb.embedders[0][1].n_components == 3 and emb.embedders[0][1].whiten
    assert _fast().get_params()["feature_groups"] == [6, 4]  # no backbones: plain params


@pytest.mark.parametrize("device", [None, "auto", "cpu", torch.device("cpu")])
def test_device_accepts_none_strings_and_torch_devices(features, device):
    emb = _fast(max_epochs=1, device=device).fit(features)
    assert emb.transform(features[:3]).shape == (3, 6)


def test_errors_about_X_name_this_estimator(features):
    backbones = [("raw", "passthrough")]
    with pytest.raises(ValueError, match="0 sample.*required by LearnedEnsembleEmbedder"):
        _fast(feature_groups=None, embedders=backbones).fit(features[:0])
    emb = _fast(feature_groups=None, embedders=backbones, max_epochs=1).fit(features)
    with pytest.raises(
        ValueError, match="X has 5 features, but LearnedEnsembleEmbedder is expecting 10"
    ):
        emb.transform(features[:, :5])
    assert emb.n_features_in_ == 10


def test_random_state_fixes_named_backbones(features):
    def run(seed):
        return _fast(
            feature_groups=None,
            embedders=[("net", "mlp")],
            max_epochs=2,
            final_activation="identity",
            random_state=seed,
        ).fit_transform(features)

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_feature_names_out(features):
    emb = _fast(max_epochs=1).fit(features)
    names = emb.get_feature_names_out()
    assert list(names) == [f"learnedensembleembedder{i}" for i in range(6)]
    assert "_n_features_out" not in vars(emb)  # derived from embedding_, not stored
