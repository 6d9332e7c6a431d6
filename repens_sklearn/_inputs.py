"""Turn X into validated samples and stream them as batches of tensors on a device.

Accepted X:
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
# PIL modes decoded as one grey channel (16-bit ones scaled, see _to_mode)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class Inputs:
    """Validated samples: an array ``(N, *sample_shape)`` or a list of image sources.

    Image sources are decoded at ``sample_shape``, or with ``loader`` (an
    :class:`~repens_sklearn._preprocess.ImagePreprocessor`) at a pretrained
    backbone's resolution with its resize and centre crop.
    """

    sample_shape: tuple
    array: np.ndarray | None = None
    sources: list | None = None
    loader: object = None

    @property
    def n_samples(self) -> int:
        return len(self.array) if self.array is not None else len(self.sources)

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    def with_loader(self, loader):
        """Image sources decoded by ``loader`` at its ``input_size``; arrays unchanged."""
        if self.sources is None or loader is None:
            return self
        return Inputs(sample_shape=tuple(loader.input_size), sources=self.sources, loader=loader)

    def raw(self, indices) -> torch.Tensor:
        """Samples ``indices`` (a slice or indices) as a CPU tensor; uint8 stays uint8."""
        if self.sources is not None:
            if isinstance(indices, slice):
                indices = range(*indices.indices(len(self.sources)))
            return torch.from_numpy(np.stack([
                _load_image(self.sources[i], self.sample_shape, i, self.loader) for i in indices
            ]))
        rows = self.array[indices if isinstance(indices, slice) else np.asarray(indices)]
        if any(stride < 0 for stride in rows.strides) or not rows.flags.writeable:
            rows = rows.copy()  # torch refuses negative strides and warns on read-only memory
        return torch.from_numpy(np.ascontiguousarray(rows))

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` as a float32 CPU tensor of shape ``(B, *sample_shape)``."""
        return self.to_device(self.raw(slice(start, stop)), "cpu")

    def to_device(self, raw: torch.Tensor, device) -> torch.Tensor:
        """A raw batch on ``device`` as float32 in [0, 1] (uint8) at ``sample_shape``."""
        device = torch.device(device)
        tensor = to_float(raw.to(device, non_blocking=device.type == "cuda"))
        if self.is_image and tuple(tensor.shape[1:]) != self.sample_shape:
            tensor = _resize(tensor, self.sample_shape)
        return tensor

    def iter_batches(self, batch_size: int, device="cpu", num_workers: int = 0):
        """Yield ``(start, float tensor on device)`` for consecutive batches.

        Arrays are sliced in place (no copy beyond the batch). Image files are
        decoded by ``num_workers`` DataLoader processes that prefetch the next
        batches while the current one is embedded (pinned memory on CUDA).
        """
        device = torch.device(device)
        if self.sources is None or num_workers == 0:
            for start in range(0, self.n_samples, batch_size):
                stop = min(start + batch_size, self.n_samples)
                yield start, self.to_device(self.raw(slice(start, stop)), device)
            return
        loader = make_loader(InputsDataset(self), batch_size, num_workers=num_workers,
                             device=device)
        start = 0
        for raw in loader:
            yield start, self.to_device(raw, device)
            start += len(raw)

    def example(self) -> torch.Tensor:
        """The first sample as a batch of one (to probe a backbone)."""
        return self.batch(0, 1)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; other dtypes -> float32."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class InputsDataset(torch.utils.data.Dataset):
    """The one dataset of the library: samples of :class:`Inputs` (and labels) in batches.

    ``__getitems__`` fetches a whole batch with one indexing operation (image
    files are decoded in the DataLoader's workers); uint8 stays uint8 until the
    device. ``order`` replays samples in a fixed order (a step schedule), and
    with ``y`` every batch is ``(x, y)``, as skorch expects.
    """

    def __init__(self, inputs, y=None, order=None):
        self.inputs, self.y, self.order = inputs, y, order

    def __len__(self):
        return self.inputs.n_samples if self.order is None else len(self.order)

    def __getitem__(self, index):
        batch = self.__getitems__([index])
        return tuple(part[0] for part in batch) if isinstance(batch, tuple) else batch[0]

    def __getitems__(self, indices):
        indices = np.asarray(indices) if self.order is None else self.order[np.asarray(indices)]
        x = self.inputs.raw(indices)
        if self.y is None:
            return x
        return x, torch.as_tensor(np.asarray(self.y)[indices])


def keep_batch(batch):
    """``collate_fn`` for :class:`InputsDataset`: its ``__getitems__`` already made the batch."""
    return batch


def make_loader(dataset, batch_size, *, num_workers=0, device="cpu", shuffle=False,
                generator=None):
    """A DataLoader over :class:`InputsDataset` that keeps its batches as they are."""
    workers = {"persistent_workers": False, "prefetch_factor": 2} if num_workers else {}
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
        collate_fn=keep_batch, num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda", **workers,
    )


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


def check_split_inputs(X):
    """Validate X with the user's sample indices, recording nothing; returns X.

    For meta-estimators that split X before their members see it (a NaN at
    sample 3 must not be reported at "sample 1" of an internal split).
    """
    import scipy.sparse as sp

    X = _paths_as_list(X)
    if _is_image_list(X) or _is_non_numeric_table(X) or sp.issparse(X):
        return X
    arr = np.asarray(X)
    _check_not_one_dimensional(arr, arr.ndim)
    if arr.dtype.kind not in "biuf":
        from sklearn.utils import check_array

        check_array(arr, allow_nd=True, ensure_all_finite=False)  # scikit-learn's own message
    _check_finite(arr)
    return X


def _is_non_numeric_table(X):
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(X, "columns"):  # a DataFrame
        return any(getattr(dtype, "kind", "O") not in "biuf" for dtype in dtypes)
    return isinstance(X, np.ndarray) and X.dtype.kind in "OUS"


def check_inputs(estimator, X, *, input_shape=None, reset=True, loader=None) -> Inputs:
    """Validate ``X`` for ``estimator`` and return :class:`Inputs`.

    With ``reset=True`` it records ``n_features_in_`` (and ``feature_names_in_``
    for DataFrames) and ``input_shape_``; with ``reset=False`` it checks that X
    matches what the estimator was fitted on.
    """
    input_shape = _check_input_shape(input_shape)
    X = _paths_as_list(X)
    if _is_image_list(X):
        if not reset and input_shape is None:
            # Image files are resized to what the estimator was fitted on, not to the first one.
            input_shape = getattr(estimator, "input_shape_", None)
        inputs = _image_list_inputs(X, input_shape).with_loader(loader)
        if reset:
            estimator.n_features_in_ = int(math.prod(inputs.sample_shape))
    else:
        inputs = _array_inputs(estimator, X, input_shape, reset)
    if reset:
        estimator.input_shape_ = inputs.sample_shape
    else:
        _check_same_shape(estimator, inputs)
    return inputs


def _paths_as_list(X):
    """Arrays / Series of paths become lists; one path or a folder gets advice, not a cast."""
    if isinstance(X, (str, os.PathLike)):
        what = ("a folder" if os.path.isdir(X) else "one path" if os.path.exists(X)
                else "a single string")
        raise ValueError(
            f"X is {what} ({os.fspath(X)!r}); pass a list of image paths (for a folder of "
            "class sub-folders: repens_sklearn.load_image_folder(folder)), or [X] for one image"
        )
    if hasattr(X, "dtype") and getattr(X, "ndim", 0) == 1 and getattr(X.dtype, "kind", "O") in "OUS":
        values = list(X.tolist() if hasattr(X, "tolist") else X)
        if values and isinstance(values[0], (str, os.PathLike)) or _is_pil(values[0] if values else None):
            return values
    return X


def _check_not_one_dimensional(X, ndim):
    if ndim == 1:
        raise ValueError(
            f"X is 1-D (shape {np.shape(X)}); pass a 2-D array (n_samples, n_features), "
            "an image array (N, H, W), (N, H, W, C) or (N, C, H, W), or a list of image paths "
            "(Reshape your data with X.reshape(1, -1) if it is one vector sample)"
        )


def _check_channels(estimator, arr):
    """At transform, name a channel or size mismatch (scikit-learn would say 'features')."""
    fitted = getattr(estimator, "input_shape_", None)
    if fitted is None or len(fitted) != 3:
        return
    shape = tuple(_to_nchw(arr[:1]).shape[1:])
    if shape[0] != fitted[0]:
        raise ValueError(
            f"X has images with {shape[0]} channel(s), but {type(estimator).__name__} was "
            f"fitted on images with {fitted[0]}"
        )
    _check_same_shape(estimator, Inputs(sample_shape=shape))


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
    _check_not_one_dimensional(X, ndim)
    if ndim >= 3:
        arr = np.asarray(X)
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32, copy=False)
        if not reset:
            _check_channels(estimator, arr)
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
        channels = 1 if first.mode in GREY_MODES else 3
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


def _load_image(source, sample_shape, index, loader=None) -> np.ndarray:
    from PIL import Image

    channels, height, width = sample_shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    image = _to_mode(_open_image(source, index), mode)
    if loader is not None:
        image = loader.load_image(image)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[None] if channels == 1 else np.moveaxis(arr, -1, 0)


def _to_mode(image, mode):
    """``image.convert(mode)``, with 16-bit grey scaled to 8 bits (PIL would clip it)."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        from PIL import Image

        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 65535 -> 255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    return image.convert(mode)


def _resize(tensor, sample_shape):
    return torch.nn.functional.interpolate(
        tensor, size=tuple(sample_shape[1:]), mode="bilinear", align_corners=False, antialias=True
    )
