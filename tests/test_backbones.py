"""Built-in backbones, input adaptation and local weight files."""

import pytest
import torch
from safetensors.torch import save_file

from repens_sklearn import create_backbone
from repens_sklearn.backbones import build_backbone, check_backbone_accepts


@pytest.mark.parametrize(
    "name,shape,dim",
    [
        ("mlp", (2, 7), 64),
        ("convnet_small", (2, 1, 8, 8), 128),
        ("convnet_small", (2, 3, 28, 28), 128),
        ("resnet18", (2, 3, 32, 32), 512),
        ("resnet18_cifar", (2, 3, 16, 16), 512),
        ("resnet34", (1, 3, 32, 32), 512),
        ("resnet50", (1, 3, 32, 32), 2048),
    ],
)
def test_backbone_maps_batch_to_embeddings(name, shape, dim):
    params = {"in_features": shape[1]} if name == "mlp" else {"in_chans": shape[1]}
    net = create_backbone(name, **params).eval()
    with torch.no_grad():
        out = net(torch.rand(shape))
    assert out.shape == (shape[0], dim)
    assert net.embedding_dim == dim


def test_resnet18_cifar_has_cifar_stem():
    net = create_backbone("resnet18_cifar", in_chans=1)
    conv1 = net.model.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.in_channels == 1
    assert isinstance(net.model.maxpool, torch.nn.Identity)
    # stride-1 stem keeps 32x32 resolution into layer1 (a 7x7/2 stem + pool would give 8x8)
    feats = {}
    net.model.layer1.register_forward_hook(lambda m, i, o: feats.update(l1=o.shape))
    net(torch.rand(1, 1, 32, 32))
    assert feats["l1"][-2:] == (32, 32)


def test_build_backbone_infers_input_size_from_data():
    vec = build_backbone("mlp", None, (13,))
    assert vec.in_features == 13
    img = build_backbone("convnet_small", {"width": 8}, (3, 8, 8))
    assert img.in_chans == 3 and img.embedding_dim == 32
    flat = build_backbone("mlp", None, (1, 8, 8))
    assert flat.in_features == 64


def test_build_backbone_copies_a_user_module():
    user = torch.nn.Linear(4, 2)
    built = build_backbone(user, None, (4,))
    assert built is not user
    with torch.no_grad():
        built.weight.zero_()
    assert user.weight.abs().sum() > 0


def test_build_backbone_uses_as_backbone_of_fitted_estimators():
    class Fitted:
        def as_backbone(self):
            return torch.nn.Linear(3, 3)

    assert isinstance(build_backbone(Fitted(), None, (3,)), torch.nn.Linear)


def test_build_backbone_errors_name_the_parameter():
    with pytest.raises(TypeError, match="backbone must be a registered backbone name"):
        build_backbone(42, None, (3,))
    with pytest.raises(ValueError, match=r"backbone_params=\{'width': 3\} can only be used"):
        build_backbone(torch.nn.Linear(3, 3), {"width": 3}, (3,))
    with pytest.raises(ValueError, match=r"backbone='mlp' does not accept backbone_params"):
        build_backbone("mlp", {"no_such_param": 1}, (3,))


def test_check_backbone_accepts_reports_shape_problems():
    net = create_backbone("mlp", in_features=5)
    assert check_backbone_accepts(net, torch.rand(1, 5)) == 64
    with pytest.raises(ValueError, match=r"backbone 'mlp' cannot take inputs of shape \(7,\)"):
        check_backbone_accepts(net, torch.rand(1, 7), backbone_name="mlp")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_roundtrip_from_local_file(tmp_path, suffix):
    torch.manual_seed(0)
    source = create_backbone("convnet_small", in_chans=1, width=4)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_backbone("convnet_small", in_chans=1, width=4, weights=str(path)).eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(loaded(x), source.eval()(x))


def test_torchvision_checkpoint_with_classifier_head_loads(tmp_path):
    import torchvision

    full = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    net = create_backbone("resnet18", weights=str(path)).eval()
    x = torch.rand(1, 3, 32, 32)
    full.fc = torch.nn.Identity()
    assert torch.allclose(net(x), full.eval()(x), atol=1e-6)


def test_saved_resnet_backbone_loads_back(tmp_path):
    """The backbone's own state_dict (keys under ``model.``) is a valid weights file too."""
    torch.manual_seed(0)
    source = create_backbone("resnet18_cifar", in_chans=1).eval()
    path = tmp_path / "pretrained.pt"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("resnet18_cifar", in_chans=1, weights=str(path)).eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(loaded(x), source(x))


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_backbone("mlp", in_features=3, weights=str(missing))


def test_mismatching_weights_name_file_and_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(create_backbone("mlp", in_features=3).state_dict(), path)
    with pytest.raises(ValueError, match=r"other\.pt.*shape mismatches \['net\.0\.weight"):
        create_backbone("mlp", in_features=5, weights=str(path))
    torch.save({"foo.weight": torch.zeros(1)}, path)
    with pytest.raises(
        ValueError, match=r"missing keys \['net\.0\.weight'.*unexpected keys \['foo"
    ):
        create_backbone("mlp", in_features=3, weights=str(path))


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"garbage\.safetensors.*could not be read"):
        create_backbone("mlp", in_features=3, weights=str(path))


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    """An empty torch hub cache under a temporary TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def _fake_cached_resnet18(checkpoints):
    import torchvision

    torch.manual_seed(0)
    full = torchvision.models.resnet18(weights=None).eval()
    torch.save(
        full.state_dict(), checkpoints / "resnet18-f37072fd.pth"
    )  # ResNet18_Weights.IMAGENET1K_V1
    return full


@pytest.mark.parametrize("name", ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"])
def test_torchvision_weight_names_load_from_the_torch_cache(torch_cache, name):
    full = _fake_cached_resnet18(torch_cache)
    net = create_backbone("resnet18", weights=name).eval()
    x = torch.rand(1, 3, 64, 64)
    full.fc = torch.nn.Identity()
    assert torch.equal(net(x), full(x))
    assert net.pretrained_cfg == {
        "architecture": "resnet18",
        "tag": "IMAGENET1K_V1",
        "input_size": (3, 224, 224),
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "num_classes": 1000,
    }


def test_torchvision_weights_enum_member_is_accepted(torch_cache):
    from torchvision.models import ResNet18_Weights

    _fake_cached_resnet18(torch_cache)
    assert (
        create_backbone("resnet18", weights=ResNet18_Weights.DEFAULT).pretrained_cfg["tag"]
        == "IMAGENET1K_V1"
    )


def test_pretrained_cfg_follows_the_weights_transforms():
    from torchvision.models import ResNet50_Weights

    from repens_sklearn.backbones import torchvision_pretrained_cfg

    cfg = torchvision_pretrained_cfg(
        "resnet50", ResNet50_Weights.DEFAULT
    )  # V2: resize 232, crop 224
    assert cfg["tag"] == "IMAGENET1K_V2" and cfg["input_size"] == (3, 224, 224)
    assert cfg["crop_pct"] == pytest.approx(224 / 232) and cfg["interpolation"] == "bilinear"


def test_torchvision_weights_adapt_to_grey_inputs(torch_cache):
    full = _fake_cached_resnet18(torch_cache)
    net = create_backbone("resnet18", in_chans=1, weights="DEFAULT").eval()
    assert torch.allclose(net.model.conv1.weight, full.conv1.weight.sum(1, keepdim=True))
    assert net.pretrained_cfg["input_size"] == (1, 224, 224)
    assert net.pretrained_cfg["mean"] == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))
    assert net(torch.rand(1, 1, 32, 32)).shape == (1, 512)


def test_random_and_file_resnets_carry_no_pretrained_cfg(tmp_path):
    net = create_backbone("resnet18")
    assert net.pretrained_cfg is None
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    assert create_backbone("resnet18", weights=str(tmp_path / "mine.pt")).pretrained_cfg is None


def test_torchvision_weights_missing_from_the_cache_say_where(torch_cache):
    expected = str(torch_cache / "resnet34-b627a593.pth")
    with pytest.raises(FileNotFoundError) as info:
        create_backbone("resnet34", weights="DEFAULT")
    message = str(info.value)
    assert "resnet34" in message and "ResNet34_Weights.IMAGENET1K_V1" in message
    assert expected in message and "nothing is downloaded" in message
    assert not list(torch_cache.iterdir())


def test_unknown_weights_name_lists_the_torchvision_names(torch_cache):
    with pytest.raises(
        FileNotFoundError,
        match=r"weights='IMAGENET1K_V9' for resnet18 is not an existing "
        r"file or one of torchvision's resnet18 weights \['IMAGENET1K_V1', 'DEFAULT'\]",
    ):
        create_backbone("resnet18", weights="IMAGENET1K_V9")
    with pytest.raises(TypeError, match="weights for resnet18 must be"):
        create_backbone("resnet18", weights=3)
    with pytest.raises(ValueError, match="do not fit the 3x3 stem of resnet18_cifar"):
        create_backbone("resnet18_cifar", weights="DEFAULT")
