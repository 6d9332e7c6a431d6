"""Device choice, seeded generators and mixed precision."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.utils import check_random_state


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


def autocast(device):
    """bfloat16 autocast on CUDA (mixed precision); a no-op on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def embed_inputs(module, inputs, *, batch_size=256, device="cpu", verbose=False,
                 desc="embedding", num_workers=0, preprocess=None):
    """Embed every sample of ``inputs`` with ``module`` in eval mode; ``(N, D)`` float32 numpy.

    Batches are streamed to ``device`` (image files decoded by ``num_workers``
    processes), go through ``preprocess`` (a pretrained backbone's
    :class:`~repens_sklearn._preprocess.ImagePreprocessor`) when given, and run
    under :func:`autocast`; the module's train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    was_training = module.training
    module.eval()
    chunks = []
    try:
        batches = inputs.iter_batches(batch_size, device, num_workers)
        total = -(-inputs.n_samples // batch_size)
        for _, batch in tqdm(batches, total=total, desc=desc, disable=not verbose, leave=False):
            if preprocess is not None:
                batch = preprocess(batch)
            with autocast(device):
                out = module(batch)
            chunks.append(out.float().reshape(len(batch), -1).cpu())
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)
