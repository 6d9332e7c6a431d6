"""Turn X into validated samples and stream them as batches of tensors on a device.

Accepted X:
- 2-D arrays: vectors, or flattened images when ``input_shape=(C, H, W)`` (uint8
  then scaled to [0, 1] as for image arrays);
- 3-D / 4-D image arrays ``(N, H, W)``, ``(N, H, W, C)``, ``(N, C, H, W)``, uint8
  (scaled to [0, 1]) or float (taken as they are; a pretrained backbone warns
  when they are not [0, 1] pixels). The channel axis is the one of axes 1 and 3
  of size 1, 3 or 4; when both are, ``input_shape`` (or the shape seen in fit)
  must say which, and a 3-D array that looks like one ``(H, W, C)`` image is
  refused. At transform X must come in the layout it had in fit;
- lists of image paths or PIL images, decoded batch by batch by
  :mod:`repens_sklearn._images` (as a viewer shows them), converted to the
  channel count and resized to ``input_shape`` (default: the size most of them
  have, :func:`~repens_sklearn._images.common_input_shape`).

Image files are decoded in DataLoader worker processes with ``num_workers > 0``
(:class:`InputsLoader`), inside joblib workers too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from ._compat import _num_samples
from ._images import CHANNEL_COUNTS, check_sources, default_input_shape, is_pil, load_image
from ._warnings import warn
from .exceptions import InputRangeWarning


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
            return torch.from_numpy(
                np.stack(
                    [
                        load_image(self.sources[i], self.sample_shape, i, self.loader)
                        for i in indices
                    ]
                )
            )
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
        loader = make_loader(
            InputsDataset(self), batch_size, num_workers=num_workers, device=device
        )
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


def make_loader(dataset, batch_size, *, num_workers=0, device="cpu", shuffle=False, generator=None):
    """An :class:`InputsLoader` over :class:`InputsDataset` that keeps its batches as they are."""
    workers = {"persistent_workers": False, "prefetch_factor": 2} if num_workers else {}
    return InputsLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=keep_batch,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        **workers,
    )


class InputsLoader(torch.utils.data.DataLoader):
    """torch's ``DataLoader``, with worker processes that start anywhere and say what failed.

    With ``num_workers > 0``:

    - inside a joblib worker (``GridSearchCV(n_jobs=2)``, ``embed_files(n_jobs=2)``)
      the default start method is loky's, which ``DataLoader`` cannot start
      processes with; :func:`worker_context` gives it the platform's standard one;
    - an error in a worker (an image that cannot be decoded) is raised in the main
      process as itself, its own message first, with the worker's traceback as a
      note (torch would raise ``"Caught ValueError in DataLoader worker process 0."``).

    It takes the arguments of ``DataLoader`` and can be skorch's ``iterator_train``
    / ``iterator_valid``. With ``num_workers=0`` it is a plain ``DataLoader``.
    """

    def __init__(self, dataset, *args, num_workers=0, multiprocessing_context=None, **kwargs):
        wrap = bool(num_workers) and not isinstance(dataset, torch.utils.data.IterableDataset)
        if num_workers and multiprocessing_context is None:
            multiprocessing_context = worker_context()
        super().__init__(
            _ErrorsAsData(dataset) if wrap else dataset,
            *args,
            num_workers=num_workers,
            multiprocessing_context=multiprocessing_context,
            **kwargs,
        )
        if wrap:
            self.collate_fn = _PassErrors(self.collate_fn)

    def __iter__(self):
        batches = super().__iter__()
        return _raise_worker_errors(batches) if isinstance(self.dataset, _ErrorsAsData) else batches


def worker_context():
    """The multiprocessing context for DataLoader workers; None for torch's default.

    A joblib (loky) worker process sets loky's start method as the default, which
    ``DataLoader`` cannot start its workers with (``'Process' object has no
    attribute 'env'``); there the platform's default start method (``fork`` on
    Linux, ``spawn`` on macOS and Windows) is used. Elsewhere nothing changes.
    """
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    standard = multiprocessing.get_all_start_methods()
    if method is None or method in standard:
        return None
    return multiprocessing.get_context(standard[0])


class _WorkerError:
    """An exception raised in a DataLoader worker, sent to the main process as a batch."""

    def __init__(self, exc):
        import pickle
        import traceback

        try:
            pickle.dumps(exc)
        except Exception:  # an exception that cannot travel: its type and message do
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        info = torch.utils.data.get_worker_info()
        self.exc, self.worker = exc, None if info is None else info.id
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self):
        if hasattr(self.exc, "add_note"):  # Python 3.11+
            self.exc.add_note(
                f"(raised in DataLoader worker process {self.worker}; its "
                f"traceback:\n{self.traceback.rstrip()})"
            )
        raise self.exc


class _ErrorsAsData(torch.utils.data.Dataset):
    """A map-style dataset whose errors come back as :class:`_WorkerError` batches."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as exc:
            return _WorkerError(exc)

    def __getitems__(self, indices):
        try:
            if getattr(self.dataset, "__getitems__", None):
                return self.dataset.__getitems__(indices)
            return [self.dataset[i] for i in indices]
        except Exception as exc:
            return _WorkerError(exc)


class _PassErrors:
    """A ``collate_fn`` that passes :class:`_WorkerError` through, else calls ``collate_fn``."""

    def __init__(self, collate_fn):
        self.collate_fn = collate_fn

    def __call__(self, data):
        if isinstance(data, _WorkerError):
            return data
        if isinstance(data, list):
            error = next((item for item in data if isinstance(item, _WorkerError)), None)
            if error is not None:
                return error
        return self.collate_fn(data)


def _raise_worker_errors(batches):
    """Yield the batches of a DataLoader iterator; a :class:`_WorkerError` is raised."""
    error = None
    for batch in batches:
        if isinstance(batch, _WorkerError):
            error = batch
            break
        yield batch
    if error is not None:
        batches = None  # the last reference: its workers shut down before the error unwinds
        error.reraise()


# A float image slightly outside [0, 1] (a resize's overshoot, say) is still [0, 1] pixels.
_UNIT_RANGE_SLACK = 0.05


def check_unit_range(inputs, backbone_name):
    """Warn when float image arrays for a pretrained backbone are not [0, 1] pixels.

    Its ``pretrained_cfg`` mean and std apply to [0, 1] pixels: [0, 255] floats or
    already-normalized images would be embedded far from where they belong
    (:class:`~repens_sklearn.exceptions.InputRangeWarning`). uint8 arrays are scaled
    and image files decoded as [0, 1], so only float arrays are looked at.
    """
    arr = inputs.array
    if arr is None or arr.dtype == np.uint8 or arr.size == 0:
        return
    low, high = float(arr.min()), float(arr.max())
    if low >= -_UNIT_RANGE_SLACK and high <= 1 + _UNIT_RANGE_SLACK:
        return
    if low >= -_UNIT_RANGE_SLACK and high <= 255 + _UNIT_RANGE_SLACK:
        advice = "if they are [0, 255] pixels, divide X by 255 or pass it as uint8"
    else:
        advice = (
            "if X is already normalized for this backbone (and at its input size), "
            "pass preprocess=False"
        )
    warn(
        f"X holds float images with values in [{low:.4g}, {high:.4g}], but backbone "
        f"{backbone_name!r} is pretrained on [0, 1] images (its pretrained_cfg mean and std "
        f"are applied to [0, 1] pixels): {advice}",
        InputRangeWarning,
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


def check_classification_y(estimator, y, n_samples):
    """Class labels ``y`` for ``n_samples`` samples: ``(y, classes, y_idx)``, or raise.

    The one check of a classifier's (or selector's) ``y``: given, 1-D, one
    label per sample, discrete, of one type (strings and numbers never mix)
    and at least two classes. ``y_idx`` indexes ``classes`` (``np.unique``).
    """
    owner = type(estimator).__name__
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    if len(y) != n_samples:
        raise ValueError(f"X holds {n_samples} samples but y holds {len(y)} labels")
    if y.dtype == object and len({isinstance(v, str) for v in y}) > 1:
        raise ValueError(f"y mixes string and number labels; {owner} needs one type of label")
    check_classification_targets(y)
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{owner} needs at least 2 classes in y; got 1 class ({classes[0]!r})")
    return y, classes, y_idx.reshape(-1)


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
        inputs = _image_list_inputs(X, input_shape, loader)
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
        what = (
            "a folder"
            if os.path.isdir(X)
            else "one path"
            if os.path.exists(X)
            else "a single string"
        )
        raise ValueError(
            f"X is {what} ({os.fspath(X)!r}); pass a list of image paths (for a folder of "
            "class sub-folders: repens_sklearn.load_image_folder(folder)), or [X] for one image"
        )
    kind = getattr(getattr(X, "dtype", None), "kind", "O")
    if hasattr(X, "dtype") and getattr(X, "ndim", 0) == 1 and kind in "OUS":
        values = list(X.tolist() if hasattr(X, "tolist") else X)
        first = values[0] if values else None
        if values and isinstance(first, (str, os.PathLike)) or is_pil(first):
            return values
    return X


def _check_not_one_dimensional(X, ndim):
    if ndim == 1:
        raise ValueError(
            f"X is 1-D (shape {np.shape(X)}); pass a 2-D array (n_samples, n_features), "
            "an image array (N, H, W), (N, H, W, C) or (N, C, H, W), or a list of image paths "
            "(Reshape your data with X.reshape(1, -1) if it is one vector sample)"
        )


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
    return isinstance(first, (str, os.PathLike)) or is_pil(first)


def _array_inputs(estimator, X, input_shape, reset) -> Inputs:
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is empty: it holds 0 samples")
        _check_not_ragged(X)
    # scikit-learn's _NotAnArray refuses np.ndim; asarray goes through __array__.
    ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
    _check_not_one_dimensional(X, ndim)
    layout = None
    if ndim >= 3:
        arr = np.asarray(X)
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32, copy=False)
        _check_finite(arr)
        hint = input_shape or (None if reset else getattr(estimator, "input_shape_", None))
        layout = image_layout(arr.shape, hint)
        if not reset:
            _check_fitted_layout(estimator, arr.shape, layout)
    else:
        arr = X
        _check_finite(arr)
    # uint8 images are pixel values, scaled to [0, 1] per batch, whether given as image
    # arrays or flattened with input_shape; a 2-D uint8 array of vectors stays numeric.
    is_images = ndim >= 3 or input_shape is not None
    dtype = np.uint8 if getattr(arr, "dtype", None) == np.uint8 and is_images else np.float32
    arr = validate_data(
        estimator, arr, reset=reset, dtype=dtype, allow_nd=True, ensure_all_finite=True
    )
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
        arr = _to_nchw(arr, layout)
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


# Image array layouts: the name shown to users, and where (C, H, W) sit in X.shape[1:].
_LAYOUTS = {
    "NCHW": ("(N, C, H, W)", (0, 1, 2)),
    "NHWC": ("(N, H, W, C)", (2, 0, 1)),
    "NHW": ("(N, H, W)", None),
}
# How to turn X from one layout into another, for error messages.
_LAYOUT_FIXES = {
    ("NCHW", "NHWC"): "np.moveaxis(X, 1, -1)",
    ("NHWC", "NCHW"): "np.moveaxis(X, -1, 1)",
    ("NHW", "NCHW"): "X[:, None]",
    ("NHW", "NHWC"): "X[..., None]",
    ("NCHW", "NHW"): "X[:, 0]",
    ("NHWC", "NHW"): "X[..., 0]",
}


def _layout_sample_shape(shape, layout) -> tuple:
    """The ``(C, H, W)`` of one image of an array of ``shape`` read in ``layout``."""
    if layout == "NHW":
        return (1, *(int(s) for s in shape[1:]))
    return tuple(int(shape[1:][axis]) for axis in _LAYOUTS[layout][1])


def image_layout(shape, hint=None) -> str:
    """``"NCHW"``, ``"NHWC"`` or ``"NHW"``: how an image array of ``shape`` is laid out.

    The channel axis is the one of axes 1 and 3 whose size is 1, 3 or 4. When
    both are, ``hint`` (an ``input_shape`` asked for, or the one seen in fit)
    decides if it matches one reading only; otherwise the array is refused,
    as is a 3-D array that looks like one ``(H, W, C)`` image without a batch axis.
    """
    if len(shape) == 3:
        _check_not_one_hwc_image(shape, hint)
        return "NHW"
    readings = [
        layout for layout, axis in (("NCHW", 1), ("NHWC", 3)) if shape[axis] in CHANNEL_COUNTS
    ]
    if len(readings) == 1:
        return readings[0]
    if not readings:
        raise ValueError(
            f"cannot tell the channel axis of image array X with shape {tuple(shape)}: "
            f"expected (N, C, H, W) or (N, H, W, C) with C in {CHANNEL_COUNTS}"
        )
    return _resolve_ambiguous_layout(shape, hint)


def _resolve_ambiguous_layout(shape, hint):
    """Pick the reading that ``hint`` (C, H, W) names, by its shape, else by its channels."""
    shapes = {layout: _layout_sample_shape(shape, layout) for layout in ("NCHW", "NHWC")}
    if hint is not None:
        for key in (tuple(hint), tuple(hint)[:1]):
            matching = [lay for lay, s in shapes.items() if s[: len(key)] == key]
            if len(matching) == 1:
                return matching[0]
    nchw, nhwc = shapes["NCHW"], shapes["NHWC"]
    say = (
        f"pass input_shape={nchw} or input_shape={nhwc} to say which"
        if nchw != nhwc
        else f"pass (N, C, H, W) images as X.reshape(len(X), -1) with input_shape={nchw}"
    )
    raise ValueError(
        f"the layout of image array X with shape {tuple(shape)} is ambiguous: it reads as "
        f"(N, C, H, W) images of shape {nchw} or as (N, H, W, C) images of shape {nhwc}; "
        f"{say}, or move the channel axis (np.moveaxis) so that only one of axes 1 and 3 "
        f"has size {', '.join(map(str, CHANNEL_COUNTS))}"
    )


def _check_not_one_hwc_image(shape, hint):
    """Refuse ``(H, W, C)``, one colour image without a batch axis (read as H grey images)."""
    n, height, width = (int(s) for s in shape)
    if width not in (3, 4) or min(n, height) <= width:
        return
    if hint is not None and tuple(hint) == (1, height, width):
        return
    raise ValueError(
        f"X of shape {tuple(shape)} looks like one (H, W, C) image without a batch axis, "
        f"but 3-D arrays are read as (N, H, W) grey images ({n} images of {height} x {width} "
        f"pixels here): pass X[None] for one image, or input_shape=(1, {height}, {width}) "
        f"if it really holds {n} grey images"
    )


def _check_fitted_layout(estimator, shape, layout):
    """At transform, name a channel, size or layout mismatch (scikit-learn would say 'features')."""
    fitted = getattr(estimator, "input_shape_", None)
    if fitted is None or len(fitted) != 3:
        return
    sample_shape = _layout_sample_shape(shape, layout)
    name = type(estimator).__name__
    if sample_shape[0] != fitted[0]:
        raise ValueError(
            f"X has images with {sample_shape[0]} channel(s), but {name} was "
            f"fitted on images with {fitted[0]}"
        )
    _check_same_shape(estimator, Inputs(sample_shape=sample_shape))
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None or shape[1] == n_features:
        return
    fitted_layouts = [
        lay
        for lay in ("NCHW", "NHWC", "NHW")
        if lay != layout and _shape_axis_1(fitted, lay) == n_features
    ]
    if fitted_layouts:
        was = " or ".join(_LAYOUTS[lay][0] for lay in fitted_layouts) + " layout"
    elif n_features == math.prod(fitted):
        was = "(N, C*H*W) layout (flattened images with input_shape, or image files)"
    else:
        was = f"another layout (X.shape[1] was {n_features} in fit, here {shape[1]})"
    fix = _LAYOUT_FIXES.get((layout, fitted_layouts[0])) if len(fitted_layouts) == 1 else None
    raise ValueError(
        f"X holds images of shape {sample_shape} in the {_LAYOUTS[layout][0]} layout, but "
        f"{name} was fitted on them in the {was}: pass X in the layout used in fit"
        + (f" ({fix})" if fix else "")
    )


def _shape_axis_1(sample_shape, layout) -> int:
    """``X.shape[1]`` of an array of images of ``sample_shape`` (C, H, W) in ``layout``."""
    channels, height, _ = sample_shape
    if layout == "NHW" and channels != 1:
        return -1  # no such array
    return channels if layout == "NCHW" else height


def _to_nchw(arr, layout):
    """``arr`` as ``(N, C, H, W)``, from the layout :func:`image_layout` found."""
    if layout == "NHW":
        return arr[:, None]
    if layout == "NHWC":
        return np.ascontiguousarray(np.moveaxis(arr, -1, 1))
    return arr


def _image_list_inputs(X, input_shape, loader=None) -> Inputs:
    """Image sources at ``input_shape``; by default the size most of them have (their headers).

    With a ``loader`` (a pretrained backbone's) the images are read at its
    ``input_size``, so no header is read here.
    """
    check_sources(X)
    if input_shape is not None and input_shape[0] not in CHANNEL_COUNTS:
        raise ValueError(f"input_shape={input_shape} for image files needs C in {CHANNEL_COUNTS}")
    if input_shape is None and loader is None:
        input_shape = default_input_shape(X)
    return Inputs(sample_shape=input_shape, sources=list(X)).with_loader(loader)


def _resize(tensor, sample_shape):
    return torch.nn.functional.interpolate(
        tensor, size=tuple(sample_shape[1:]), mode="bilinear", align_corners=False, antialias=True
    )
