"""Where and how the torch work is computed: device, precision, generators, the embedding loop.

Device choice (``"auto"``), the ``precision`` parameter and its autocast, seeded
``torch.Generator`` objects, inference-time module settings and the batched loop
that embeds an input set (:func:`embed_inputs`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import NamedTuple

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
    (bf16 training on CPUs is not validated; ``"float16"`` trains in float32, as
    fp16 gradients need loss scaling, which is not done) and for estimators fitted before
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
    if training and precision == "float16":  # fp16 gradients underflow without loss scaling
        return torch.float32
    return _DTYPES[precision]


def _check_precision(value, what):
    if value not in PRECISIONS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, PRECISIONS))}; got {value!r}")


class PrecisionChoice(NamedTuple):
    """What :func:`choose_precision` decided at ``fit``, and for which request."""

    requested: str  #: ``precision`` as asked at fit (``REPENS_SKLEARN_PRECISION`` applied)
    name: str  #: "float32", "bfloat16" or "float16"
    channels_last: bool  #: whether the module runs channels_last
    agreement: float  #: least cosine of bf16 to float32 on the check (NaN: not checked)


def choose_precision(precision, module, make_batch, device, *, centre=False) -> PrecisionChoice:
    """The inference arithmetic of a fitted ``module`` (a :class:`PrecisionChoice`).

    ``"auto"`` (without ``REPENS_SKLEARN_PRECISION``) tries, on ``make_batch()`` (a
    few samples of the fit data, as the network sees them), bf16 autocast +
    channels_last where the device computes bf16 natively (CUDA from Ampere on;
    CPUs with AVX512-BF16 / AMX, read from the CPU's flags), then float32
    channels_last (convolutional modules), then the plain float32 that ``fit``
    already ran: the first that runs and keeps every output's cosine to float32
    at least :data:`AUTO_MIN_COSINE` wins (``centre``: cosines of outputs minus
    their row mean, for logits, whose shared offset says nothing). The check is
    what makes bf16 a safe default: timm ResNet-18 / ResNet-50 / ConvNeXt-nano
    keep 0.99998 or more and run 3-4x faster on an AMX CPU, while ImageNet
    EfficientNet-Lite0/1/2 fall to 0.95-0.98 and up to a point of kNN accuracy
    (``docs/benchmarks.md``, bench_peers), so they stay float32. A module that
    fails in a layout or precision (``x.view`` on channels_last, an op without a
    bf16 kernel) gets the next candidate. Forced precisions are not checked.
    """
    requested = requested_precision(precision)
    if requested != "auto":
        channels_last = reduced_runs_channels_last(_DTYPES[requested], module)
        return PrecisionChoice(requested, requested, channels_last, float("nan"))
    conv = has_conv2d(module)  # only convolutions gain from channels_last
    candidates = [("float32", False)]
    if conv:
        candidates.insert(0, ("float32", True))
    if native_bf16(device):
        candidates.insert(0, ("bfloat16", conv))
    agreement = float("nan")
    if len(candidates) == 1:  # plain float32, which fit already ran
        return PrecisionChoice("auto", "float32", False, agreement)
    batch = make_batch()
    with _eval_mode(module), torch.inference_mode():
        reference = module(batch).float()
        for name, channels_last in candidates[:-1]:
            cosine = _agreement_with(
                reference, module, batch, device, _DTYPES[name], channels_last, centre
            )
            if name == "bfloat16":
                agreement = cosine
            if cosine >= AUTO_MIN_COSINE:
                return PrecisionChoice("auto", name, channels_last, agreement)
    return PrecisionChoice("auto", "float32", False, agreement)


def reduced_precision_agreement(
    module, batch, device, dtype, *, channels_last=None, centre=False
) -> float:
    """Least row cosine of ``module(batch)`` run in ``dtype`` (and layout) to plain float32.

    -inf where those outputs are not finite or the module failed to run so (float32
    itself, computed first, must run). Rows that are zero in both count as agreeing;
    ``centre`` subtracts each row's mean first.
    """
    with _eval_mode(module), torch.inference_mode():
        reference = module(batch).float()
        return _agreement_with(reference, module, batch, device, dtype, channels_last, centre)


def _agreement_with(reference, module, batch, device, dtype, channels_last, centre) -> float:
    """:func:`reduced_precision_agreement` against an already computed float32 ``reference``."""
    try:
        with fast_inference(
            module, device, dtype, channels_last=channels_last, recompute_non_finite=False
        ) as forward:
            reduced = forward(batch)
    except Exception:  # no kernel for it, a layout the module refuses: not this one
        return float("-inf")
    if not torch.isfinite(reduced).all():
        return float("-inf")
    reduced = reduced.double().reshape(len(batch), -1)
    reference = reference.double().reshape(len(batch), -1)
    if centre:
        reduced = reduced - reduced.mean(dim=1, keepdim=True)
        reference = reference - reference.mean(dim=1, keepdim=True)
    both_zero = (reduced.abs().amax(dim=1) == 0) & (reference.abs().amax(dim=1) == 0)
    cosine = torch.nn.functional.cosine_similarity(reduced, reference, dim=1, eps=1e-300)
    return float(torch.where(both_zero, 1.0, cosine).min())


@contextlib.contextmanager
def _eval_mode(module):
    """The body with ``module`` in eval mode; its train/eval mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def precision_context() -> tuple:
    """What decides the arithmetic of ``precision="auto"`` in this process, for cache keys.

    ``REPENS_SKLEARN_PRECISION``, whether the CPU computes bf16 natively and whether
    CUDA is there (not initialised for this: no CUDA context in every cache lookup).
    """
    return (os.environ.get(PRECISION_ENV, ""), cpu_has_native_bf16(), torch.cuda.is_available())


def inference_settings(precision, choice, device, module) -> tuple[torch.dtype, bool]:
    """``(autocast dtype, channels_last)`` of a fitted estimator's forward passes on ``device``.

    ``choice`` is the :class:`PrecisionChoice` of ``fit`` (None for estimators
    fitted before it, or during fit). It is followed while ``precision`` asks for
    what it was made for; bfloat16 becomes float32 on a device that does not
    compute it natively (the estimator moved since fit). Otherwise (``precision``
    changed since fit, older pickles) the rule without a check applies:
    :func:`resolve_precision`, channels_last for reduced precisions.
    """
    requested = requested_precision(precision)
    if choice is not None and choice.requested == requested:
        name = choice.name
        if name == "bfloat16" and requested == "auto" and not native_bf16(device):
            name = "float32"
        return _DTYPES[name], choice.channels_last
    dtype = resolve_precision(requested, device)
    return dtype, reduced_runs_channels_last(dtype, module)


def has_conv2d(module) -> bool:
    """Whether ``module`` holds 2-D convolutions (which run faster channels_last)."""
    return any(isinstance(layer, torch.nn.Conv2d) for layer in module.modules())


def reduced_runs_channels_last(dtype, module) -> bool:
    """The layout rule without a check: bf16 / fp16 convolutional modules run channels_last.

    oneDNN's and cuDNN's reduced-precision convolutions are fastest on NHWC; float32
    keeps the default layout (its exact results).
    """
    return dtype != torch.float32 and has_conv2d(module)


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


def run_in(dtype, device, run, recompute_non_finite=True):
    """``run()`` under autocast to ``dtype`` as a float32 tensor; not finite (a float16
    overflow past 65504): ``run()`` again outside autocast, in float32."""
    with autocast(device, dtype):
        out = run().float()
    if recompute_non_finite and dtype != torch.float32 and not torch.isfinite(out).all():
        out = run().float()
    return out


@contextlib.contextmanager
def fast_inference(module, device, dtype, *, channels_last=None, recompute_non_finite=True):
    """Run the body with ``module`` set up for ``dtype`` inference, restored afterwards.

    Yields ``forward(x) -> float32 tensor``: under autocast to ``dtype``, and with
    4-D inputs and the module's weights channels_last when ``channels_last``
    (None: :func:`reduced_runs_channels_last`). The module's memory
    format is restored after. A reduced-precision batch whose outputs are not
    finite (float16 overflows past 65504) is computed again in float32, so an
    overflow never reaches the embeddings.
    """
    if channels_last is None:
        channels_last = reduced_runs_channels_last(dtype, module)
    formats = {}
    if channels_last:
        formats = {name: t.stride() for name, t in _4d(module)}
        with _normal_tensors():
            module.to(memory_format=torch.channels_last)

    def forward(x):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return run_in(dtype, device, lambda: module(x), recompute_non_finite)

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


def _4d(module):
    """``(name, tensor)`` of the module's 4-D parameters and buffers (those .to() re-lays)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [(name, t) for name, t in tensors if t.dim() == 4]


def _restore_formats(module, formats):
    """Put back the strides the 4-D weights and buffers had (one input channel: both layouts
    are "contiguous", so strides, not flags, tell them apart)."""
    with _normal_tensors():
        for name, tensor in _4d(module):
            strides = formats.get(name)
            if strides is not None and tensor.stride() != strides:
                restored = torch.empty_strided(
                    tensor.shape, strides, dtype=tensor.dtype, device=tensor.device
                )
                tensor.data = restored.copy_(tensor.data)


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
