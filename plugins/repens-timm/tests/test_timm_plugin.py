"""The separately installable repens-timm plugin, registered by hand (entry points off)."""

import pytest
import torch

import repens_timm
from repens_sklearn import create_backbone, get_plugin_manager, list_backbones

pytest.importorskip("timm")  # the plugin imports timm only when building a model


@pytest.fixture
def fresh_plugin_manager(monkeypatch):
    """A plugin manager without entry points (the test registers the plugin), then forgotten."""
    from repens_sklearn import _plugins

    monkeypatch.setenv("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("REPENS_SKLEARN_PRECISION", "float32")  # float32 expected values
    _plugins.reset_plugin_manager()
    yield _plugins
    _plugins.reset_plugin_manager()


@pytest.fixture
def timm_registered(fresh_plugin_manager):
    get_plugin_manager().register(repens_timm, name="timm")
    yield


def test_timm_models_become_backbones(timm_registered):
    names = list_backbones("timm/resnet*")
    assert "timm/resnet18" in names and len(names) > 10
    net = create_backbone("timm/resnet18", in_chans=1).eval()
    assert net.embedding_dim == 512
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 512)


def test_embedding_dim_is_the_output_width_when_a_layer_follows_pooling(timm_registered):
    net = create_backbone("timm/mobilenetv3_small_050").eval()  # conv_head: 288 -> 1024
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, net.embedding_dim) == (2, 1024)


RESNET18_CFG = {  # timm's default pretrained tag for resnet18: resnet18.a1_in1k
    "input_size": (3, 224, 224),
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "interpolation": "bicubic",
    "crop_pct": 0.95,
}


def _preprocessing(cfg):
    return {key: cfg[key] for key in RESNET18_CFG}


def test_timm_local_weights_and_errors(timm_registered, tmp_path):
    import timm

    source = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # a classifier checkpoint: its head is dropped
    net = create_backbone("timm/resnet18", weights=str(path)).eval()
    x = torch.rand(1, 3, 32, 32)
    source.reset_classifier(0)
    assert torch.allclose(net(x), source.eval()(x), atol=1e-5)
    assert _preprocessing(net.pretrained_cfg) == RESNET18_CFG
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("timm/resnet18", weights=str(tmp_path / "missing.pth"))


def test_random_timm_model_has_no_pretrained_cfg(timm_registered):
    assert create_backbone("timm/resnet18").pretrained_cfg == {}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """No network: Hugging Face hub in offline mode, empty hub and torch caches."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "hub"
    cache.mkdir()
    return cache


def _saved_random_resnet18(path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False).eval()
    if path.suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    return source


def _assert_same_backbone_weights(net, source):
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    got = net.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_pretrained_loads_a_cached_hub_checkpoint_without_network(timm_registered, offline_hub):
    snapshot = offline_hub / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (offline_hub / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (offline_hub / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0" * 40)
    source = _saved_random_resnet18(snapshot / "model.safetensors")
    net = create_backbone("timm/resnet18", pretrained=True, cache_dir=str(offline_hub))
    _assert_same_backbone_weights(net, source)
    assert _preprocessing(net.pretrained_cfg) == RESNET18_CFG


def test_pretrained_file_through_timm_overlay_adapts_channels(timm_registered, tmp_path):
    source = _saved_random_resnet18(tmp_path / "r18.safetensors")
    overlay = {"file": str(tmp_path / "r18.safetensors")}
    net = create_backbone(
        "timm/resnet18", in_chans=1, pretrained=True, pretrained_cfg_overlay=overlay
    )
    assert torch.allclose(net.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert net.pretrained_cfg["input_size"] == (1, 224, 224)
    assert net.pretrained_cfg["mean"] == pytest.approx((sum(RESNET18_CFG["mean"]) / 3,))


def test_pretrained_without_cache_offline_is_one_clear_error(timm_registered, offline_hub):
    import time

    start = time.perf_counter()
    with pytest.raises(
        FileNotFoundError,
        match=r"timm's pretrained weights for 'resnet18' are not in the "
        r"local cache.*Download them once.*weights=<a local checkpoint file>",
    ):
        create_backbone("timm/resnet18", pretrained=True, cache_dir=str(offline_hub))
    assert time.perf_counter() - start < 10
    assert not any(offline_hub.rglob("*.safetensors"))


def test_weights_file_of_another_model_names_the_missing_keys(timm_registered, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(1)}, path)
    with pytest.raises(
        ValueError, match=r"other\.pth' do not match timm model 'resnet18': missing keys \['conv1"
    ):
        create_backbone("timm/resnet18", weights=str(path))


def test_pretrained_loads_from_the_torch_hub_cache_too(timm_registered, offline_hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(offline_hub))
    checkpoints = offline_hub.parent / "torch" / "hub" / "checkpoints"  # TORCH_HOME of offline_hub
    checkpoints.mkdir(parents=True)
    source = _saved_random_resnet18(
        checkpoints / "resnet18_a1_0-d63eafa0.pth"
    )  # timm's url for resnet18
    net = create_backbone("timm/resnet18", pretrained=True)
    _assert_same_backbone_weights(net, source)
