"""Image policies for batches ``(B, C, H, W)``: ``crop_flip``, ``simsiam``, ``multiscale``.

Every random policy here draws its parameters per row from a per-row seed
(:meth:`SeededPolicy.seeded`): row ``i`` of the output depends on ``x[i]`` and
``seeds[i]`` only, never on the other rows. The parameters of a whole batch are
drawn in one vectorised call (counter-based random numbers, see
:mod:`repens_sklearn.augment._seeds`) on the CPU, the same on every machine,
then applied in a few batched tensor operations on the batch's device: one
``grid_sample`` for all crops and flips, per-sample colour factors, one blur
with a per-sample sigma; no Python loop over images. The plain policy call
``policy(x, generator)`` draws one seed per row from ``generator`` (advancing
it) and calls ``seeded``.

kornia provides the hue shift and the Gaussian blur (``kornia.enhance.adjust_hue``,
``kornia.filters.gaussian_blur2d``, both with per-sample parameters); the crop,
flip and the other colour operations are a few tensor lines with torchvision's
formulas. (torchvision's v2 transforms draw ONE set of parameters per call, the
same crop for the whole batch; kornia's augmentation modules draw per sample but
from torch's global RNG, for the batch as a whole.)

Values are expected in ``[0, 1]`` (what ``repens_sklearn`` feeds backbones):
the colour operations clamp to that range, the geometric ones do not care.
"""

from __future__ import annotations

import contextlib
import math
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F

from ._contract import MultiViewPolicy, SeededPolicy
from ._seeds import uniform

_SEED_HIGH = 2**62
_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator | None):
    """Run the body with torch's global CPU RNG seeded from ``generator``, then restore it.

    For user policies built on libraries that draw from the global RNG (e.g.
    kornia's augmentation modules). With ``generator=None`` the body simply
    uses the global RNG as it is.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(_SEED_HIGH, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def _check_images(x, policy_name):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"the {policy_name!r} augmentation policy needs image batches (B, C, H, W), "
            f"got {shape}; for vector data use policy='gaussian_noise'"
        )


def _check_range(name, value, low, high, policy_name):
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(
            f"{policy_name} policy needs {name}=(min, max) with {low} <= min <= max <= {high}, "
            f"got {name}={value!r}"
        )
    return pair


def _check_probability(name, value, policy_name):
    if not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{policy_name} policy needs 0 <= {name} <= 1, got {name}={value!r}")
    return float(value)


class _ImagePolicy(SeededPolicy):
    """A seeded policy for image batches ``(B, C, H, W)``."""

    def _check(self, x):
        _check_images(x, self.name)


# ----------------------------------------------------------------------- crops
def _crop_boxes(u, height, width, scale, ratio):
    """torchvision's ``RandomResizedCrop.get_params``, vectorised over rows of uniforms.

    ``u`` is ``(n, 22)``: 10 attempts of area and log-ratio, then the position.
    Returns integer ``top, left, h, w`` arrays.
    """
    u = u.numpy()
    n = _CROP_ATTEMPTS
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, :n])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, n : 2 * n])
    w = np.round(np.sqrt(area * aspect))
    h = np.round(np.sqrt(area / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.argmax(axis=1)
    rows = np.arange(len(u))
    w, h, found = w[rows, first], h[rows, first], valid.any(axis=1)
    # no attempt fits: a centre crop at the nearest allowed aspect ratio (torchvision)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w, h = np.where(found, w, fw), np.where(found, h, fh)
    top = np.where(found, np.floor(u[:, 2 * n] * (height - h + 1)), (height - h) // 2)
    left = np.where(found, np.floor(u[:, 2 * n + 1] * (width - w + 1)), (width - w) // 2)
    return top, left, h, w


def _resized_crop(x, top, left, h, w, flip):
    """Crop boxes resized to the image size, mirrored where ``flip``: one ``grid_sample``.

    The sampling of torchvision's resized crop (``F.interpolate(crop, (H, W),
    mode="bilinear")`` on the cropped pixels): pixel centres aligned, source
    coordinates clamped to the box, so no pixel outside it leaks in and a
    full-image box is the identity. Boxes lie inside the image, so this only
    upsamples (no anti-aliasing needed).
    """
    height, width = x.shape[-2:]
    dtype = x.dtype if x.is_floating_point() else torch.float32

    def axis(start, length, size, mirror=None):
        out = np.arange(size) + 0.5
        src = start[:, None] + out[None, :] * (length / size)[:, None] - 0.5
        src = np.clip(src, start[:, None], (start + length - 1)[:, None])
        if mirror is not None:
            src = np.where(mirror[:, None], src[:, ::-1], src)
        return torch.as_tensor((2 * src + 1) / size - 1, dtype=dtype, device=x.device)

    gx = axis(left, w, width, flip)  # (B, W) normalized source x per output column
    gy = axis(top, h, height)  # (B, H)
    grid = torch.stack(
        [gx[:, None, :].expand(-1, height, -1), gy[:, :, None].expand(-1, -1, width)], dim=-1
    )
    return F.grid_sample(
        x.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def _padded_crop(x, padding, u, flip):
    """Pad by ``padding`` (reflect) and take a random ``(H, W)`` window; exact pixels."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    top = torch.as_tensor(np.floor(u[:, 0] * (2 * padding + 1)), dtype=torch.long)
    left = torch.as_tensor(np.floor(u[:, 1] * (2 * padding + 1)), dtype=torch.long)
    rows = (top[:, None] + torch.arange(height)).to(x.device)
    cols = left[:, None] + torch.arange(width)
    cols = torch.where(torch.as_tensor(flip)[:, None], cols.flip(1), cols).to(x.device)
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


_CROP_DRAWS = 2 * _CROP_ATTEMPTS + 3  # attempts, position (2), flip


def _crop_flip(x, u, scale, ratio, flip_p, padding=None):
    """Random resized (or padded) crop + horizontal flip from uniforms ``u[:, :_CROP_DRAWS]``."""
    flip = u[:, _CROP_DRAWS - 1].numpy() < flip_p
    if padding is not None:
        return (
            _padded_crop(x, padding, u[:, :2].numpy(), flip)
            if padding
            else torch.where(
                torch.as_tensor(flip, device=x.device)[:, None, None, None], x.flip(-1), x
            )
        )
    top, left, h, w = _crop_boxes(u, x.shape[-2], x.shape[-1], scale, ratio)
    return _resized_crop(x, top, left, h, w, flip)


# scale="auto": the smallest crop area as a function of the shorter side the policy sees
_AUTO_SMALL = (32, 0.8)  # up to 32 px: crops of at least 80% of the area
_AUTO_LARGE = (224, 0.08)  # from 224 px: torchvision's and the paper's 8%


def auto_crop_scale(height, width):
    """The ``(min, 1.0)`` crop-area range of ``crop_flip(scale="auto")`` for an image size.

    0.8 up to 32 px on the shorter side, 0.08 (the conventional setting) from
    224 px, log-linear in between (64 px: 0.54, 96 px: 0.39, 128 px: 0.29).
    Chosen by linear evaluation of MeTTA embeddings of small images (the
    ``--crop-scales`` sweep of the MeTTA benchmark, 3 seeds, S=4): on 8x8
    digits a trained small CNN drops from 96.4% (plain) to 83.6% with crops
    down to 8% of the area and keeps 95.7% with 80%; on 28x28 Fashion-MNIST
    8% loses 7.1 points and 80% 0.3 (within the seeds' spread). Larger minima
    were never worse on small images; 0.08 at 224 px is the conventional
    ImageNet setting the paper uses.
    """
    side = min(int(height), int(width))
    (small, high), (large, low) = _AUTO_SMALL, _AUTO_LARGE
    t = min(1.0, max(0.0, math.log(max(side, 1) / small) / math.log(large / small)))
    return (high + (low - high) * t, 1.0)


class CropFlip(_ImagePolicy):
    """Random resized crop (or padded random crop) + random horizontal flip.

    The "conventional resize-randomcrop-flip augmentation" of Ashukha et al.,
    "Mean Embeddings with Test-Time Data Augmentation for Ensembling of
    Representations" (sec. 5), and the linear-evaluation augmentation of EnSiam
    (sec. 4.1). The crop box follows torchvision's ``RandomResizedCrop``
    (10 attempts, then a centre crop) and is resized back to ``(H, W)``.

    The conventional crop area, 8% to 100% of the image, suits ImageNet photos
    at 224 px; on small images it crops most of the object away. The default
    ``scale="auto"`` therefore takes the area range from the resolution the
    policy sees (:func:`auto_crop_scale`: at least 80% up to 32 px, 8% from
    224 px). With a pretrained backbone that is the backbone's resolution
    (images are resized to it before the policy), so small images upsampled to
    224 px get the conventional crops: give ``scale`` explicitly there (an
    ImageNet EfficientNet-Lite0 fed 8x8 digits at 96 px: crops down to 8% of
    the area lose 10 points of linear-evaluation accuracy, down to 50% gain 1).
    ``policy="crop_flip_paper"`` is the paper's setting, ``scale=(0.08, 1.0)`` at
    every size.

    Parameters
    ----------
    scale : "auto" or (float, float), default="auto"
        Range of the crop's area as a fraction of the image; ``"auto"``: from
        the image size as above. The crop is resized back to ``(H, W)``.
    ratio : (float, float), default=(3/4, 4/3)
        Range of the crop's aspect ratio.
    flip_p : float, default=0.5
        Probability of a horizontal flip.
    padding : int or None, default=None
        When given, a CIFAR-style crop is used instead: pad by ``padding``
        pixels (reflect) and take a random ``(H, W)`` crop; ``scale``/``ratio``
        are then unused.
    """

    name = "crop_flip"

    def __init__(self, scale="auto", ratio=(3 / 4, 4 / 3), flip_p=0.5, padding=None):
        self.scale = (
            scale if _is_auto(scale) else _check_range("scale", scale, 1e-6, 1.0, self.name)
        )
        self.ratio = _check_range("ratio", ratio, 1e-6, math.inf, self.name)
        self.flip_p = _check_probability("flip_p", flip_p, self.name)
        if padding is not None and (not isinstance(padding, int) or padding < 0):
            raise ValueError(f"crop_flip policy needs padding=None or an int >= 0, got {padding!r}")
        self.padding = padding

    def scale_for(self, height, width):
        """The crop-area range used for images of ``height x width``."""
        return auto_crop_scale(height, width) if _is_auto(self.scale) else self.scale

    def seeded(self, x, seeds):
        self._check_seeds(x, seeds)
        if len(x) == 0:
            return x
        u = uniform(seeds, _CROP_DRAWS)
        scale = self.scale_for(*x.shape[-2:])
        return _crop_flip(x, u, scale, self.ratio, self.flip_p, self.padding).to(x.dtype)

    def __repr__(self):
        return (
            f"CropFlip(scale={self.scale!r}, ratio={self.ratio}, flip_p={self.flip_p}, "
            f"padding={self.padding})"
        )


def _is_auto(scale):
    return isinstance(scale, str) and scale == "auto"


# ---------------------------------------------------------------------- colour
_STRENGTHS = {"default": 0.0, "strong": 1.0}


def _check_strength(strength):
    if isinstance(strength, str):
        if strength not in _STRENGTHS:
            raise ValueError(
                f"simsiam policy needs strength in {sorted(_STRENGTHS)} or a float >= 0, "
                f"got strength={strength!r}"
            )
        return _STRENGTHS[strength]
    if isinstance(strength, bool) or not isinstance(strength, Real) or not strength >= 0:
        raise ValueError(
            f"simsiam policy needs strength in {sorted(_STRENGTHS)} or a float >= 0, "
            f"got strength={strength!r}"
        )
    return float(strength)


def _grey(x):
    weights = torch.tensor(_GREY, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x[:, :3] * weights).sum(dim=1, keepdim=True)


def _per_sample(factor):
    return factor.reshape(-1, 1, 1, 1)


def _brightness(x, factor):
    return (x * _per_sample(factor)).clamp(0.0, 1.0)


def _contrast(x, factor):
    mean = (_grey(x) if x.shape[1] == 3 else x).mean(dim=(1, 2, 3), keepdim=True)
    return (_per_sample(factor) * x + (1 - _per_sample(factor)) * mean).clamp(0.0, 1.0)


def _saturation(x, factor):
    return (_per_sample(factor) * x + (1 - _per_sample(factor)) * _grey(x)).clamp(0.0, 1.0)


def _hue(x, factor):
    from kornia.enhance import adjust_hue

    return adjust_hue(x, factor * (2 * math.pi)).clamp(0.0, 1.0)  # factor in turns


_COLOUR_OPS = (_brightness, _contrast, _saturation, _hue)


def _colour_jitter(x, factors, order):
    """torchvision's ``ColorJitter`` with per-sample factors ``(n, 4)`` and order ``(n, 4)``.

    Every sample gets its own random order of the four operations (as
    torchvision's per-image transform does); each step runs each operation once
    on the samples that have it at that step.
    """
    x = x.clone()
    for step in range(order.shape[1]):
        for op in np.unique(order[:, step]):
            index = torch.as_tensor(np.flatnonzero(order[:, step] == op), device=x.device)
            x[index] = _COLOUR_OPS[op](x[index], factors[index, op])
    return x


def _subset(x, mask, fn):
    """``fn`` applied to the rows of ``x`` where ``mask`` (a numpy bool array), others kept."""
    if not mask.any():
        return x
    index = torch.as_tensor(np.flatnonzero(mask), device=x.device)
    out = x.clone()
    out[index] = fn(x[index], index)
    return out


class SimSiamAugment(_ImagePolicy):
    """The SimSiam / EnSiam pretraining augmentation (EnSiam paper sec. 4.1).

    Random resized crop (area ``scale``, default 0.2-1 as in SimSiam), horizontal
    flip (p=0.5), colour jitter (brightness, contrast, saturation 0.4, hue 0.1,
    applied with p=0.8, in a random order per image; torchvision's formulas),
    random grayscale (p=0.2) and Gaussian blur with sigma in [0.1, 2.0] (p=0.5).

    ``strength`` moves linearly from that default (``0`` or ``"default"``) to the
    paper's 'strong' setting (``1`` or ``"strong"``): brightness, contrast and
    saturation ranges widened by 0.4 (to 0.8) and blur sigma in [0.2, 3.0]
    (sec. 4.4, "Augmentation settings"); values above 1 extrapolate.

    Channels: 3-channel images get the full recipe; 1-channel (grayscale) images
    get brightness and contrast jitter only (saturation, hue and grayscale have no
    meaning there); 4-channel images get the colour operations on RGB and keep
    their alpha channel; other channel counts get brightness/contrast only.

    Parameters
    ----------
    strength : float or {"default", "strong"}, default=0.0
    scale : (float, float), default=(0.2, 1.0)
        Crop area range of the random resized crop.
    blur_kernel_size : int or None, default=None
        Odd kernel size of the blur; None picks about 10% of the image side
        (SimSiam's rule), at least 3.
    """

    name = "simsiam"
    _DRAWS = _CROP_DRAWS + 12  # crop/flip, jitter p, 4 factors, 4 order keys, grey p, blur p, sigma

    def __init__(self, strength=0.0, scale=(0.2, 1.0), blur_kernel_size=None):
        self.strength = strength
        level = _check_strength(strength)
        self.scale = _check_range("scale", scale, 1e-6, 1.0, self.name)
        if blur_kernel_size is not None and (
            not isinstance(blur_kernel_size, int)
            or blur_kernel_size < 1
            or blur_kernel_size % 2 == 0
        ):
            raise ValueError(
                f"simsiam policy needs blur_kernel_size=None or an odd int >= 1, "
                f"got {blur_kernel_size!r}"
            )
        self.blur_kernel_size = blur_kernel_size
        jitter = 0.4 + 0.4 * level
        self.brightness = self.contrast = self.saturation = jitter
        self.hue = 0.1
        self.sigma = (0.1 + 0.1 * level, 2.0 + 1.0 * level)

    def seeded(self, x, seeds):
        self._check_seeds(x, seeds)
        if len(x) == 0:
            return x
        u = uniform(seeds, self._DRAWS)
        out = _crop_flip(x, u, self.scale, (3 / 4, 4 / 3), 0.5)
        v = u[:, _CROP_DRAWS:].numpy()
        rgb = x.shape[1] in (3, 4)
        colour = out[:, :3] if rgb else out
        colour = _subset(
            colour,
            v[:, 0] < 0.8,
            lambda part, index: _colour_jitter(
                part, self._factors(v, part.device)[index], self._order(v, rgb)[index.cpu().numpy()]
            ),
        )
        if rgb:
            colour = _subset(
                colour, v[:, 9] < 0.2, lambda part, index: _grey(part).expand(-1, 3, -1, -1)
            )
            out = torch.cat([colour, out[:, 3:]], dim=1) if x.shape[1] == 4 else colour
        else:
            out = colour
        kernel = self._kernel(*x.shape[-2:])
        sigma = torch.as_tensor(
            self.sigma[0] + (self.sigma[1] - self.sigma[0]) * v[:, 11],
            dtype=out.dtype,
            device=out.device,
        )
        out = _subset(out, v[:, 10] < 0.5, lambda part, index: _blur(part, kernel, sigma[index]))
        return out.to(x.dtype)

    def _factors(self, v, device):
        ranges = [
            (max(0.0, 1 - self.brightness), 1 + self.brightness),
            (max(0.0, 1 - self.contrast), 1 + self.contrast),
            (max(0.0, 1 - self.saturation), 1 + self.saturation),
            (-self.hue, self.hue),
        ]
        low = np.array([r[0] for r in ranges])
        high = np.array([r[1] for r in ranges])
        return torch.as_tensor(low + (high - low) * v[:, 1:5], dtype=torch.float32, device=device)

    @staticmethod
    def _order(v, rgb):
        order = np.argsort(v[:, 5:9], axis=1, kind="stable")
        if not rgb:  # brightness and contrast only, in the drawn relative order
            order = order[np.isin(order, (0, 1))].reshape(len(v), 2)
        return order

    def _kernel(self, height, width):
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        return max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)

    def __repr__(self):
        return f"SimSiamAugment(strength={self.strength!r}, scale={self.scale})"


def _blur(x, kernel, sigma):
    from kornia.filters import gaussian_blur2d

    sigma = sigma.reshape(-1, 1).expand(-1, 2).contiguous()
    return gaussian_blur2d(x, (kernel, kernel), sigma, border_type="reflect")


# ----------------------------------------------------------------- multi-scale
class MultiScale(_ImagePolicy, MultiViewPolicy):
    """Deterministic multi-scale views, as image retrieval aggregates them.

    Scales default to 1, 1/sqrt(2), 1/2 (Radenovic et al., cirtorch's
    ``--multiscale``; Ashukha et al., "Mean Embeddings with Test-Time Data
    Augmentation for Ensembling of Representations", sec. 4 and 5, names it the
    augmentation that helps retrieval).

    Two ways to use it, because the policy contract ("same shape out") and real
    multi-scale inference disagree:

    * :class:`~repens_sklearn.MeanTTAEmbedder` asks for the deterministic views
      through :meth:`view` (``view(x, i)`` is the batch at ``scales[i]``) and runs
      each scale at its own resolution, as cirtorch does; that needs a backbone
      with global pooling (any CNN here). ``resize_back=True`` makes :meth:`view`
      scale down then back up to ``(H, W)`` (a low-pass "scale" that any backbone,
      even a fixed-size one, accepts).
    * As a plain policy (``policy(x, generator)``, e.g. for training), every
      sample gets a scale drawn at random from ``scales``, downscaled and
      upscaled back to ``(H, W)``, so the output has the input's shape.

    Resizing is anti-aliased bilinear (``torch.nn.functional.interpolate``;
    cirtorch's is bilinear without anti-aliasing).

    Parameters
    ----------
    scales : sequence of float, default=(1, 1/sqrt(2), 1/2)
    resize_back : bool, default=False
    """

    name = "multiscale"

    def __init__(self, scales=(1.0, 2**-0.5, 0.5), resize_back=False):
        scales = tuple(float(s) for s in scales)
        if not scales or not all(0 < s <= 4 for s in scales):
            raise ValueError(f"multiscale policy needs scales in (0, 4], got scales={scales!r}")
        self.scales = scales
        self.resize_back = bool(resize_back)

    @property
    def n_views(self) -> int:
        return len(self.scales)

    def view_shape(self, sample_shape, index):
        """Shape of one sample of view ``index`` for samples of ``sample_shape``."""
        channels, height, width = sample_shape
        if self.resize_back:
            return (channels, height, width)
        return (channels, *self._size(height, width, self.scales[index]))

    def view(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The whole batch at ``scales[index]`` (own resolution unless ``resize_back``)."""
        _check_images(x, self.name)
        out = _rescale(x, self._size(x.shape[2], x.shape[3], self.scales[index]))
        if self.resize_back:
            out = _rescale(out, tuple(x.shape[2:]))
        return out

    def seeded(self, x, seeds):
        """Each row at a scale drawn from ``seeds`` (resized back to ``(H, W)``)."""
        self._check_seeds(x, seeds)
        pick = np.floor(uniform(seeds, 1)[:, 0].numpy() * len(self.scales)).astype(np.int64)
        out = x.clone()
        for index, scale in enumerate(self.scales):  # loop over scales, not images
            chosen = np.flatnonzero(pick == index)
            if scale != 1.0 and len(chosen):
                rows = torch.as_tensor(chosen, device=x.device)
                small = _rescale(x[rows], self._size(x.shape[2], x.shape[3], scale))
                out[rows] = _rescale(small, tuple(x.shape[2:])).to(x.dtype)
        return out

    @staticmethod
    def _size(height, width, scale):
        return (max(1, round(height * scale)), max(1, round(width * scale)))

    def __repr__(self):
        return f"MultiScale(scales={self.scales}, resize_back={self.resize_back})"


def _rescale(x, size):
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def crop_flip(scale="auto", ratio=(3 / 4, 4 / 3), flip_p=0.5, padding=None):
    """Random resized crop + horizontal flip; crop area from the image size (:class:`CropFlip`)."""
    return CropFlip(scale=scale, ratio=ratio, flip_p=flip_p, padding=padding)


def crop_flip_paper(ratio=(3 / 4, 4 / 3), flip_p=0.5):
    """The paper's resize-randomcrop-flip: crop area 8% to 100% at every size (torchvision's).

    Ashukha et al., "Mean Embeddings with Test-Time Data Augmentation for
    Ensembling of Representations", sec. 5 (the conventional augmentation,
    ImageNet at 224 px).
    """
    return CropFlip(scale=(0.08, 1.0), ratio=ratio, flip_p=flip_p)


def simsiam(strength=0.0, scale=(0.2, 1.0), blur_kernel_size=None):
    """The SimSiam/EnSiam pretraining recipe (see :class:`SimSiamAugment`)."""
    return SimSiamAugment(strength=strength, scale=scale, blur_kernel_size=blur_kernel_size)


def multiscale(scales=(1.0, 2**-0.5, 0.5), resize_back=False):
    """Deterministic multi-scale views (see :class:`MultiScale`)."""
    return MultiScale(scales=scales, resize_back=resize_back)
