"""Per-sample seeds: randomness keyed by a seed and the sample itself, drawn in batches.

A policy that implements ``seeded(x, seeds)`` makes row ``i`` of its output
from ``x[i]`` and ``seeds[i]`` alone, so the views of a sample do not depend on
the other rows of the batch, on its position in X, or on how X is cut into
batches. Seeds are 1-D CPU ``torch.int64`` tensors of non-negative values (they
also seed a ``torch.Generator``). The arithmetic is SplitMix64 (Steele, Lea and
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): a seed
and a counter give a 64-bit random word with a few integer operations, so the
uniform numbers of a whole batch are drawn in one vectorised call (counter-based
random numbers), exactly alike on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_POSITIVE = np.uint64(0x7FFFFFFFFFFFFFFF)
_HASH_WEIGHT_BITS = 20  # 16-bit halves x 20-bit weights: exact int64 sums of up to 2**27 terms
_HASH_BLOCK = 2**22  # elements per block of the content hash (memory of its temporaries)
_HASH_SPAN = 2**26  # values summed exactly before folding (< 2**27, see above)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        return z ^ (z >> np.uint64(31))


def _as_uint64(seeds) -> np.ndarray:
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.detach().cpu().numpy()
    return np.atleast_1d(np.asarray(seeds)).astype(np.int64).view(np.uint64)


def _to_seeds(words: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((words & _POSITIVE).view(np.int64).copy())


def derive_seeds(seeds, *salts) -> torch.Tensor:
    """New seeds from ``seeds`` and integer ``salts`` (scalars or arrays broadcast against them).

    ``derive_seeds(s, a)`` and ``derive_seeds(s, b)`` are unrelated streams for
    ``a != b``: the seeds of the views of a sample are ``derive_seeds(key, view_index)``.
    """
    words = _as_uint64(seeds)
    with np.errstate(over="ignore"):
        for salt in salts:
            salt = np.asarray(salt).astype(np.int64).view(np.uint64)
            words = _mix(words + _GOLDEN * (_mix(salt + _GOLDEN) | np.uint64(1)))
    return _to_seeds(words)


def uniform(seeds, n: int) -> torch.Tensor:
    """``(len(seeds), n)`` float64 numbers in [0, 1); row ``i`` depends on ``seeds[i]`` only."""
    words = _as_uint64(seeds)[:, None]
    counters = np.arange(1, n + 1, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        bits = _mix(words + counters * _GOLDEN) >> np.uint64(11)
    return torch.from_numpy(bits.astype(np.float64) * 2.0**-53)


def seeds_from_generator(generator: torch.Generator | None, n: int) -> torch.Tensor:
    """``n`` seeds drawn from ``generator`` (torch's global RNG when None); advances it."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(2**62, (n,), generator=generator, device=device).cpu()


@functools.lru_cache(maxsize=8)
def _hash_weights(n: int, device: str):
    index = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        low = (_mix(index + _GOLDEN) >> np.uint64(64 - _HASH_WEIGHT_BITS)) | np.uint64(1)
        high = (_mix(index * _GOLDEN + _MUL1) >> np.uint64(64 - _HASH_WEIGHT_BITS)) | np.uint64(1)
    return (
        torch.from_numpy(low.astype(np.int64)).to(device),
        torch.from_numpy(high.astype(np.int64)).to(device),
    )


@torch.no_grad()
def content_seeds(x: torch.Tensor, seed: int) -> torch.Tensor:
    """One seed per row of ``x`` from ``seed`` and the row's values (bit for bit).

    Computed on ``x``'s device with exact integer arithmetic (weighted sums of
    the 16-bit halves of every float32 value), so the same row gives the same
    seed in any batch, on any device. Two different rows may collide; that
    only makes their random draws alike, never their outputs equal.
    """
    flat = x.reshape(len(x), -1)
    if flat.is_floating_point():
        bits = flat.float().contiguous().view(torch.int32)
    else:
        bits = flat.to(torch.int64)
    n_rows, n_values = bits.shape
    low_w, high_w = _hash_weights(n_values, str(bits.device))
    words = _mix(
        np.full(n_rows, np.uint64(n_values), dtype=np.uint64)
        ^ _mix(np.full(n_rows, np.uint64(int(seed) & (2**64 - 1))))
    )
    step = max(1, _HASH_BLOCK // max(1, n_rows))  # columns per block: bounds the temporaries
    for outer in range(0, max(n_values, 1), _HASH_SPAN):  # fixed spans: the same for any batch
        stop = min(outer + _HASH_SPAN, n_values)
        low = torch.zeros(n_rows, dtype=torch.int64, device=bits.device)
        high = torch.zeros_like(low)
        for start in range(outer, stop, step):  # exact integer sums: any order, any split
            block = bits[:, start : min(start + step, stop)].to(torch.int64)
            low += ((block & 0xFFFF) * low_w[start : start + block.shape[1]]).sum(dim=1)
            high += (((block >> 16) & 0xFFFF) * high_w[start : start + block.shape[1]]).sum(dim=1)
        parts = torch.stack([low, high], dim=1).cpu().numpy().view(np.uint64)
        with np.errstate(over="ignore"):
            words = _mix(words + _GOLDEN * _mix(parts[:, 0] + _GOLDEN))
            words = _mix(words + _GOLDEN * _mix(parts[:, 1] + _MUL2))
    return _to_seeds(words)
