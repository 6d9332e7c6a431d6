"""Aggregation functions over test-time views, registered through ``repens_aggregations``.

Each maps ``views`` of shape ``(S, N, D)`` to ``(N, D)``.
"""

from __future__ import annotations

import torch

from ._warnings import warn
from .hookspecs import hookimpl


def mean(views: torch.Tensor) -> torch.Tensor:
    """Arithmetic mean over the views: MeTTA (Ashukha et al., "Mean Embeddings with
    Test-Time Data Augmentation for Ensembling of Representations", sec. 1, eq. 3)."""
    return views.mean(dim=0)


def gem(views: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised (power) mean ``(mean_s x_s^p)^(1/p)`` over the views.

    This is the power mean of cirtorch's multi-scale extraction (``msp``;
    Radenovic et al., the image-retrieval use of multi-scale views in sec. 4 of
    "Mean Embeddings with Test-Time Data Augmentation for Ensembling of
    Representations"). cirtorch applies it to L2-normalized per-scale
    descriptors and L2-normalizes the result; ``MeanTTAEmbedder`` does both
    around this function for ``policy="multiscale"`` (``normalize_views`` and
    ``normalize``), this function alone is the power mean of what it is given.

    Features are clamped at ``eps`` first, as GeM pooling does, so ``p`` may be
    any positive real; ``p=1`` is the mean and large ``p`` tends to the max. It
    is meant for non-negative (post-ReLU) features: negative ones would be
    clamped away, so they raise a warning.
    """
    if not p > 0:
        raise ValueError(f"gem aggregation needs p > 0, got p={p!r}")
    warn_if_negative_for_gem(views)
    views = views.clamp(min=eps)
    # divide by the per-entry max first so x**p cannot overflow for large p
    top = views.amax(dim=0)
    return top * (views / top).pow(p).mean(dim=0).pow(1.0 / p)


def warn_if_negative_for_gem(views: torch.Tensor) -> None:
    """GeM clamps features at ``eps``: negative ones would be lost without a word."""
    if bool((views < 0).any()):
        share = float((views < 0).float().mean())
        warn(
            f"aggregation='gem' expects non-negative features (it clamps them at eps), but "
            f"{share:.0%} of the views' features are negative; use aggregation='mean' or a "
            "backbone whose features are non-negative (post-ReLU)",
            UserWarning,
        )


def median(views: torch.Tensor) -> torch.Tensor:
    """Element-wise median over the views (robust to outlying views)."""
    return views.median(dim=0).values


def max(views: torch.Tensor) -> torch.Tensor:  # noqa: A001 - registered name
    """Element-wise maximum over the views."""
    return views.amax(dim=0)


BUILTIN_AGGREGATIONS = {"mean": mean, "gem": gem, "median": median, "max": max}


@hookimpl
def repens_aggregations():
    return dict(BUILTIN_AGGREGATIONS)
