"""What identifies a result: the one fingerprint behind checkpoints, caches and resumed jobs.

A reused result (an EnSiam checkpoint, a ``memory=`` cache entry, a chunk of an
interrupted ``embed_files`` job) is only right when everything it was computed
from is the same. :func:`fingerprint` hashes all of it, streaming:

- arrays and tensors: every byte (plus dtype and shape), not a sample of rows;
- ``torch.nn.Module``: its class, structure and the values of its state dict
  (weights and buffers), so two modules of one architecture differ;
- estimators: class, parameters and fitted state (a skorch net by its module's
  weights), recursively, so a fitted backbone counts by its weights;
- a string or path naming an existing file: the file's identity, its resolved
  path, size and modification time (``st_mtime_ns``); a file named in an
  estimator's *parameters* (a weights file) also by a hash of its content;
- functions: module, name, code and captured values; other objects through
  :func:`joblib.hash`.

An object none of these can hash makes the fingerprint inexact
(:attr:`Fingerprint.exact` is False): a cache then computes afresh rather than
trust a key that might miss a difference.

What identifies a *run* (a resumed EnSiam checkpoint, a resumed ``embed_files`` job)
is decided here too: :data:`RUNTIME_PARAMS` lists the parameters that never change
a result, :func:`run_identity` records the others, :func:`run_differences` words a
mismatch the same way for every kind of run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass

import numpy as np

_BLOCK = 1 << 24  # bytes hashed at a time: big arrays and files stream
_VERSION = 1  # bump when the hashing changes: old keys must not match new ones


@dataclass(frozen=True)
class Fingerprint:
    """A hex digest and whether every part of the objects could be hashed exactly."""

    hexdigest: str
    exact: bool

    def __str__(self):
        return self.hexdigest


def fingerprint(*objects, ignore_params=(), files="stat") -> Fingerprint:
    """The fingerprint of ``objects``: equal exactly when they compute the same result.

    Parameters
    ----------
    *objects : any
        Data (arrays, tensors, lists of image paths, PIL images, data frames),
        modules, estimators, parameters.
    ignore_params : sequence of str, default=()
        Estimator parameters left out at every depth (runtime settings such as
        ``device`` or ``n_jobs`` that change where a result is computed, not what).
    files : {"stat", "content"} or None, default="stat"
        How a string naming an existing file counts: ``"stat"`` by resolved
        path, size and ``st_mtime_ns``; ``"content"`` also by a hash of its bytes;
        None as the string alone. Files named in estimator parameters are always
        hashed by content.

    Returns
    -------
    Fingerprint
        ``str()`` of it is the hex digest.
    """
    hasher = _Hasher(tuple(ignore_params), files)
    hasher.token("repens-fingerprint", _VERSION)
    for obj in objects:
        hasher.add(obj)
    return Fingerprint(hasher.digest.hexdigest(), hasher.exact)


def file_identity(path, content=False):
    """``(resolved path, size, st_mtime_ns[, blake2b of the bytes])`` of an existing file."""
    path = os.fspath(path)
    stat = os.stat(path)
    identity = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if not content:
        return identity
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return (*identity, digest.hexdigest())


def _names_a_file(text):
    # Only strings that look like paths are looked up: labels ("cat") and registered
    # names ("mlp") cost no system call.
    if not text or ("/" not in text and os.sep not in text and "." not in text):
        return False
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):
        return False


class _Hasher:
    """Feeds tagged tokens and raw bytes of an object tree into one blake2b digest."""

    def __init__(self, ignore_params, files):
        self.digest = hashlib.blake2b(digest_size=20)
        self.ignore_params = ignore_params
        self.files = files
        self.exact = True
        self._params_depth = 0
        self._active = set()  # ids on the current path: a cycle is hashed once

    def token(self, *parts):
        self.digest.update(repr(parts).encode("utf-8", "surrogateescape") + b"\0")

    def add(self, obj):
        if isinstance(obj, (str, os.PathLike)):
            self._add_path_or_text(obj)
        elif obj is None or isinstance(obj, (bool, int, float, complex, np.generic)):
            self.token(type(obj).__name__, repr(obj))
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.token("bytes", len(obj))
            self.digest.update(obj)
        elif id(obj) in self._active:
            self.token("cycle", type(obj).__qualname__)
        else:
            self._active.add(id(obj))
            try:
                self._add_object(obj)
            finally:
                self._active.discard(id(obj))

    def _add_object(self, obj):
        torch = _torch()
        if isinstance(obj, np.ndarray):
            self._add_array(obj)
        elif torch is not None and isinstance(obj, torch.Tensor):
            self._add_tensor(obj)
        elif torch is not None and isinstance(obj, torch.nn.Module):
            self._add_module(obj)
        elif isinstance(obj, dict):
            self.token("dict", type(obj).__qualname__, len(obj))
            for key, value in sorted(obj.items(), key=lambda kv: repr(kv[0])):
                self.add(key)
                self.add(value)
        elif isinstance(obj, (list, tuple)):
            self.token(type(obj).__qualname__, len(obj))
            for item in obj:
                self.add(item)
        elif isinstance(obj, (set, frozenset)):
            self.token(type(obj).__qualname__, len(obj))
            for item in sorted(obj, key=repr):
                self.add(item)
        elif _is_pil_image(obj):
            self._add_pil(obj)
        elif _is_skorch_net(obj):  # what it computes: its modules' weights
            self.token("skorch", type(obj).__qualname__)
            self.add(getattr(obj, "module_", None))
        elif hasattr(obj, "get_params") and not isinstance(obj, type):
            self._add_estimator(obj)
        elif inspect.ismethod(obj):  # a bound method computes with its object's state
            self.token("method")
            self.add(obj.__self__)
            self._add_function(obj.__func__)
        elif _is_plain_function(obj):
            self._add_function(obj)
        else:
            self._add_other(obj)

    def _add_path_or_text(self, obj):
        text = os.fspath(obj)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        in_params = self._params_depth > 0
        if (self.files or in_params) and _names_a_file(text):
            try:
                self.token(
                    "file", *file_identity(text, content=in_params or self.files == "content")
                )
                return
            except OSError:
                pass  # gone meanwhile: the name alone
        self.token("str", text)

    def _add_array(self, arr):
        if arr.dtype.hasobject or (arr.dtype.kind == "U" and self.files):  # maybe paths
            self.token("object-array", arr.dtype.kind, arr.shape)
            for item in arr.reshape(-1):
                self.add(item)
            return
        self.token("ndarray", arr.dtype.str, arr.dtype.descr, arr.shape)
        if arr.ndim == 0 or arr.size == 0:
            self.digest.update(np.ascontiguousarray(arr).tobytes())
            return
        rows = max(1, _BLOCK // max(1, arr[0].nbytes))
        for start in range(0, arr.shape[0], rows):  # no copy of the whole array
            block = np.ascontiguousarray(arr[start : start + rows])
            self.digest.update(block.reshape(-1).view(np.uint8))

    def _add_tensor(self, tensor):
        tensor = tensor.detach()
        self.token("tensor", str(tensor.dtype), tuple(tensor.shape), tensor.layout)
        torch = _torch()
        tensor = tensor.to_dense() if tensor.layout != torch.strided else tensor
        flat = tensor.cpu().contiguous().reshape(-1)
        self.digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")

    def _add_module(self, module):
        cls = type(module)
        self.token("module", cls.__module__, cls.__qualname__, _stable_repr(module))
        self.add(getattr(module, "pretrained_cfg", None))
        state = dict(module.state_dict())
        # non-persistent buffers are left out of state_dict but change the outputs
        state.update({k: v for k, v in module.named_buffers() if k not in state})
        for name, value in state.items():
            self.token("state", name)
            self.add(value)

    def _add_estimator(self, est):
        cls = type(est)
        self.token("estimator", cls.__module__, cls.__qualname__)
        try:
            params = est.get_params(deep=False)
        except Exception:  # not scikit-learn's get_params
            params = None
        if isinstance(params, dict):
            names = set(params)
            params = {k: v for k, v in params.items() if k not in self.ignore_params}
            self._params_depth += 1
            try:
                self.add(params)
            finally:
                self._params_depth -= 1
        else:
            self._add_other(est)
            return
        # Fitted state: every attribute that is not a parameter (public ``x_`` and private
        # ``_x`` alike: KNeighborsTransformer keeps its data in ``_fit_X``).
        state = (
            {k: v for k, v in vars(est).items() if k not in names}
            if hasattr(est, "__dict__")
            else {}
        )
        self.add(state)

    def _add_function(self, fn):
        self.token("function", fn.__module__, fn.__qualname__)
        self._add_code(fn.__code__)
        self.add(fn.__defaults__)
        self.add(fn.__kwdefaults__)
        self.add([cell.cell_contents for cell in (fn.__closure__ or ()) if _cell_has_value(cell)])

    def _add_code(self, code):
        """Bytecode, names and constants, recursing into nested functions' code."""
        self.token("code", code.co_code, code.co_names, code.co_varnames)
        for const in code.co_consts:
            if _is_code(const):
                self._add_code(const)
            else:
                self.add(const)

    def _add_other(self, obj):
        import joblib

        try:
            self.token("joblib", type(obj).__qualname__, joblib.hash(obj))
        except Exception:  # unpicklable: a key without it could miss a difference
            self.token("unhashable", type(obj).__module__, type(obj).__qualname__)
            self.exact = False

    def _add_pil(self, image):
        orientation = image.getexif().get(0x0112) if hasattr(image, "getexif") else None
        self.token("pil", image.mode, image.size, orientation)
        self.digest.update(image.tobytes())


def _torch():
    import sys

    return sys.modules.get("torch")  # an object of torch exists only if torch is imported


def _is_pil_image(obj):
    import sys

    image = sys.modules.get("PIL.Image")
    return image is not None and isinstance(obj, image.Image)


def _is_skorch_net(obj):
    torch = _torch()
    return (
        hasattr(obj, "initialized_")
        and torch is not None
        and isinstance(getattr(obj, "module_", None), torch.nn.Module)
    )


def _is_plain_function(obj):
    return callable(obj) and hasattr(obj, "__code__") and hasattr(obj, "__qualname__")


def _is_code(obj):
    return type(obj).__name__ == "code"


def _cell_has_value(cell):
    try:
        _ = cell.cell_contents  # reading an empty cell raises
    except ValueError:  # an empty cell
        return False
    return True


def _stable_repr(value):
    """``repr`` without memory addresses, so it compares equal in a new process."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


# ------------------------------------------------------------------- caches
class KeyedCache:
    """``memory.cache(fn)`` keyed on :func:`fingerprint` of the arguments.

    joblib's own key hashes path strings as strings; this key holds the identity
    of every file the arguments name (image files in X, weights files in the
    parameters) and the weights of modules, so an overwritten file or another
    module is a cache miss; so is a process where ``precision="auto"`` computes in
    another arithmetic (:func:`~repens_sklearn._compute.precision_context`).
    Arguments that cannot be fingerprinted exactly are never looked up: ``fn``
    runs uncached. Picklable, for joblib workers.

    Parameters
    ----------
    memory : None, str or joblib.Memory
        As scikit-learn's ``memory=`` parameters (:func:`sklearn.utils.validation.check_memory`).
    fn : callable
        A module-level function.
    """

    def __init__(self, memory, fn):
        from sklearn.utils.validation import check_memory

        self.memory = check_memory(memory)
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if getattr(self.memory, "location", True) is None:  # no cache: no hashing either
            return self.fn(*args, **kwargs)
        from . import __version__
        from ._compute import precision_context

        key = fingerprint(__version__, precision_context(), self.fn, args, kwargs)
        if not key.exact:
            return self.fn(*args, **kwargs)
        try:
            cached = self.memory.cache(_call_by_key, ignore=["fn", "args", "kwargs"])
        except TypeError:  # a memory-like object without joblib's ``ignore``
            cached = self.memory.cache(_call_by_key)
        return cached(key.hexdigest, self.fn, args, kwargs)


def _call_by_key(key, fn, args, kwargs):
    """``fn(*args, **kwargs)``; cached by ``key`` alone (module-level for joblib.Memory)."""
    return fn(*args, **kwargs)


# ------------------------------------------------------------------ run identity
# Parameters that change where, how fast or how visibly a result is computed, or where it is
# saved, never what it is. A resumed run may set them differently from the interrupted one (at
# any depth of nested estimators). Batch sizes are not among them: with random augmentation or
# training they change the result. Callbacks observe a run (progress, logging).
RUNTIME_PARAMS = (
    "callbacks",
    "checkpoint_dir",
    "device",
    "memory",
    "n_jobs",
    "num_workers",
    "verbose",
)
_MAX_VALUE_CHARS = 200  # longer values are identified by fingerprint alone


def run_fingerprint(estimator) -> Fingerprint:
    """The fingerprint of an estimator's results: all of it but :data:`RUNTIME_PARAMS`."""
    return fingerprint(estimator, ignore_params=RUNTIME_PARAMS)


def run_identity(estimator, **context) -> dict:
    """What identifies a run of ``estimator``, JSON-ready, for :func:`run_differences`.

    Parameters
    ----------
    estimator : estimator
        Its parameters count, except :data:`RUNTIME_PARAMS`.
    **context : any
        What else the run depends on (its seed, its data). A :class:`Fingerprint`
        (of the data, say) is taken as it is.

    Returns
    -------
    dict
        ``name -> {"fingerprint": hex[, "value": plain value]}``. The fingerprint
        decides (a module by its weights, a file named in a parameter by its
        content, runtime parameters of nested estimators left out); the value,
        kept when JSON holds it in a few characters, only words the message.
    """
    params = {
        name: value
        for name, value in estimator.get_params(deep=False).items()
        if name not in RUNTIME_PARAMS
    }
    return {name: _identity_entry(value) for name, value in sorted({**params, **context}.items())}


def run_differences(saved, current) -> str:
    """``""`` when two :func:`run_identity` records match, else what differs.

    The one wording of every refused resume, e.g. ``"different batch_size (it used
    16, this call 4), different backbone"``.
    """
    changed = []
    for name in sorted(set(saved) | set(current)):
        old, new = saved.get(name) or {}, current.get(name) or {}
        if old.get("fingerprint") == new.get("fingerprint"):
            continue
        if "value" in old and "value" in new and old["value"] != new["value"]:
            changed.append(
                f"different {name} (it used {old['value']!r}, this call {new['value']!r})"
            )
        else:
            changed.append(f"different {name}")
    return ", ".join(changed)


def _identity_entry(value):
    if isinstance(value, Fingerprint):
        return {"fingerprint": value.hexdigest}
    entry = {"fingerprint": str(fingerprint(value, files="content", ignore_params=RUNTIME_PARAMS))}
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # objects: by fingerprint alone
        return entry
    if len(text) <= _MAX_VALUE_CHARS:
        entry["value"] = json.loads(text)
    return entry
