"""Pretrained backbones get images prepared as their pretraining did (DESIGN.md contract)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from repens_sklearn import (
    EnSiamPretrainer,
    FineTuneClassifier,
    MeanTTAEmbedder,
    TransferabilitySelector,
)
from repens_sklearn._preprocess import ImagePreprocessor, adapt_channels

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ContractNet(nn.Module):
    """A third-party backbone written only against the contract: normalized RGB at 32 px."""

    pretrained_cfg = {
        "input_size": (3, 32, 32),
        "mean": MEAN,
        "std": STD,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
    }

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.embedding_dim = 8
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[1:]))
        if tuple(x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"needs (3, 32, 32), got {tuple(x.shape[1:])}")
        return self.conv(x).relu().mean(dim=(2, 3))


def by_hand(images_uint8, size=32):
    """What a user would write: [0, 1], grey -> RGB, resize, normalize."""
    x = torch.from_numpy(images_uint8).float().div(255)[:, None].repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x.clamp(0, 1) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x


@pytest.fixture(scope="module")
def grey28():
    return np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)


def test_raw_grey_uint8_equals_hand_preprocessing(grey28):
    net = ContractNet().eval()
    with torch.no_grad():
        expected = net(by_hand(grey28)).numpy()
    emb = MeanTTAEmbedder(net, n_augmentations=0, device="cpu").fit(grey28)
    np.testing.assert_allclose(emb.transform(grey28), expected, rtol=1e-5, atol=1e-6)
    assert emb.preprocessor_.input_size == (3, 32, 32)
    assert emb.input_shape_ == (1, 28, 28)  # what the user's data looks like


def test_preprocess_false_feeds_pixels_as_they_are(grey28):
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(1, 28, 28\)"):
        MeanTTAEmbedder(ContractNet(), n_augmentations=0, preprocess=False, device="cpu").fit(
            grey28
        )


def test_img_size_overrides_the_resolution(grey28):
    class AnySize(ContractNet):
        def forward(self, x):
            self.seen.append(tuple(x.shape[1:]))
            return self.conv(x).relu().mean(dim=(2, 3))

    emb = MeanTTAEmbedder(AnySize(), n_augmentations=0, img_size=20, device="cpu").fit(grey28)
    assert emb.preprocessor_.input_size == (3, 20, 20)
    with torch.no_grad():
        expected = emb.backbone_(by_hand(grey28, size=20)).numpy()
    np.testing.assert_allclose(emb.transform(grey28), expected, rtol=1e-5, atol=1e-6)
    # the exported backbone carries the resolution it was used at
    assert emb.as_backbone().pretrained_cfg["input_size"] == (3, 20, 20)


def test_policy_sees_unit_range_images_at_the_backbone_resolution(grey28):
    seen = []

    def policy(x, generator):
        seen.append((tuple(x.shape[1:]), float(x.min()), float(x.max())))
        return x

    emb = MeanTTAEmbedder(ContractNet(), policy=policy, n_augmentations=2, device="cpu")
    plain = MeanTTAEmbedder(ContractNet(), n_augmentations=0, device="cpu")
    np.testing.assert_allclose(
        emb.fit_transform(grey28), plain.fit_transform(grey28), rtol=1e-5, atol=1e-6
    )
    assert all(shape == (3, 32, 32) and lo >= 0 and hi <= 1 for shape, lo, hi in seen)


def test_crop_pct_resizes_the_short_edge_then_centre_crops():
    prep = ImagePreprocessor((3, 28, 28), MEAN, STD, "bilinear", crop_pct=0.875)
    assert prep.scale_size == (32, 32)
    x = torch.rand(2, 3, 40, 80)
    resized = F.interpolate(x, size=(32, 64), mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(prep.prepare(x), resized[..., 2:30, 18:46].clamp(0, 1), atol=1e-6)


def test_channels_grey_repeated_rgba_dropped_and_unsupported_named():
    grey = torch.rand(1, 1, 4, 4)
    assert torch.equal(adapt_channels(grey, 3), grey.repeat(1, 3, 1, 1))
    rgba = torch.rand(1, 4, 4, 4)
    assert torch.equal(adapt_channels(rgba, 3), rgba[:, :3])
    with pytest.raises(ValueError, match="2 channels cannot be fed to a backbone that takes 3"):
        adapt_channels(torch.rand(1, 2, 4, 4), 3)


def test_image_files_are_decoded_at_the_backbone_resolution(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i, size in enumerate([(40, 30), (64, 64), (20, 50)]):  # different sizes, grey and RGB
        arr = rng.integers(0, 256, (size[1], size[0]) + (() if i % 2 else (3,)), dtype=np.uint8)
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(arr).save(paths[-1])
    net = ContractNet()
    net.pretrained_cfg = dict(net.pretrained_cfg, crop_pct=0.875)
    emb = MeanTTAEmbedder(net, n_augmentations=0, device="cpu").fit(paths)
    assert emb.input_shape_ == (3, 32, 32)
    hand = []
    for path in paths:  # timm's eval transform by hand: short edge to 36, centre crop 32
        image = Image.open(path).convert("RGB")
        w, h = image.size
        new = (36, int(36 * h / w)) if w <= h else (int(36 * w / h), 36)
        image = image.resize(new, Image.Resampling.BILINEAR)
        left, top = (new[0] - 32) // 2, (new[1] - 32) // 2
        hand.append(np.asarray(image.crop((left, top, left + 32, top + 32))))
    x = torch.from_numpy(np.stack(hand)).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = emb.backbone_(x).numpy()
    np.testing.assert_allclose(emb.transform(paths), expected, rtol=1e-5, atol=1e-5)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    emb = MeanTTAEmbedder(nn.Flatten(), n_augmentations=0, device="cpu", input_shape=(1, 8, 8)).fit(
        [str(tmp_path / "deep.png")]
    )
    out = emb.transform([str(tmp_path / "deep.png")]).ravel()
    np.testing.assert_allclose(out, ramp.ravel() / 65535, atol=1 / 255)
    assert 0.2 < np.median(out) < 0.8  # the old convert("L") gave only 0 and 1


def test_finetune_and_ensiam_feed_the_backbone_its_input_size(grey28):
    y = np.arange(12) % 2
    for estimator in (
        FineTuneClassifier(ContractNet(), max_steps=2, batch_size=4, device="cpu", random_state=0),
        EnSiamPretrainer(
            ContractNet(),
            policy="crop_flip",
            max_epochs=1,
            batch_size=4,
            projector_dim=8,
            predictor_hidden_dim=4,
            device="cpu",
            random_state=0,
        ),
    ):
        estimator.fit(grey28, y)
        backbone = estimator.as_backbone()
        assert backbone.pretrained_cfg["input_size"] == (3, 32, 32)
        assert (
            estimator.transform(grey28).shape == (12, 8)
            if hasattr(estimator, "transform")
            else estimator.predict(grey28).shape == (12,)
        )


def test_knn_selector_ranks_a_contract_backbone_on_raw_grey_images(grey28):
    y = np.arange(12) % 3
    prepared = by_hand(grey28)
    hand = MeanTTAEmbedder(ContractNet(), n_augmentations=0, preprocess=False, device="cpu")
    raw = MeanTTAEmbedder(ContractNet(), n_augmentations=0, device="cpu")
    selector = TransferabilitySelector([("raw", raw)]).fit(grey28, y)
    by_hand_sel = TransferabilitySelector([("hand", hand)]).fit(prepared.numpy(), y)
    assert selector.scores_["raw"] == pytest.approx(by_hand_sel.scores_["hand"])


def test_library_preprocessing_agrees_with_timm_for_a_timm_model():
    timm = pytest.importorskip("timm")
    from sklearn.datasets import load_sample_images

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    photos = [Image.fromarray(image).resize((320, 240)) for image in load_sample_images().images]
    with torch.no_grad():
        by_timm = model(torch.stack([transform(photo) for photo in photos])).numpy()
    cross = (by_timm[0] @ by_timm[1]) / np.linalg.norm(by_timm[0]) / np.linalg.norm(by_timm[1])
    assert cross < 0.9  # two different photos: the test can tell preprocessings apart
    array = np.stack([np.asarray(photo) for photo in photos])  # (N, H, W, 3) uint8
    for X in (array, photos):  # image arrays (resized on the device) and PIL images (in PIL)
        ours = MeanTTAEmbedder(model, n_augmentations=0, device="cpu").fit_transform(X)
        cosine = (
            (ours * by_timm).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(by_timm, axis=1)
        )
        assert cosine.min() > 0.99, cosine


@pytest.mark.slow  # the CLI end to end
def test_cli_feeds_a_contract_plugin_raw_grey_files_as_by_hand(tmp_path, fresh_plugin_manager):
    import types

    from repens_sklearn import hookimpl
    from repens_sklearn.cli import main

    plugin = types.ModuleType("contract_plugin")
    plugin.repens_backbones = hookimpl(lambda: {"contract_net": ContractNet})
    fresh_plugin_manager.get_plugin_manager().register(plugin, name="contract")
    images = np.random.default_rng(2).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    out = tmp_path / "emb.npy"
    assert (
        main(
            [
                "embed",
                str(tmp_path),
                "--backbone",
                "contract_net",
                "-o",
                str(out),
                "--num-workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    hand = np.stack(
        [
            np.asarray(
                Image.fromarray(im).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
            )
            for im in images
        ]
    )
    x = torch.from_numpy(hand).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = ContractNet().eval()(x).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)


def test_grey_is_repeated_after_resizing_with_the_same_result():
    prep = ImagePreprocessor((3, 20, 20), MEAN, STD, "bicubic", crop_pct=0.9)
    grey = torch.rand(3, 1, 28, 28)
    np.testing.assert_allclose(prep.prepare(grey), prep.prepare(grey.repeat(1, 3, 1, 1)), atol=1e-6)
    rgba = torch.rand(2, 4, 28, 28)
    np.testing.assert_allclose(prep.prepare(rgba), prep.prepare(rgba[:, :3]), atol=1e-6)
