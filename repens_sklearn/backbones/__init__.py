"""Built-in backbones, registered through the ``repens_backbones`` hook."""

from ..hookspecs import hookimpl
from ._builtin import (
    BUILTIN_BACKBONES,
    MLPBackbone,
    SmallConvNet,
    TorchvisionEmbedding,
    convnet_small,
    mlp,
    resnet18,
    resnet18_cifar,
    resnet34,
    resnet50,
)
from ._resolve import build_backbone, check_backbone_accepts
from ._weights import load_state_dict_file, load_weights


@hookimpl
def repens_backbones():
    return dict(BUILTIN_BACKBONES)


__all__ = [
    "MLPBackbone",
    "SmallConvNet",
    "TorchvisionEmbedding",
    "build_backbone",
    "check_backbone_accepts",
    "convnet_small",
    "load_state_dict_file",
    "load_weights",
    "mlp",
    "resnet18",
    "resnet18_cifar",
    "resnet34",
    "resnet50",
]
