"""Image policies for batches ``(B, C, H, W)``: ``crop_flip``, ``simsiam``, ``multiscale``.

The random operations are kornia's batched augmentations (``kornia.augmentation``):
they draw independent parameters for every sample and apply them in a few
tensor operations (one batched ``warp_affine`` for all crops, ...), on the
batch's device, with no Python loop over images. kornia was chosen over
torchvision v2 because torchvision's v2 transforms draw ONE set of parameters
per call (the same crop for the whole batch), so per-sample draws would need a
loop over images.

Reproducibility: kornia draws its parameters with torch's global CPU random
number generator. A policy call therefore takes one 62-bit seed from the
``torch.Generator`` it is given and runs kornia inside
``torch.random.fork_rng(devices=[])`` with the global CPU generator seeded from
it (:func:`seeded_global_rng`); the caller's global RNG state is restored on exit.
The same generator state gives the same views on any device (the parameters are
drawn on the CPU, then applied on the batch's device), and each call advances
the generator, so successive calls give fresh draws. Because the global CPU RNG
is process state, two threads calling policies at the same moment may
interleave their draws; use one process per worker for parallel work.

Values are expected in ``[0, 1]`` (what ``repens_sklearn`` feeds backbones):
the colour operations clamp to that range, the geometric ones do not care.
"""

from __future__ import annotations

import contextlib
import math
from numbers import Real

import torch
import torch.nn.functional as F

_SEED_HIGH = 2**62


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator | None):
    """Run the body with torch's global CPU RNG seeded from ``generator``, then restore it.

    With ``generator=None`` the body simply uses the global RNG as it is.
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


class _KorniaPolicy:
    """Base: builds kornia pipelines lazily per image size/channels and caches them."""

    name = "image"

    def __init__(self):
        self._pipelines = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x, self.name)
        if x.shape[0] == 0:
            return x
        key = tuple(x.shape[1:])
        if key not in self._pipelines:
            self._pipelines[key] = self._build(*key)
        with seeded_global_rng(generator):
            out = self._pipelines[key](x)
        return out.to(x.dtype)

    def _build(self, channels, height, width):  # pragma: no cover - abstract
        raise NotImplementedError

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pipelines"] = {}  # rebuilt on demand; keeps pickles small and portable
        return state


class CropFlip(_KorniaPolicy):
    """Random resized crop (or padded random crop) + random horizontal flip.

    The "conventional resize-randomcrop-flip augmentation" of the MeTTA paper
    (sec. 5) and the linear-evaluation augmentation of EnSiam (sec. 4.1).

    Parameters
    ----------
    scale : (float, float), default=(0.08, 1.0)
        Range of the crop's area as a fraction of the image (torchvision's
        ``RandomResizedCrop`` default). The crop is resized back to ``(H, W)``.
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

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5, padding=None):
        super().__init__()
        self.scale = _check_range("scale", scale, 1e-6, 1.0, self.name)
        self.ratio = _check_range("ratio", ratio, 1e-6, math.inf, self.name)
        self.flip_p = _check_probability("flip_p", flip_p, self.name)
        if padding is not None and (not isinstance(padding, int) or padding < 0):
            raise ValueError(f"crop_flip policy needs padding=None or an int >= 0, got {padding!r}")
        self.padding = padding

    def _build(self, channels, height, width):
        import kornia.augmentation as K

        if self.padding is not None:
            crop = K.RandomCrop((height, width), padding=self.padding, padding_mode="reflect",
                                cropping_mode="resample")
        else:
            crop = K.RandomResizedCrop((height, width), scale=self.scale, ratio=self.ratio,
                                       cropping_mode="resample")
        return torch.nn.Sequential(crop, K.RandomHorizontalFlip(p=self.flip_p))

    def __repr__(self):
        return (f"CropFlip(scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}, "
                f"padding={self.padding})")


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


class SimSiamAugment(_KorniaPolicy):
    """The SimSiam / EnSiam pretraining augmentation (EnSiam paper sec. 4.1).

    Random resized crop (area ``scale``, default 0.2-1 as in SimSiam), horizontal
    flip (p=0.5), colour jitter (brightness, contrast, saturation 0.4, hue 0.1,
    applied with p=0.8; torchvision's formulas through kornia's ``ColorJitter``),
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

    def __init__(self, strength=0.0, scale=(0.2, 1.0), blur_kernel_size=None):
        super().__init__()
        self.strength = strength
        level = _check_strength(strength)
        self.scale = _check_range("scale", scale, 1e-6, 1.0, self.name)
        if blur_kernel_size is not None and (
            not isinstance(blur_kernel_size, int) or blur_kernel_size < 1 or blur_kernel_size % 2 == 0
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

    def _build(self, channels, height, width):
        import kornia.augmentation as K

        kernel = self.blur_kernel_size or max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)
        geometric = [K.RandomResizedCrop((height, width), scale=self.scale, cropping_mode="resample"),
                     K.RandomHorizontalFlip(p=0.5)]
        blur = K.RandomGaussianBlur((kernel, kernel), self.sigma, p=0.5)
        if channels in (3, 4):
            colour = torch.nn.Sequential(
                K.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue, p=0.8),
                K.RandomGrayscale(p=0.2),
            )
            colour = colour if channels == 3 else _RGBOnly(colour)
        else:
            colour = K.ColorJitter(self.brightness, self.contrast, 0.0, 0.0, p=0.8)
        return torch.nn.Sequential(*geometric, colour, blur)

    def __repr__(self):
        return f"SimSiamAugment(strength={self.strength!r}, scale={self.scale})"


class _RGBOnly(torch.nn.Module):
    """Apply ``inner`` to the first three channels and keep the rest (alpha) as is."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.cat([self.inner(x[:, :3]), x[:, 3:]], dim=1)


class MultiScale:
    """Deterministic multi-scale views, as image retrieval aggregates them.

    Scales default to 1, 1/sqrt(2), 1/2 (Radenovic et al., cirtorch's
    ``--multiscale``; MeTTA paper sec. 4 and 5 names it the augmentation that
    helps retrieval).

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

    Resizing is anti-aliased bilinear (``torch.nn.functional.interpolate``).

    Parameters
    ----------
    scales : sequence of float, default=(1, 1/sqrt(2), 1/2)
    resize_back : bool, default=False
    """

    name = "multiscale"

    def __init__(self, scales=(1.0, 2 ** -0.5, 0.5), resize_back=False):
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

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x, self.name)
        pick = torch.randint(len(self.scales), (x.shape[0],), generator=generator,
                             device=generator.device if generator is not None else "cpu")
        pick = pick.to(x.device)
        out = x.clone()
        for index, scale in enumerate(self.scales):  # loop over scales, not images
            chosen = pick == index
            if scale != 1.0 and bool(chosen.any()):
                small = _rescale(x[chosen], self._size(x.shape[2], x.shape[3], scale))
                out[chosen] = _rescale(small, tuple(x.shape[2:])).to(x.dtype)
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


def crop_flip(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5, padding=None):
    """Random resized crop + horizontal flip (see :class:`CropFlip`)."""
    return CropFlip(scale=scale, ratio=ratio, flip_p=flip_p, padding=padding)


def simsiam(strength=0.0, scale=(0.2, 1.0), blur_kernel_size=None):
    """The SimSiam/EnSiam pretraining recipe (see :class:`SimSiamAugment`)."""
    return SimSiamAugment(strength=strength, scale=scale, blur_kernel_size=blur_kernel_size)


def multiscale(scales=(1.0, 2 ** -0.5, 0.5), resize_back=False):
    """Deterministic multi-scale views (see :class:`MultiScale`)."""
    return MultiScale(scales=scales, resize_back=resize_back)
