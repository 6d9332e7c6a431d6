"""Built-in backbone factories: small nets for tests and the ResNet family."""

from __future__ import annotations

import os

from torch import nn

from ._weights import (
    adapt_input_conv,
    load_torchvision_state,
    load_weights,
    pretrained_cfg_for_chans,
    torchvision_cache_path,
    torchvision_pretrained_cfg,
    torchvision_weight_names,
    torchvision_weights,
)


class MLPBackbone(nn.Module):
    """Multi-layer perceptron for vectors: ``(B, in_features) -> (B, embedding_dim)``."""

    def __init__(self, in_features, hidden_dim=128, embedding_dim=64, depth=2):
        super().__init__()
        if in_features is None or int(in_features) < 1:
            raise ValueError(f"mlp backbone needs in_features >= 1, got {in_features!r}")
        if depth < 1:
            raise ValueError(f"mlp backbone needs depth >= 1, got {depth!r}")
        widths = [int(in_features)] + [int(hidden_dim)] * (depth - 1)
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], int(embedding_dim)))
        self.net = nn.Sequential(*layers)
        self.in_features = int(in_features)
        self.embedding_dim = int(embedding_dim)

    def forward(self, x):
        return self.net(x.flatten(1))


class SmallConvNet(nn.Module):
    """Three conv-BN-ReLU stages and global average pooling, for 8x8 to 32x32 images."""

    def __init__(self, in_chans=1, width=32, embedding_dim=None):
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        layers, c_in = [], int(in_chans)
        for i, c_out in enumerate(widths):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if embedding_dim is not None:
            layers.append(nn.Linear(c_in, int(embedding_dim)))
            c_in = int(embedding_dim)
        self.features = nn.Sequential(*layers)
        self.in_chans = int(in_chans)
        self.embedding_dim = c_in

    def forward(self, x):
        return self.features(x)


class TorchvisionEmbedding(nn.Module):
    """A torchvision classification model with its head replaced by the identity.

    ``pretrained_cfg`` (timm's keys) is set when the weights are torchvision's
    named ImageNet weights, None otherwise.
    """

    def __init__(self, model, embedding_dim, in_chans, pretrained_cfg=None):
        super().__init__()
        self.model = model
        self.embedding_dim = int(embedding_dim)
        self.in_chans = int(in_chans)
        self.pretrained_cfg = pretrained_cfg

    def forward(self, x):
        return self.model(x)


def _resnet(arch, in_chans=3, cifar_stem=False):
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:  # ensiam.md sec. 4.1: 3x3 stride-1 first conv, no max-pool
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return TorchvisionEmbedding(model, dim, in_chans)


def _with_weights(module, weights, ignore_prefixes=()):
    if weights is not None:
        load_weights(module, weights, ignore_prefixes=ignore_prefixes)
    return module


def mlp(in_features=None, hidden_dim=128, embedding_dim=64, depth=2, weights=None):
    """MLP for 2-D vector data; ``in_features`` is inferred by the estimators."""
    return _with_weights(MLPBackbone(in_features, hidden_dim, embedding_dim, depth), weights)


def convnet_small(in_chans=1, width=32, embedding_dim=None, weights=None):
    """Small CNN for 8x8 to 32x32 grayscale or colour images (``4 * width`` dims)."""
    return _with_weights(SmallConvNet(in_chans, width, embedding_dim), weights)


def _resnet_factory(arch, cifar_stem=False):
    def factory(in_chans=3, weights=None):
        module = _resnet(arch, in_chans=in_chans, cifar_stem=cifar_stem)
        named = _named_weights(arch, weights, cifar_stem)
        if named is not None:
            _load_torchvision_weights(module, arch, named, in_chans)
        elif weights is not None:
            # torchvision checkpoints store keys under the bare model and carry an fc head;
            # this backbone's own state_dict (and as_backbone()'s) has them under "model.".
            load_weights(module.model, weights, ignore_prefixes=("fc.",), strip_prefix="model.")
        return module

    factory.__name__ = arch + ("_cifar" if cifar_stem else "")
    factory.__doc__ = _resnet_doc(arch, cifar_stem)
    return factory


def _resnet_doc(arch, cifar_stem):
    if cifar_stem:
        return (
            f"torchvision {arch} without its classifier head, 3x3 stride-1 stem without "
            "max-pool (ensiam.md sec. 4.1); ``weights``: a local file."
        )
    return (
        f"torchvision {arch} without its classifier head, ImageNet stem.\n\n"
        "``weights``: a local file, or torchvision's weights name (``'DEFAULT'``, "
        "``'IMAGENET1K_V1'``, ...) read from torch's hub cache - never downloaded - which "
        "also sets ``pretrained_cfg`` from those weights' evaluation transform. With "
        "``in_chans != 3`` the RGB stem kernels are adapted as timm does."
    )


def _named_weights(arch, weights, cifar_stem):
    """The torchvision weights enum member that ``weights`` names; None for a file or None."""
    if weights is None or (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)):
        return None
    named = torchvision_weights(arch, weights)
    if named is None:
        names = torchvision_weight_names(arch)
        expected = f"an existing file or one of torchvision's {arch} weights {names}"
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"weights for {arch} must be {expected}, got {weights!r}")
        raise FileNotFoundError(f"weights={os.fspath(weights)!r} for {arch} is not {expected}")
    if cifar_stem:
        raise ValueError(
            f"weights={weights!r}: torchvision's ImageNet weights do not fit the 3x3 stem "
            f"of {arch}_cifar; use backbone {arch!r} or a local weights file"
        )
    return named


def _load_torchvision_weights(module, arch, named, in_chans):
    state = load_torchvision_state(arch, named)
    state["conv1.weight"] = adapt_input_conv(state["conv1.weight"], in_chans)
    path = torchvision_cache_path(named)
    load_weights(module.model, path, ignore_prefixes=("fc.",), state=state)
    module.pretrained_cfg = pretrained_cfg_for_chans(
        torchvision_pretrained_cfg(arch, named), in_chans
    )


resnet18 = _resnet_factory("resnet18")
resnet34 = _resnet_factory("resnet34")
resnet50 = _resnet_factory("resnet50")
resnet18_cifar = _resnet_factory("resnet18", cifar_stem=True)

BUILTIN_BACKBONES = {
    "mlp": mlp,
    "convnet_small": convnet_small,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet18_cifar": resnet18_cifar,
}
