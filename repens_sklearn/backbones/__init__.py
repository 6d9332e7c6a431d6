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
from ._weights import (
    adapt_input_conv,
    load_state_dict_file,
    load_weights,
    pretrained_cfg_for_chans,
    torchvision_pretrained_cfg,
)


@hookimpl
def repens_backbones():
    return dict(BUILTIN_BACKBONES)


__all__ = [
    "MLPBackbone",
    "SmallConvNet",
    "TorchvisionEmbedding",
    "adapt_input_conv",
    "build_backbone",
    "check_backbone_accepts",
    "convnet_small",
    "load_state_dict_file",
    "load_weights",
    "mlp",
    "pretrained_cfg_for_chans",
    "resnet18",
    "resnet18_cifar",
    "resnet34",
    "resnet50",
    "torchvision_pretrained_cfg",
]
