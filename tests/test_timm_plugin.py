"""The separately installable repens-timm plugin, registered by hand (nothing installed)."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "repens-timm"))

import repens_timm  # noqa: E402

from repens_sklearn import create_backbone, get_plugin_manager, list_backbones  # noqa: E402


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


def test_timm_local_weights_and_errors(timm_registered, tmp_path):
    import timm
    source = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # a classifier checkpoint: its head is dropped
    net = create_backbone("timm/resnet18", weights=str(path)).eval()
    x = torch.rand(1, 3, 32, 32)
    source.reset_classifier(0)
    assert torch.allclose(net(x), source.eval()(x), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("timm/resnet18", weights=str(tmp_path / "missing.pth"))
