"""Augmentation policies (crop_flip, simsiam, multiscale, gaussian_noise) and aggregations."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from repens_sklearn import (
    create_aggregation,
    create_augmentation_policy,
    list_aggregations,
    list_augmentation_policies,
)
from repens_sklearn.augment import seeded_global_rng

IMAGE_POLICIES = [
    ("crop_flip", {}),
    ("crop_flip", {"padding": 2}),
    ("simsiam", {}),
    ("simsiam", {"strength": "strong"}),
    ("multiscale", {}),
]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _images(n=32, channels=3, size=16, seed=0):
    return torch.rand(n, channels, size, size, generator=_gen(seed))


def test_registry_has_the_builtin_policies():
    assert {"identity", "gaussian_noise", "crop_flip", "simsiam", "multiscale"} <= set(
        list_augmentation_policies())
    assert {"mean", "gem", "median", "max"} <= set(list_aggregations())


@pytest.mark.parametrize("name,params", IMAGE_POLICIES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_image_policy_shape_and_reproducibility(name, params, channels):
    policy = create_augmentation_policy(name, **params)
    x = _images(channels=channels)
    a, b, c = policy(x, _gen(0)), policy(x, _gen(0)), policy(x, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the generator advances: two calls on one generator give fresh draws
    g = _gen(0)
    assert not torch.equal(policy(x, g), policy(x, g))


@pytest.mark.parametrize("name,params", IMAGE_POLICIES)
def test_image_policy_draws_per_sample_and_leaves_global_rng_alone(name, params):
    policy = create_augmentation_policy(name, **params)
    x = _images(n=1).repeat(16, 1, 1, 1)  # 16 copies of one image
    state = torch.get_rng_state()
    torch.manual_seed(123)
    a = policy(x, _gen(5))
    torch.manual_seed(999)  # the global seed must not matter
    b = policy(x, _gen(5))
    assert torch.equal(a, b)
    distinct = {tuple(v.flatten().tolist()) for v in a.round(decimals=5)}
    assert len(distinct) >= 2  # copies got different draws
    torch.set_rng_state(state)


def test_seeded_global_rng_restores_state():
    before = torch.get_rng_state()
    with seeded_global_rng(_gen(0)):
        torch.rand(10)
    assert torch.equal(torch.get_rng_state(), before)


def test_crop_flip_trivial_settings_are_identity_and_flip():
    x = _images(n=4)
    same = create_augmentation_policy("crop_flip", scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(same(x, _gen(0)), x, atol=1e-4, rtol=0)
    flip = create_augmentation_policy("crop_flip", scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(flip(x, _gen(0)), x.flip(-1), atol=1e-4, rtol=0)


def test_crop_flip_rejects_vectors_and_bad_params():
    policy = create_augmentation_policy("crop_flip")
    with pytest.raises(ValueError, match="needs image batches .B, C, H, W., got \\(4, 10\\)"):
        policy(torch.rand(4, 10), _gen(0))
    with pytest.raises(ValueError, match="scale=.*got scale=\\(0.5, 2.0\\)"):
        create_augmentation_policy("crop_flip", scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="flip_p"):
        create_augmentation_policy("crop_flip", flip_p=1.5)
    with pytest.raises(ValueError, match="padding"):
        create_augmentation_policy("crop_flip", padding=-1)


def test_simsiam_strength_follows_the_paper():
    default = create_augmentation_policy("simsiam")
    strong = create_augmentation_policy("simsiam", strength="strong")
    assert default.brightness == pytest.approx(0.4) and default.sigma == pytest.approx((0.1, 2.0))
    assert strong.brightness == pytest.approx(0.8) and strong.sigma == pytest.approx((0.2, 3.0))
    half = create_augmentation_policy("simsiam", strength=0.5)
    assert half.saturation == pytest.approx(0.6)
    for bad in ["extreme", -1.0]:
        with pytest.raises(ValueError, match="strength"):
            create_augmentation_policy("simsiam", strength=bad)


def test_simsiam_grayscale_fraction_and_single_channel():
    policy = create_augmentation_policy("simsiam")
    x = _images(n=400, channels=3, size=12)
    out = policy(x, _gen(0))
    gray = ((out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) < 1e-6) & (
        (out[:, 0] - out[:, 2]).abs().amax(dim=(1, 2)) < 1e-6)
    assert 0.12 < gray.float().mean().item() < 0.3  # RandomGrayscale(p=0.2)
    mono = policy(_images(n=8, channels=1, size=12), _gen(0))
    assert mono.shape == (8, 1, 12, 12)
    assert 0.0 <= mono.min().item() and mono.max().item() <= 1.0


def test_multiscale_views_and_contract_call():
    policy = create_augmentation_policy("multiscale")
    x = _images(n=4, size=28)
    assert policy.scales == pytest.approx((1.0, 2 ** -0.5, 0.5))
    assert [tuple(policy.view(x, i).shape[2:]) for i in range(3)] == [(28, 28), (20, 20), (14, 14)]
    torch.testing.assert_close(policy.view(x, 2),
                               F.interpolate(x, size=(14, 14), mode="bilinear", antialias=True))
    assert torch.equal(policy.view(x, 0), x)
    back = create_augmentation_policy("multiscale", resize_back=True)
    assert back.view(x, 2).shape == x.shape
    assert back.view_shape((1, 28, 28), 1) == (1, 28, 28)
    out = policy(x, _gen(0))
    assert out.shape == x.shape
    only_one = create_augmentation_policy("multiscale", scales=(1.0,))
    assert torch.equal(only_one(x, _gen(0)), x)
    with pytest.raises(ValueError, match="scales"):
        create_augmentation_policy("multiscale", scales=(1.0, -0.5))


@pytest.mark.parametrize("name,params", IMAGE_POLICIES)
def test_image_policy_pickles(name, params):
    policy = create_augmentation_policy(name, **params)
    x = _images(n=4)
    expected = policy(x, _gen(3))
    restored = pickle.loads(pickle.dumps(policy))
    assert torch.equal(restored(x, _gen(3)), expected)


def test_gaussian_noise_reproducible_and_per_sample():
    policy = create_augmentation_policy("gaussian_noise", std=0.5)
    x = torch.zeros(6, 5)
    a = policy(x, _gen(0))
    assert torch.equal(a, policy(x, _gen(0)))
    assert a.std().item() == pytest.approx(0.5, abs=0.2)
    assert not torch.equal(a[0], a[1])


def test_aggregations_values():
    views = torch.tensor([[[1.0, 4.0]], [[3.0, 2.0]], [[2.0, 9.0]]])  # (S=3, N=1, D=2)
    assert create_aggregation("mean")(views)[0].tolist() == pytest.approx([2.0, 5.0])
    assert create_aggregation("median")(views)[0].tolist() == pytest.approx([2.0, 4.0])
    assert create_aggregation("max")(views)[0].tolist() == pytest.approx([3.0, 9.0])
    assert create_aggregation("gem", p=1)(views)[0].tolist() == pytest.approx([2.0, 5.0])
    expected = ((1 + 27 + 8) / 3) ** (1 / 3)
    assert create_aggregation("gem")(views)[0, 0].item() == pytest.approx(expected)
    assert create_aggregation("gem", p=50)(views)[0, 1].item() == pytest.approx(9.0, rel=0.05)
    with pytest.raises(ValueError, match="p > 0, got p=0"):
        create_aggregation("gem", p=0)(views)
    with pytest.warns(UserWarning, match=r"aggregation='gem' expects non-negative features.*33%"):
        create_aggregation("gem")(torch.tensor([[[1.0, -4.0]], [[3.0, 2.0]], [[2.0, -9.0]]]))
