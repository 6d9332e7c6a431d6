"""EnSiamPretrainer: losses, modules, training loop, fault tolerance, errors."""

import json
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from conftest import ENSIAM_SMALL
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

import repens_sklearn
from repens_sklearn import EnSiamPretrainer
from repens_sklearn.backbones import build_backbone
from repens_sklearn.pretrain import (
    CollapseWarning,
    NonFiniteLossError,
    SiameseNetwork,
    ensemble_loss,
    pair_loss,
    prediction_mlp,
    projection_mlp,
    weighted_knn_accuracy,
)
from repens_sklearn.pretrain._losses import SiameseLoss

SMALL = ENSIAM_SMALL


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread avoids OpenMP spin contention on a loaded 2-core machine
    # (measured 16 s vs 0.2 s for the same 4-epoch fit).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(48, 6)).astype(np.float32)


def small(**params):
    return EnSiamPretrainer(**{**SMALL, **params})


def _cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ----------------------------------------------------------------- losses
def test_ensemble_loss_matches_eq5_and_stops_gradient():
    rng = np.random.default_rng(0)
    z_np, p_np = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    z = torch.tensor(z_np, requires_grad=True)
    p = torch.tensor(p_np, requires_grad=True)
    loss = ensemble_loss(z, p)
    expected = -np.mean(_cos(p_np, z_np.mean(0, keepdims=True)))
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert z.grad is None  # stop-gradient on the ensemble target
    assert p.grad.abs().sum() > 0
    # a prediction equal to the mean target gives the minimum -1
    assert ensemble_loss(
        z.detach(), z.detach().mean(0, keepdim=True).expand(4, 3, 5)
    ).item() == pytest.approx(-1.0)


def test_pair_loss_matches_eq2_and_simsiam_for_two_views():
    rng = np.random.default_rng(1)
    z_np, p_np = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    loss = pair_loss(torch.tensor(z_np), torch.tensor(p_np)).item()
    partner = [1, 0, 3, 2]  # N(k) of eq. 2
    assert loss == pytest.approx(-np.mean(_cos(p_np, z_np[partner])), rel=1e-10)
    # K=2: SimSiam's symmetric loss, eq. 1
    simsiam = 0.5 * (-_cos(p_np[0], z_np[1]).mean() - _cos(p_np[1], z_np[0]).mean())
    assert pair_loss(torch.tensor(z_np[:2]), torch.tensor(p_np[:2])).item() == pytest.approx(
        simsiam, rel=1e-10
    )


def test_siamese_loss_reshapes_views_and_rejects_unknown_target():
    rng = np.random.default_rng(2)
    z, p = torch.tensor(rng.normal(size=(12, 5))), torch.tensor(rng.normal(size=(12, 5)))
    crit = SiameseLoss(n_views=3, target="ensemble")
    assert crit(z, p).item() == pytest.approx(
        ensemble_loss(z.view(3, 4, 5), p.view(3, 4, 5)).item()
    )
    with pytest.raises(ValueError, match="target must be one of"):
        SiameseLoss(target="mean")


def test_projector_and_predictor_follow_section_4_1():
    proj = projection_mlp(8, dim=32, n_layers=3)
    linears = [m for m in proj if isinstance(m, torch.nn.Linear)]
    bns = [m for m in proj if isinstance(m, torch.nn.BatchNorm1d)]
    assert [lin.out_features for lin in linears] == [32, 32, 32]
    assert len(bns) == 3 and not bns[-1].affine  # BN after every layer, output BN without affine
    pred = prediction_mlp(32, hidden_dim=4)
    assert [m.out_features for m in pred if isinstance(m, torch.nn.Linear)] == [4, 32]
    net = SiameseNetwork(torch.nn.Linear(5, 8), 8, projector_dim=32, predictor_hidden_dim=4)
    z, p = net(torch.randn(6, 5))
    assert z.shape == p.shape == (6, 32)


def test_weighted_knn_accuracy_leave_one_out_and_test_mode():
    bank = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    assert weighted_knn_accuracy(bank, y, k=1) == 1.0
    # with every label flipped except each sample's own, LOO must be 0
    assert weighted_knn_accuracy(bank, np.array([0, 1, 0, 1]), k=1) == 0.0
    assert (
        weighted_knn_accuracy(bank, y, np.array([[1, 0.05], [0, 2]]), np.array([0, 1]), k=2) == 1.0
    )


# --------------------------------------------------------------- training
def test_fit_transform_history_and_lr_schedule(X):
    pre = small(max_epochs=4, base_lr=0.2, warmup_epochs=10)
    emb = pre.fit_transform(X)
    assert emb.shape == (48, 8) and emb.dtype == np.float32
    assert pre.n_epochs_ == 4 and pre.embedding_dim_ == 8
    assert pre.lr_ == pytest.approx(0.2 * 16 / 256)
    lrs = [b["lr"] for row in pre.history_ for b in row["batches"]]
    assert len(lrs) == 4 * 3  # 3 batches of 16 per epoch
    # warm-up scaled to max_epochs / 20 = 0.2 epoch -> round(0.6) = 1 step, then cosine
    assert lrs[0] == pytest.approx(pre.lr_)
    expected = [pre.lr_ * 0.5 * (1 + math.cos(math.pi * (s - 1) / 11)) for s in range(1, 12)]
    np.testing.assert_allclose(lrs[1:], expected, rtol=1e-12)
    assert all(0.5 / 4 < v < 1.2 / 4 for v in pre.history_[:, "collapse_std"])  # ~1/sqrt(16)
    assert pre.history_[-1, "train_loss"] < pre.history_[0, "train_loss"]
    assert list(pre.get_feature_names_out()) == [f"ensiampretrainer{i}" for i in range(8)]


def test_all_views_go_through_one_forward_pass(X):
    seen = []

    class Spy(Callback):
        def on_train_begin(self, net, **kwargs):
            net.module_.encoder.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))

    small(max_epochs=1, n_views=3, batch_size=48, callbacks=[Spy()]).fit(X)
    assert seen == [3 * 48]


def test_views_are_independent_draws(X):
    pre = small(max_epochs=1, n_views=4).fit(X)
    views = pre.net_.make_views(torch.from_numpy(X[:5])).view(4, 5, -1)
    assert not torch.equal(views[0], views[1])
    assert (views - torch.from_numpy(X[:5])).std() == pytest.approx(0.1, rel=0.3)


def test_same_seed_same_weights_and_targets_differ(X):
    a = small(max_epochs=2).fit_transform(X)
    b = small(max_epochs=2).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    c = small(max_epochs=2, random_state=1).fit_transform(X)
    assert not np.allclose(a, c)
    d = small(max_epochs=2, target="pair").fit_transform(X)
    assert not np.allclose(a, d)


def test_batch_size_larger_than_data_is_capped(X):
    pre = small(max_epochs=1, batch_size=1000).fit(X)
    assert pre.effective_batch_size_ == 48
    assert pre.lr_ == pytest.approx(0.1 * 48 / 256)
    assert len(pre.history_[0, "batches"]) == 1


def test_knn_monitor_records_accuracy(X):
    y = (X[:, 0] > 0).astype(int)
    pre = small(max_epochs=2).fit(X, X_val=X, y_val=y)
    accs = pre.history_[:, "knn_acc"]
    assert len(accs) == 2 and all(0.5 <= a <= 1.0 for a in accs)
    with pytest.raises(ValueError, match="needs both X_val and y_val"):
        small(max_epochs=1).fit(X, X_val=X)
    with pytest.raises(ValueError, match="y_val has 3 labels but X_val has 48"):
        small(max_epochs=1).fit(X, X_val=X, y_val=y[:3])
    with pytest.raises(ValueError, match="X_val|features"):
        small(max_epochs=1).fit(X, X_val=X[:, :3], y_val=y)


def test_knn_monitor_leaves_batchnorm_statistics_alone():
    """The monitor embeds X_val in eval mode: BatchNorm running stats never see X_val."""
    X_img, y_img = repens_sklearn.load_digits_images(return_X_y=True)
    params = dict(
        backbone="convnet_small",
        backbone_params={"width": 4},
        policy="crop_flip",
        max_epochs=1,
        batch_size=20,
        projector_dim=16,
        predictor_hidden_dim=8,
        device="cpu",
        random_state=0,
    )
    plain = EnSiamPretrainer(**params).fit(X_img[:40])
    monitored = EnSiamPretrainer(**params).fit(
        X_img[:40], X_val=X_img[40:100] * 0.2, y_val=y_img[40:100]
    )
    assert np.isfinite(monitored.history_[:, "knn_acc"]).all()
    stats = {k: v for k, v in plain.net_.module_.state_dict().items() if "running" in k}
    assert stats
    for key, value in stats.items():
        torch.testing.assert_close(monitored.net_.module_.state_dict()[key], value, msg=key)


def test_fitted_pretrainer_is_a_candidate_as_it_is(X):
    """TransferabilitySelector and ConcatEmbedder use a fitted EnSiamPretrainer as it is."""
    y = (X[:, 0] > 0).astype(int)
    pre = small(max_epochs=1).fit(X)
    before = _weights(pre)
    selector = repens_sklearn.TransferabilitySelector([("ensiam", pre)], n_neighbors=3).fit(X, y)
    np.testing.assert_allclose(selector.transform(X), pre.transform(X), atol=1e-6)
    concat = repens_sklearn.ConcatEmbedder([("ensiam", pre)], normalize=False).fit(X)
    np.testing.assert_allclose(concat.transform(X), pre.transform(X), atol=1e-6)
    for key, value in _weights(pre).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


class _Constant(torch.nn.Module):
    """Collapsed encoder: the same embedding for every input."""

    embedding_dim = 4

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.bias.expand(len(x), 4) + 0 * x[:, :1]


def test_collapse_is_logged_and_warned(X):
    with pytest.warns(CollapseWarning, match="collapsing at epoch 1"):
        pre = small(backbone=_Constant(), backbone_params=None, max_epochs=2).fit(X)
    assert pre.history_[:, "collapse_std"] == [0.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        small(max_epochs=1).fit(X)


# ------------------------------------------------------ backbone hand-over
def test_as_backbone_is_an_eval_cpu_copy(X):
    pre = small(max_epochs=1).fit(X)
    enc = pre.as_backbone()
    assert enc.embedding_dim == 8 and not enc.training
    assert enc is not pre.net_.module_.encoder
    with torch.no_grad():
        np.testing.assert_allclose(enc(torch.from_numpy(X)).numpy(), pre.transform(X), atol=1e-6)
        enc.net[0].weight.zero_()
    assert np.abs(pre.transform(X)).sum() > 0  # the copy does not share weights
    module = build_backbone(pre, None, (6,))
    assert module.embedding_dim == 8
    tta = repens_sklearn.MeanTTAEmbedder(
        backbone=pre, policy="identity", n_augmentations=1, device="cpu"
    ).fit(X)
    np.testing.assert_allclose(tta.transform(X), pre.transform(X), atol=1e-5)


def test_pickle_round_trip(X):
    pre = small(max_epochs=1).fit(X)
    again = pickle.loads(pickle.dumps(pre))
    np.testing.assert_array_equal(again.transform(X), pre.transform(X))


@pytest.mark.skipif(
    "crop_flip" not in repens_sklearn.list_augmentation_policies(),
    reason="image policies not registered",
)
@pytest.mark.parametrize("policy", ["crop_flip", "simsiam"])
def test_small_image_run(policy):
    X_img = repens_sklearn.load_digits_images(return_X_y=True)[0][:40]
    pre = EnSiamPretrainer(
        "convnet_small",
        backbone_params={"width": 4},
        policy=policy,
        max_epochs=1,
        batch_size=20,
        projector_dim=16,
        predictor_hidden_dim=8,
        device="cpu",
        random_state=0,
    )
    emb = pre.fit_transform(X_img)
    assert emb.shape == (40, 16) and np.isfinite(emb).all()
    assert pre.input_shape_ == (1, 8, 8)
    # flattened images with input_shape give the same embeddings
    flat = EnSiamPretrainer(**{**pre.get_params(), "input_shape": (1, 8, 8)})
    np.testing.assert_allclose(flat.fit_transform(X_img.reshape(40, -1)), emb, atol=1e-5)


# --------------------------------------------------------- fault tolerance
class _InterruptAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


class _PoisonAt(Callback):
    """Makes the encoder return NaN from the given epoch on."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            net.module_.encoder.register_forward_hook(lambda m, i, o: o * float("nan"))


def _weights(pre):
    return {k: v.clone() for k, v in pre.net_.module_.state_dict().items()}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(X, tmp_path):
    full = small(max_epochs=4, checkpoint_dir=tmp_path / "full").fit(X)
    with pytest.warns(UserWarning, match="interrupted after 2 of 4 epochs"):
        cut = small(max_epochs=4, checkpoint_dir=tmp_path / "cut", callbacks=[_InterruptAt(3)])
        cut.fit(X)
    assert cut.n_epochs_ == 2  # Ctrl-C: a usable, partly trained estimator
    assert cut.transform(X).shape == (48, 8)
    assert len(json.loads((tmp_path / "cut" / "history.json").read_text())) == 2
    resumed = small(max_epochs=4, checkpoint_dir=tmp_path / "cut").fit(X)
    assert resumed.n_epochs_ == 4
    expected, got = _weights(full), _weights(resumed)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    np.testing.assert_allclose(resumed.history_[:, "train_loss"], full.history_[:, "train_loss"])
    # a finished checkpoint just loads
    again = small(max_epochs=4, checkpoint_dir=tmp_path / "full").fit(X)
    np.testing.assert_array_equal(again.transform(X), full.transform(X))


def _noise_policy():
    def noise(x, generator):  # a new function object (new address) on every call
        return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)

    return noise


def test_resume_without_random_state_and_with_a_callable_policy(X, tmp_path, monkeypatch):
    """The seed comes from the checkpoint; a function policy compares by name, not address."""
    params = dict(
        random_state=None,
        policy=_noise_policy(),
        policy_params=None,
        max_epochs=3,
        checkpoint_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="interrupted after 1 of 3 epochs"):
        small(**params, callbacks=[_InterruptAt(2)]).fit(X)
    saved_seed = json.loads((tmp_path / "ensiam_config.json").read_text())["seed"]["value"]
    resumed = small(**{**params, "policy": _noise_policy()}).fit(X)
    assert resumed.n_epochs_ == 3
    monkeypatch.setattr(repens_sklearn._base, "seed_from", lambda _: saved_seed)
    full = small(**{**params, "checkpoint_dir": None}).fit(X)  # uninterrupted, same seed
    np.testing.assert_allclose(
        resumed.history_[:, "train_loss"], full.history_[:, "train_loss"], rtol=1e-6
    )


def test_non_finite_loss_names_the_epoch_and_keeps_the_checkpoint(X, tmp_path):
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss became nan at epoch 3 .*checkpoint "
        r"\(epoch 2\) is kept",
    ):
        failed = small(max_epochs=4, checkpoint_dir=tmp_path, callbacks=[_PoisonAt(3)])
        failed.fit(X)
    with pytest.raises(NotFittedError):
        failed.transform(X)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    resumed = small(max_epochs=4, checkpoint_dir=tmp_path).fit(X)
    assert resumed.n_epochs_ == 4 and np.isfinite(resumed.transform(X)).all()
    with pytest.raises(NonFiniteLossError, match="at epoch 1"):
        small(max_epochs=2, callbacks=[_PoisonAt(1)]).fit(X)


def test_checkpoint_of_another_run_is_refused(X, tmp_path):
    small(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(
        ValueError,
        match=r"checkpoint of another run: different projector_dim "
        r"\(it used 16, this call 32\); remove it",
    ):
        small(max_epochs=1, projector_dim=32, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(ValueError, match="different data"):
        small(max_epochs=1, checkpoint_dir=tmp_path).fit(X + 1)
    with pytest.raises(ValueError, match="different max_epochs"):
        small(max_epochs=2, checkpoint_dir=tmp_path).fit(X)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_views": 1}, "'n_views' parameter .* must be an int in the range \\[2, inf\\)"),
        ({"target": "mean"}, "'target' parameter .* must be a str among"),
        ({"n_views": 3, "target": "pair"}, "n_views must be even, got n_views=3"),
        (
            {"backbone": "convnet_small", "backbone_params": None},
            "cannot take inputs of shape \\(6,\\)",
        ),
        ({"backbone": "no_such_net", "backbone_params": None}, "no_such_net"),
        ({"policy": "no_such_policy"}, "no_such_policy"),
        ({"policy": lambda x, g: x, "policy_params": {"std": 1}}, "policy_params=.* only be used"),
        (
            {"policy": lambda x, g: x[:, :2]},
            "must return a tensor of the input's shape \\(1, 6\\), got \\(1, 2\\)",
        ),
        (
            {"policy": "gaussian_noise", "policy_params": {"sigma": 1}},
            "policy='gaussian_noise' with policy_params=\\{'sigma': 1\\}: .*sigma",
        ),
        (
            {"callbacks": ["nope"]},
            "callbacks\\[0\\] must be a skorch Callback or a \\(name, Callback\\) pair",
        ),
    ],
)
def test_bad_parameters(X, params, match):
    with pytest.raises((ValueError, InvalidParameterError), match=match):
        small(max_epochs=1, **params).fit(X)


def test_transform_checks(X):
    pre = small(max_epochs=1)
    with pytest.raises(Exception, match="not fitted"):
        pre.transform(X)
    pre.fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but EnSiamPretrainer is expecting 6"):
        pre.transform(X[:, :3])


def test_fixed_predictor_lr_keeps_the_peak_rate(X):
    est = small(max_epochs=2, fix_predictor_lr=True).fit(X)
    groups = est.net_.optimizer_.param_groups
    fixed = [g for g in groups if g.get("fix_lr")]
    assert len(fixed) == 1 and fixed[0]["lr"] == pytest.approx(est.lr_)
    predictor = {id(p) for p in est.net_.module_.predictor.parameters()}
    assert {id(p) for p in fixed[0]["params"]} == predictor
    others = [g for g in groups if not g.get("fix_lr")]
    assert others[0]["lr"] < est.lr_  # the cosine schedule moved the rest


def test_bn_per_view_normalizes_each_view_on_its_own(X):
    seen = []
    a = small(max_epochs=1, bn_per_view=True, n_views=4, batch_size=16)
    a.fit(X)
    b = small(max_epochs=1, n_views=4, batch_size=16).fit(X)
    assert np.isfinite(a.history_[-1, "train_loss"]) and np.isfinite(b.history_[-1, "train_loss"])
    hook = a.net_.module_.encoder.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    a.net_.forward_views(torch.zeros(4 * 16, *a.input_shape_))
    hook.remove()
    assert seen == [16] * 4  # four passes of one view each, not one pass of 64
