"""Preprocessing for pretrained backbones, from the backbone's ``pretrained_cfg``.

A backbone may carry ``pretrained_cfg``, a dict with timm's keys ``input_size``
(C, H, W), ``mean``, ``std``, ``interpolation`` and ``crop_pct``. Images then
reach it as its pretraining prepared them, in two steps around the
augmentation policy (which works on [0, 1] images):

1. :meth:`ImagePreprocessor.prepare`: channels adapted (grey -> RGB by
   repetition, RGBA -> RGB), resized as timm's evaluation transform does
   (shortest edge to ``H / crop_pct``, then a centre crop to ``(H, W)``);
2. :meth:`ImagePreprocessor.standardize`: ``(x - mean) / std``.

Both are batched tensor operations on the batch's device. Image files take the
same resize and crop in PIL when decoded (:meth:`ImagePreprocessor.load_image`),
so they are read at the backbone's resolution, never at the first file's size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_TORCH_MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")


def data_config(module, *, preprocess=True, img_size=None, crop_pct=None):
    """The resolved data config of ``module``, or None when nothing is to be done.

    ``img_size`` (int or (H, W)) and ``crop_pct`` override the backbone's
    ``pretrained_cfg`` as timm's ``resolve_data_config`` arguments do.
    """
    cfg = getattr(module, "pretrained_cfg", None)
    if not preprocess or not cfg or "input_size" not in cfg:
        return None
    channels, height, width = (int(v) for v in cfg["input_size"])
    if img_size is not None:
        height, width = _pair(img_size)
    config = {
        "input_size": (channels, height, width),
        "mean": tuple(float(v) for v in cfg.get("mean", (0.0,) * channels)),
        "std": tuple(float(v) for v in cfg.get("std", (1.0,) * channels)),
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "crop_pct": float(crop_pct if crop_pct is not None else cfg.get("crop_pct", 1.0) or 1.0),
    }
    _check_config(config)
    return config


def _pair(img_size):
    size = tuple(int(v) for v in np.atleast_1d(img_size))
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"img_size must be a positive int or (H, W), got {img_size!r}")
    return size


def _check_config(config):
    channels = config["input_size"][0]
    for key in ("mean", "std"):
        if len(config[key]) not in (1, channels):
            raise ValueError(
                f"the backbone's pretrained_cfg has {key}={config[key]} for "
                f"{channels} input channels"
            )
    if min(config["std"]) <= 0:
        raise ValueError(f"the backbone's pretrained_cfg has std={config['std']}; it must be > 0")
    if not 0 < config["crop_pct"] <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {config['crop_pct']}")


class ImagePreprocessor(nn.Module):
    """Batched, on-device preprocessing of [0, 1] images for one pretrained backbone.

    Parameters
    ----------
    input_size : (C, H, W)
        What the backbone takes.
    mean, std : sequence of float
        Per-channel standardization ``(x - mean) / std``, in [0, 1] units.
    interpolation : str, default="bilinear"
        timm's name; ``"bicubic"``, ``"bilinear"`` or ``"nearest"`` (others: bilinear).
    crop_pct : float, default=1.0
        Centre-crop fraction of timm's evaluation transform.
    """

    def __init__(self, input_size, mean, std, interpolation="bilinear", crop_pct=1.0):
        super().__init__()
        self.input_size = tuple(int(v) for v in input_size)
        self.interpolation = interpolation
        self.crop_pct = float(crop_pct)
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def config(self):
        """The data config (timm's keys) this preprocessor applies."""
        return {
            "input_size": self.input_size,
            "mean": tuple(self.mean.flatten().tolist()),
            "std": tuple(self.std.flatten().tolist()),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @property
    def scale_size(self):
        """The size the shorter edge is resized to before the centre crop (timm's rule)."""
        _, height, width = self.input_size
        return math.floor(height / self.crop_pct), math.floor(width / self.crop_pct)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images ``(B, C, H, W)`` -> [0, 1] images at ``input_size``."""
        channels = self.input_size[0]
        if x.shape[1] > channels:  # fewer channels to resize: drop / merge them first
            x = adapt_channels(x, channels)
        if tuple(x.shape[-2:]) != self.input_size[1:]:
            x = center_crop(
                self._resize(x, self._resized_shape(*x.shape[-2:])), self.input_size[1:]
            )
        return adapt_channels(x, channels)  # grey repeated after resizing (a third the work)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in the batch's dtype, on its device."""
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def forward(self, x):
        return self.standardize(self.prepare(x))

    def _resized_shape(self, height, width):
        scale_h, scale_w = self.scale_size
        if scale_h != scale_w:  # a non-square target: resize to it exactly (timm)
            return scale_h, scale_w
        # shortest edge to the scale size, aspect ratio kept (torchvision's Resize(int))
        if height <= width:
            return scale_h, int(scale_h * width / height)
        return int(scale_h * height / width), scale_h

    def _resize(self, x, size):
        mode = _TORCH_MODES.get(self.interpolation, "bilinear")
        smooth = mode != "nearest"
        out = F.interpolate(
            x.float(),
            size=size,
            mode=mode,
            antialias=smooth,
            **({"align_corners": False} if smooth else {}),
        )
        return out.clamp_(0.0, 1.0).to(x.dtype)  # bicubic overshoots; PIL clips too

    def load_image(self, image):
        """A PIL image resized and centre-cropped to ``input_size`` (timm's eval transform)."""
        from PIL import Image

        resample = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC}
        height, width = self._resized_shape(image.height, image.width)
        image = image.resize(
            (width, height), resample.get(self.interpolation, Image.Resampling.BILINEAR)
        )
        _, crop_h, crop_w = self.input_size
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        return image.crop((left, top, left + crop_w, top + crop_h))

    def extra_repr(self):
        return (
            f"input_size={self.input_size}, interpolation={self.interpolation!r}, "
            f"crop_pct={self.crop_pct}"
        )


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGBA -> RGB by dropping alpha, RGB -> grey by luma."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.expand(-1, channels, -1, -1)
    if have == 4 and channels == 3:
        return x[:, :3]
    if have in (3, 4) and channels == 1:
        weights = torch.tensor(_GREY_WEIGHTS, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        return (x[:, :3] * weights).sum(dim=1, keepdim=True)
    raise ValueError(
        f"images with {have} channels cannot be fed to a backbone that takes {channels}"
    )


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    height, width = x.shape[-2:]
    crop_h, crop_w = size
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return x[..., top : top + crop_h, left : left + crop_w]


class NoPreprocessing(nn.Module):
    """Stands in for :class:`ImagePreprocessor` when a backbone has no ``pretrained_cfg``."""

    def prepare(self, x):
        return x

    def standardize(self, x):
        return x


def preprocessing_or_identity(preprocessor):
    return preprocessor if preprocessor is not None else NoPreprocessing()
