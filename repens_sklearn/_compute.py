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
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: Environment variable that decides what ``precision="auto"`` means in this process and
#: its workers: ``float32``, ``bfloat16`` or ``float16`` (unset or ``auto``: the device and
#: the agreement check decide).
PRECISION_ENV = "REPENS_SKLEARN_PRECISION"
#: ``precision="auto"`` keeps bfloat16 only where every embedding of the check batch has
#: at least this cosine to its float32 embedding (the bar of issue #24).
AUTO_MIN_COSINE = 0.999
#: Samples of the fit data the agreement check of ``precision="auto"`` runs on.
AUTO_CHECK_SAMPLES = 16
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
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


def requested_precision(precision) -> str:
    """``precision`` checked, with ``"auto"`` replaced by ``REPENS_SKLEARN_PRECISION`` if set."""
    _check_precision(precision, "precision")
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV) or "auto"
        _check_precision(precision, f"the environment variable {PRECISION_ENV}")
    return precision


def resolve_precision(precision, device, *, training=False) -> torch.dtype:
    """The autocast dtype of ``precision`` on ``device`` before any agreement check.

    ``"float32"``, ``"bfloat16"`` and ``"float16"`` force it; ``"auto"`` is what
    ``REPENS_SKLEARN_PRECISION`` names when set, else bfloat16 on CUDA devices
    that compute it natively and float32 elsewhere. This is the rule for training
    (bf16 training on CPUs is not validated) and for estimators fitted before
    :func:`choose_precision` existed; inference after ``fit`` follows
    :func:`choose_precision`, which also gives CPUs with native bf16 their bf16.

    Examples
    --------
    >>> resolve_precision("float32", "cpu")
    torch.float32
    >>> resolve_precision("fp16", "cpu")
    Traceback (most recent call last):
    ...
    ValueError: precision must be one of 'auto', 'float32', 'bfloat16', 'float16'; got 'fp16'
    """
    precision = requested_precision(precision)
    if precision == "auto":
        device = torch.device(device)
        return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else torch.float32
    return _DTYPES[precision]


def _check_precision(value, what):
    if value not in PRECISIONS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, PRECISIONS))}; got {value!r}")


def choose_precision(precision, module, make_batch, device) -> tuple[str, float]:
    """The inference precision of a fitted ``module``: ``(name, bf16 agreement)``.

    ``"auto"`` (without ``REPENS_SKLEARN_PRECISION``) is bfloat16 where the device
    computes it natively (CUDA from Ampere on; CPUs with AVX512-BF16 / AMX, read
    from the CPU's flags) *and* this module's bf16 outputs for ``make_batch()`` (a
    few samples of the fit data, as the network sees them) all have a cosine of at
    least :data:`AUTO_MIN_COSINE` to its float32 outputs; float32 otherwise. The
    check is what makes bf16 a safe default: timm ResNet-18 / ResNet-50 /
    ConvNeXt-nano keep 0.99998 or more and run 3-4x faster on an AMX CPU, while
    ImageNet EfficientNet-Lite0/1/2 fall to 0.95-0.98 and up to a point of kNN
    accuracy (``docs/benchmarks.md``, bench_peers), so they stay float32. The agreement is
    NaN where no check ran (a forced precision, or no native bf16) and -inf where
    the bf16 outputs were not finite or the module failed under bf16 autocast.
    """
    precision = requested_precision(precision)
    if precision != "auto":
        return precision, float("nan")
    if not native_bf16(device):
        return "float32", float("nan")
    batch = make_batch()
    try:
        agreement = reduced_precision_agreement(module, batch, device, torch.bfloat16)
    except (RuntimeError, NotImplementedError, TypeError):
        # an operation without a bf16 kernel: float32, which fit already ran, is the answer
        agreement = float("-inf")
    return ("bfloat16" if agreement >= AUTO_MIN_COSINE else "float32"), agreement


@torch.inference_mode()
def reduced_precision_agreement(module, batch, device, dtype) -> float:
    """Least row cosine between ``module(batch)`` in ``dtype`` and in float32 (-inf: not finite).

    Rows that are zero in both count as agreeing.
    """
    was_training = module.training
    module.eval()
    try:
        reference = module(batch).float().reshape(len(batch), -1)
        with fast_inference(module, device, dtype, recompute_non_finite=False) as forward:
            reduced = forward(batch).reshape(len(batch), -1)
    finally:
        module.train(was_training)
    if not torch.isfinite(reduced).all():
        return float("-inf")
    cosine = torch.nn.functional.cosine_similarity(reduced.double(), reference.double(), dim=1)
    both_zero = (reduced.abs().amax(dim=1) == 0) & (reference.abs().amax(dim=1) == 0)
    return float(torch.where(both_zero, 1.0, cosine).min())


def precision_context() -> tuple:
    """What decides the arithmetic of ``precision="auto"`` in this process, for cache keys.

    ``REPENS_SKLEARN_PRECISION`` and whether the CPU and the CUDA device compute bf16
    natively: a result cached where ``"auto"`` ran bf16 is not one where it ran float32.
    """
    cuda = torch.cuda.is_available() and native_bf16("cuda")
    return (os.environ.get(PRECISION_ENV, ""), cpu_has_native_bf16(), cuda)


def inference_settings(precision, chosen, device, module) -> tuple[torch.dtype, bool]:
    """``(autocast dtype, channels_last)`` of a fitted estimator's forward passes on ``device``.

    ``chosen`` is what :func:`choose_precision` picked at fit (None for estimators
    fitted before it, or during fit): used while ``precision`` still asks for
    ``"auto"``, except bfloat16 on a device that does not compute it natively
    (the estimator moved since fit). Convolutional backbones run channels_last
    unless ``"float32"`` was asked for: oneDNN's NHWC convolutions are 1.0-1.9x
    faster in float32 too (timm ResNet / MobileNetV3 / EfficientNet, one thread),
    but not bit for bit the default layout's, which ``"float32"`` keeps.
    """
    requested = requested_precision(precision)
    if requested != "auto":
        dtype = _DTYPES[requested]
    elif chosen is None or (chosen == "bfloat16" and not native_bf16(device)):
        dtype = resolve_precision("auto", device)
    else:
        dtype = _DTYPES[chosen]
    return dtype, requested != "float32" and has_conv2d(module)


def has_conv2d(module) -> bool:
    """Whether ``module`` holds 2-D convolutions (which run faster channels_last)."""
    return any(isinstance(layer, torch.nn.Conv2d) for layer in module.modules())


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


@contextlib.contextmanager
def fast_inference(module, device, dtype, *, channels_last=None, recompute_non_finite=True):
    """Run the body with ``module`` set up for ``dtype`` inference, restored afterwards.

    Yields ``forward(x) -> float32 tensor``: under autocast to ``dtype``, and with
    4-D inputs and the module's weights channels_last when ``channels_last``
    (None: for bfloat16 / float16 and convolutional modules, where oneDNN's and
    cuDNN's reduced-precision convolutions are fastest). The module's memory
    format is restored after. A reduced-precision batch whose outputs are not
    finite (float16 overflows past 65504) is computed again in float32, so an
    overflow never reaches the embeddings.
    """
    if channels_last is None:
        channels_last = dtype != torch.float32 and has_conv2d(module)
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
            out = module(x).float()
        if recompute_non_finite and dtype != torch.float32 and not torch.isfinite(out).all():
            out = module(x).float()  # outside autocast: float32
        return out

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
    channels_last=None,
):
    """Embed every sample of ``inputs`` with ``module`` in eval mode; ``(N, D)`` float32 numpy.

    Batches are streamed to ``device`` (image files decoded by ``num_workers``
    processes), go through ``preprocessor`` (a pretrained backbone's
    :class:`~repens_sklearn._preprocess.ImagePreprocessor`) when given, and run
    under :func:`fast_inference` for ``dtype`` (None: :func:`autocast`'s former
    rule) and ``channels_last``; the module's train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with fast_inference(module, device, dtype, channels_last=channels_last) as forward:
            batches = inputs.iter_batches(batch_size, device, num_workers)
            total = -(-inputs.n_samples // batch_size)
            for _, batch in tqdm(batches, total=total, desc=desc, disable=not verbose, leave=False):
                if preprocessor is not None:
                    batch = preprocessor(batch)
                chunks.append(forward(batch).reshape(len(batch), -1).cpu())
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)
