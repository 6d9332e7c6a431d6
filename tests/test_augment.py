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
from repens_sklearn.augment import content_seeds, derive_seeds, seeded_global_rng, uniform

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
        list_augmentation_policies()
    )
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
        (out[:, 0] - out[:, 2]).abs().amax(dim=(1, 2)) < 1e-6
    )
    assert 0.12 < gray.float().mean().item() < 0.3  # RandomGrayscale(p=0.2)
    mono = policy(_images(n=8, channels=1, size=12), _gen(0))
    assert mono.shape == (8, 1, 12, 12)
    assert 0.0 <= mono.min().item() and mono.max().item() <= 1.0


def test_multiscale_views_and_contract_call():
    policy = create_augmentation_policy("multiscale")
    x = _images(n=4, size=28)
    assert policy.scales == pytest.approx((1.0, 2**-0.5, 0.5))
    assert [tuple(policy.view(x, i).shape[2:]) for i in range(3)] == [(28, 28), (20, 20), (14, 14)]
    torch.testing.assert_close(
        policy.view(x, 2), F.interpolate(x, size=(14, 14), mode="bilinear", antialias=True)
    )
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


# ------------------------------------------------------------ per-sample seeds
SEEDED_POLICIES = IMAGE_POLICIES + [("identity", {})]


@pytest.mark.parametrize("name,params", SEEDED_POLICIES)
def test_seeded_rows_depend_on_their_own_seed_only(name, params):
    """Row i of policy.seeded(x, seeds) is the same alone, in another batch, in any order."""
    policy = create_augmentation_policy(name, **params)
    x = _images(n=12)
    seeds = derive_seeds(torch.arange(12), 0)
    out = policy.seeded(x, seeds)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(policy.seeded(x[3:4], seeds[3:4]), out[3:4], rtol=1e-5, atol=1e-6)
    order = torch.randperm(12, generator=_gen(0))
    torch.testing.assert_close(
        policy.seeded(x[order], seeds[order]), out[order], rtol=1e-5, atol=1e-6
    )
    if name != "identity":
        assert not torch.equal(policy.seeded(x, derive_seeds(torch.arange(12), 1)), out)


def test_gaussian_noise_seeded_rows():
    policy = create_augmentation_policy("gaussian_noise", std=0.5)
    x = torch.zeros(6, 5)
    seeds = derive_seeds(torch.arange(6), 0)
    out = policy.seeded(x, seeds)
    assert torch.equal(policy.seeded(x[2:3], seeds[2:3]), out[2:3])
    assert not torch.equal(out[0], out[1])


def test_content_seeds_are_per_row_and_exact(monkeypatch):
    x = _images(n=9, channels=3, size=16)
    keys = content_seeds(x, 5)
    assert keys.dtype == torch.int64 and keys.shape == (9,) and bool((keys >= 0).all())
    assert torch.equal(content_seeds(x[4:6], 5), keys[4:6])  # the same row, another batch
    assert torch.equal(content_seeds(x.flip(0), 5), keys.flip(0))
    assert len(set(keys.tolist())) == 9  # different rows, different keys
    assert not torch.equal(content_seeds(x, 6), keys)  # another seed
    # hashed in blocks of columns (more of them with more rows) and folded per span of
    # values: one row alone gives what it gives in a batch
    from repens_sklearn.augment import _seeds

    monkeypatch.setattr(_seeds, "_HASH_BLOCK", 100)
    monkeypatch.setattr(_seeds, "_HASH_SPAN", 300)
    small = content_seeds(x, 5)
    assert torch.equal(content_seeds(x[2:3], 5), small[2:3])
    assert torch.equal(content_seeds(x[:4], 5), small[:4])


def test_uniform_and_derive_seeds():
    seeds = derive_seeds(torch.arange(1000), 3)
    u = uniform(seeds, 4)
    assert u.shape == (1000, 4) and 0 <= u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.02 and abs(u.std().item() - 12**-0.5) < 0.01
    torch.testing.assert_close(uniform(seeds[7:8], 4), u[7:8])
    assert not torch.equal(derive_seeds(torch.arange(5), 0), derive_seeds(torch.arange(5), 1))


@pytest.mark.parametrize("size", [8, 28])
def test_crop_flip_boxes_are_crops_resized_as_torchvision(size):
    """The crop of a box, resized bilinearly to (H, W) (torchvision's resized crop), flipped."""
    from repens_sklearn.augment._image import _CROP_DRAWS, _crop_boxes

    policy = create_augmentation_policy("crop_flip", scale=(0.2, 0.9))
    x = _images(n=16, channels=3, size=size)
    seeds = derive_seeds(torch.arange(16), 0)
    out = policy.seeded(x, seeds)
    u = uniform(seeds, _CROP_DRAWS)
    boxes = _crop_boxes(u, size, size, (0.2, 0.9), (3 / 4, 4 / 3))
    top, left, h, w = (a.astype(int) for a in boxes)
    flips = u[:, -1].numpy() < 0.5
    assert 0 < flips.sum() < 16
    for i in range(16):
        crop = x[i : i + 1, :, top[i] : top[i] + h[i], left[i] : left[i] + w[i]]
        expected = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
        expected = expected.flip(-1) if flips[i] else expected
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-5)
    area = h * w / size**2
    assert area.min() >= 0.2 - 0.1 and area.max() <= 0.9 + 0.1  # rounding to whole pixels


# ------------------------------------------------------- crop area for small images
def test_crop_flip_auto_scale_follows_the_image_size():
    from repens_sklearn.augment import auto_crop_scale

    assert auto_crop_scale(8, 8) == pytest.approx((0.8, 1.0))
    assert auto_crop_scale(28, 40) == pytest.approx((0.8, 1.0))
    assert auto_crop_scale(224, 224) == pytest.approx((0.08, 1.0))
    assert auto_crop_scale(512, 300) == pytest.approx((0.08, 1.0))
    assert auto_crop_scale(96, 96)[0] == pytest.approx(0.39, abs=0.01)
    lows = [auto_crop_scale(s, s)[0] for s in (16, 32, 48, 64, 96, 128, 224)]
    assert lows == sorted(lows, reverse=True)
    policy = create_augmentation_policy("crop_flip")
    assert policy.scale == "auto" and policy.scale_for(8, 8) == pytest.approx((0.8, 1.0))
    paper = create_augmentation_policy("crop_flip_paper")
    assert paper.scale == (0.08, 1.0) and paper.scale_for(8, 8) == (0.08, 1.0)
    assert "crop_flip_paper" in list_augmentation_policies()


def test_crop_flip_default_keeps_most_of_a_small_image():
    from repens_sklearn.augment._image import _CROP_DRAWS, _crop_boxes

    seeds = derive_seeds(torch.arange(500), 0)
    u = uniform(seeds, _CROP_DRAWS)
    policy = create_augmentation_policy("crop_flip")
    _, _, h, w = _crop_boxes(u, 8, 8, policy.scale_for(8, 8), policy.ratio)
    assert (h * w / 64).min() >= 0.55  # at least 80% of the area, up to whole-pixel rounding
    _, _, h, w = _crop_boxes(u, 8, 8, (0.08, 1.0), policy.ratio)
    assert (h * w / 64).min() < 0.2
