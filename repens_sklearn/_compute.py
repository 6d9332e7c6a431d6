"""Where and how the torch work is computed: device, precision, generators, the embedding loop.

Device choice (``"auto"``), the ``precision`` parameter and its autocast, seeded
``torch.Generator`` objects, inference-time module settings and the batched loop
that embeds an input set (:func:`embed_inputs`).
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np
import torch
from sklearn.utils import check_random_state

#: The values of the estimators' ``precision`` parameter.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Environment variable that decides what ``precision="auto"`` means in this process and
#: its workers: ``float32`` or ``bfloat16`` (unset or ``auto``: the device decides).
PRECISION_ENV = "REPENS_SKLEARN_PRECISION"
# /proc/cpuinfo flags of CPUs that compute bf16 dot products natively: AVX512-BF16
# (Cooper Lake, Zen 4+), AMX (Sapphire Rapids+) and Arm's BF16 extension.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise a valid torch device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return resolved


def seed_from(random_state) -> int:
    """A 31-bit integer seed drawn from a scikit-learn ``random_state``."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def make_generator(seed: int, device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


def cpu_flags(path="/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as the kernel lists them; empty when they cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):  # x86, Arm
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16, AMX or Arm BF16), detected.

    The flags are read, not assumed: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
    is also true on AVX-512 CPUs that only emulate bf16 (slower than float32), so it
    is required as well but does not decide alone. Unknown flags (no
    ``/proc/cpuinfo``) count as no native bf16.
    """
    if not _NATIVE_BF16_FLAGS & cpu_flags():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA: Ampere or newer)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.4 has no including_emulation; it never counted emulation
            return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(precision, device, *, training=False) -> torch.dtype:
    """The autocast dtype of ``precision`` on ``device``: ``torch.float32`` or ``torch.bfloat16``.

    ``"auto"``: what the environment variable ``REPENS_SKLEARN_PRECISION`` names
    when it is ``float32`` or ``bfloat16``; otherwise bfloat16 on CUDA devices that
    compute it natively (:func:`native_bf16`), else float32. CPUs stay float32 under
    ``"auto"`` even with AVX512-BF16 / AMX: there bf16 is 3.5-4x faster but moved
    ImageNet EfficientNet-Lite0 embeddings to cosine 0.985 of float32 and cost
    about 1 point of kNN accuracy (``docs/benchmarks.md``, bench_peers), so it is
    an opt-in (``"bfloat16"``, or the environment variable).
    ``"float32"`` and ``"bfloat16"`` force it.

    Examples
    --------
    >>> resolve_precision("float32", "cpu")
    torch.float32
    >>> resolve_precision("fp16", "cpu")
    Traceback (most recent call last):
    ...
    ValueError: precision must be one of 'auto', 'float32', 'bfloat16'; got 'fp16'
    """
    _check_precision(precision, "precision")
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV) or "auto"
        _check_precision(precision, f"the environment variable {PRECISION_ENV}")
    if precision == "auto":
        device = torch.device(device)
        # CPU bf16 is opt-in: its accuracy cost on pretrained networks exceeds what a
        # default may silently give up (see the docstring).
        return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def _check_precision(value, what):
    if value not in PRECISIONS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, PRECISIONS))}; got {value!r}")


def autocast(device, dtype=None):
    """Autocast to ``dtype`` on ``device``; a no-op for float32.

    ``dtype=None`` is the library's former rule: bfloat16 on CUDA, float32 on CPU.
    """
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == torch.float32 or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def prefers_channels_last(module, dtype) -> bool:
    """Whether ``module`` is to run channels_last: bfloat16 with 2-D convolutions.

    oneDNN's and cuDNN's bf16 convolutions are fastest on NHWC. Float32 keeps the
    default layout, so its embeddings stay bit for bit what they were.
    """
    return dtype == torch.bfloat16 and any(
        isinstance(layer, torch.nn.Conv2d) for layer in module.modules()
    )


@contextlib.contextmanager
def fast_inference(module, device, dtype):
    """Run the body with ``module`` set up for ``dtype`` inference, restored afterwards.

    Yields ``forward(x) -> float32 tensor``: under autocast to ``dtype``, 4-D
    inputs and the module's weights channels_last where
    :func:`prefers_channels_last`; the module's memory format is restored after.
    """
    channels_last = prefers_channels_last(module, dtype)
    formats = {}
    if channels_last:
        formats = {
            name: p.is_contiguous(memory_format=torch.channels_last)
            for name, p in module.named_parameters()
            if p.dim() == 4
        }
        with _normal_tensors():
            module.to(memory_format=torch.channels_last)

    def forward(x):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            return module(x).float()

    try:
        yield forward
    finally:
        if channels_last:
            _restore_formats(module, formats)


@contextlib.contextmanager
def _normal_tensors():
    """No autograd and no inference tensors: weights made here can still be trained."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _restore_formats(module, formats):
    """Put back the contiguous layout of the 4-D weights that did not have channels_last."""
    with _normal_tensors():
        for name, param in module.named_parameters():
            if formats.get(name) is False:
                param.data = param.data.contiguous()


@torch.inference_mode()
def embed_inputs(
    module,
    inputs,
    *,
    batch_size=256,
    device="cpu",
    verbose=False,
    desc="embedding",
    num_workers=0,
    preprocessor=None,
    dtype=None,
):
    """Embed every sample of ``inputs`` with ``module`` in eval mode; ``(N, D)`` float32 numpy.

    Batches are streamed to ``device`` (image files decoded by ``num_workers``
    processes), go through ``preprocessor`` (a pretrained backbone's
    :class:`~repens_sklearn._preprocess.ImagePreprocessor`) when given, and run
    under :func:`fast_inference` for ``dtype`` (None: :func:`autocast`'s former
    rule); the module's train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with fast_inference(module, device, dtype) as forward:
            batches = inputs.iter_batches(batch_size, device, num_workers)
            total = -(-inputs.n_samples // batch_size)
            for _, batch in tqdm(batches, total=total, desc=desc, disable=not verbose, leave=False):
                if preprocessor is not None:
                    batch = preprocessor(batch)
                chunks.append(forward(batch).reshape(len(batch), -1).cpu())
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)
