"""Turn X into validated samples and stream them as batches of tensors on a device.

Accepted X (DESIGN.md "Inputs"):
- 2-D arrays: vectors, or flattened images when ``input_shape=(C, H, W)`` (uint8
  then scaled to [0, 1] as for image arrays);
- 3-D / 4-D image arrays ``(N, H, W)``, ``(N, H, W, C)``, ``(N, C, H, W)``, uint8
  (scaled to [0, 1]) or float;
- lists of image paths or PIL images, decoded batch by batch, converted to the
  channel count and resized to ``input_shape`` (default: the first image's).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from ._compat import _num_samples

_CHANNEL_COUNTS = (1, 3, 4)


@dataclass
class Inputs:
    """Validated samples: an array ``(N, *sample_shape)`` or a list of image sources."""

    sample_shape: tuple
    array: np.ndarray | None = None
    sources: list | None = None

    @property
    def n_samples(self) -> int:
        return len(self.array) if self.array is not None else len(self.sources)

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` as a float32 CPU tensor of shape ``(B, *sample_shape)``."""
        if self.sources is not None:
            arr = np.stack([
                _load_image(self.sources[i], self.sample_shape, i) for i in range(start, stop)
            ])
        else:
            arr = self.array[start:stop]
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
        if tensor.dtype == torch.uint8:
            tensor = tensor.float().div_(255.0)
        tensor = tensor.float()
        if self.is_image and tuple(tensor.shape[1:]) != self.sample_shape:
            tensor = _resize(tensor, self.sample_shape)
        return tensor

    def iter_batches(self, batch_size: int, device="cpu"):
        """Yield ``(start, tensor_on_device)`` for consecutive batches."""
        device = torch.device(device)
        for start in range(0, self.n_samples, batch_size):
            stop = min(start + batch_size, self.n_samples)
            yield start, self.batch(start, stop).to(device, non_blocking=device.type == "cuda")

    def example(self) -> torch.Tensor:
        """The first sample as a batch of one (to probe a backbone)."""
        return self.batch(0, 1)


def check_member_inputs(estimator, X, *, reset=True) -> int:
    """Validate X for an estimator that only hands it to member transformers; n_samples.

    Numeric arrays and image lists are checked as by :func:`check_inputs`. Tables
    with non-numeric columns (a DataFrame of strings for a ``OneHotEncoder``
    member, say) are the members' business, as in ``FeatureUnion``: only their
    column count and names are recorded and checked.
    """
    if _is_non_numeric_table(X):
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        return _num_samples(X)
    return check_inputs(estimator, X, reset=reset).n_samples


def _is_non_numeric_table(X):
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(X, "columns"):  # a DataFrame
        return any(getattr(dtype, "kind", "O") not in "biuf" for dtype in dtypes)
    return isinstance(X, np.ndarray) and X.dtype.kind in "OUS"


def check_inputs(estimator, X, *, input_shape=None, reset=True) -> Inputs:
    """Validate ``X`` for ``estimator`` and return :class:`Inputs`.

    With ``reset=True`` it records ``n_features_in_`` (and ``feature_names_in_``
    for DataFrames) and ``input_shape_``; with ``reset=False`` it checks that X
    matches what the estimator was fitted on.
    """
    input_shape = _check_input_shape(input_shape)
    if _is_image_list(X):
        if not reset and input_shape is None:
            # Image files are resized to what the estimator was fitted on, not to the first one.
            input_shape = getattr(estimator, "input_shape_", None)
        inputs = _image_list_inputs(X, input_shape)
        if reset:
            estimator.n_features_in_ = int(math.prod(inputs.sample_shape))
    else:
        inputs = _array_inputs(estimator, X, input_shape, reset)
    if reset:
        estimator.input_shape_ = inputs.sample_shape
    else:
        _check_same_shape(estimator, inputs)
    return inputs


def _check_input_shape(input_shape):
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in np.atleast_1d(input_shape))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) of positive ints; got {input_shape!r}")
    return shape


def _check_same_shape(estimator, inputs):
    fitted = getattr(estimator, "input_shape_", None)
    if fitted is not None and tuple(fitted) != tuple(inputs.sample_shape):
        raise ValueError(
            f"X has samples of shape {tuple(inputs.sample_shape)}, but "
            f"{type(estimator).__name__} was fitted on samples of shape {tuple(fitted)}"
        )


def _is_image_list(X) -> bool:
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    first = X[0]
    return isinstance(first, (str, os.PathLike)) or _is_pil(first)


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _array_inputs(estimator, X, input_shape, reset) -> Inputs:
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is empty: it holds 0 samples")
        _check_not_ragged(X)
    # scikit-learn's _NotAnArray refuses np.ndim; asarray goes through __array__.
    ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
    if ndim >= 3:
        arr = np.asarray(X)
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32, copy=False)
    else:
        arr = X
    _check_finite(arr)
    # uint8 images are pixel values, scaled to [0, 1] per batch, whether given as image
    # arrays or flattened with input_shape; a 2-D uint8 array of vectors stays numeric.
    is_images = ndim >= 3 or input_shape is not None
    dtype = np.uint8 if getattr(arr, "dtype", None) == np.uint8 and is_images else np.float32
    arr = validate_data(estimator, arr, reset=reset, dtype=dtype, allow_nd=True,
                        ensure_all_finite=True)
    if arr.ndim == 2:
        if input_shape is None:
            return Inputs(sample_shape=(arr.shape[1],), array=arr)
        if arr.shape[1] != math.prod(input_shape):
            raise ValueError(
                f"input_shape={input_shape} needs {math.prod(input_shape)} columns, "
                f"but X has {arr.shape[1]}"
            )
        return Inputs(sample_shape=input_shape, array=arr.reshape((len(arr), *input_shape)))
    if arr.ndim in (3, 4):
        arr = _to_nchw(arr)
        shape = input_shape or tuple(arr.shape[1:])
        if input_shape is not None and input_shape[0] != arr.shape[1]:
            raise ValueError(
                f"input_shape={input_shape} asks for {input_shape[0]} channels but the "
                f"images in X have {arr.shape[1]}"
            )
        return Inputs(sample_shape=tuple(int(s) for s in shape), array=arr)
    raise ValueError(f"X must be 2-D, 3-D or 4-D, got an array of shape {arr.shape}")


def _check_not_ragged(X):
    shapes = [np.shape(x) for x in X]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"X is ragged: sample 0 has shape {shapes[0]} but sample {i} has shape {shape}"
            )


def _check_finite(arr):
    """Name the first sample holding NaN or inf (scikit-learn's check says only 'X')."""
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or arr.size == 0:
        return
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1) if arr.ndim > 1 else ~np.isfinite(arr)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        what = "NaN" if np.isnan(arr[index]).any() else "infinity"
        raise ValueError(f"Input X contains {what} (first at sample {index}).")


def _to_nchw(arr):
    if arr.ndim == 3:
        return arr[:, None]
    if arr.shape[1] in _CHANNEL_COUNTS and arr.shape[-1] not in _CHANNEL_COUNTS:
        return arr
    if arr.shape[-1] in _CHANNEL_COUNTS:
        return np.ascontiguousarray(np.moveaxis(arr, -1, 1))
    if arr.shape[1] in _CHANNEL_COUNTS:
        return arr
    raise ValueError(
        f"cannot tell the channel axis of image array X with shape {arr.shape}: "
        f"expected (N, C, H, W) or (N, H, W, C) with C in {_CHANNEL_COUNTS}"
    )


def _image_list_inputs(X, input_shape) -> Inputs:
    for i, source in enumerate(X):
        if isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"image file {os.fspath(source)!r} (X[{i}]) does not exist")
        elif not _is_pil(source):
            raise TypeError(
                f"X[{i}] is a {type(source).__name__}; a list X must hold only image "
                "paths or PIL images"
            )
    if input_shape is not None and input_shape[0] not in _CHANNEL_COUNTS:
        raise ValueError(
            f"input_shape={input_shape} for image files needs C in {_CHANNEL_COUNTS}"
        )
    if input_shape is None:
        first = _open_image(X[0], 0)
        channels = 1 if first.mode in ("1", "L", "I", "I;16", "F") else 3
        input_shape = (channels, first.height, first.width)
    return Inputs(sample_shape=input_shape, sources=list(X))


def _open_image(source, index):
    from PIL import Image, UnidentifiedImageError

    if _is_pil(source):
        return source
    try:
        image = Image.open(source)
        image.load()
        return image
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read image {os.fspath(source)!r} (X[{index}]): {exc}") from exc


def _load_image(source, sample_shape, index) -> np.ndarray:
    from PIL import Image

    channels, height, width = sample_shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    image = _open_image(source, index).convert(mode)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[None] if channels == 1 else np.moveaxis(arr, -1, 0)


def _resize(tensor, sample_shape):
    return torch.nn.functional.interpolate(
        tensor, size=tuple(sample_shape[1:]), mode="bilinear", align_corners=False, antialias=True
    )
