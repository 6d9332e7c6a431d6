"""The SimSiam K-aug and EnSiam losses.

From "EnSiam: Self-Supervised Learning With Ensemble Representations", eq. 2 and eq. 4-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = ("ensemble", "pair")


def negative_cosine(p, z):
    """``D(p, z)``: negative cosine similarity per row; ``z`` must already be detached."""
    return -F.cosine_similarity(p, z, dim=-1)


def ensemble_loss(z, p):
    """EnSiam, eq. 5: ``(1/K) sum_k D(g_k, stopgrad(mean_k f_k))``.

    ``z`` and ``p`` are ``(K, B, D)``: projections and predictions of the K views.
    """
    target = z.detach().mean(dim=0, keepdim=True)
    return negative_cosine(p, target).mean()


def pair_loss(z, p):
    """SimSiam K-aug, eq. 2: each view predicts the stop-gradient projection of its
    partner ``N(k)`` (views 1<->2, 3<->4, ...); ``K=2`` is SimSiam's eq. 1."""
    k = z.shape[0]
    partner = torch.arange(k, device=z.device) ^ 1  # 0<->1, 2<->3, ...
    return negative_cosine(p, z.detach()[partner]).mean()


class SiameseLoss(nn.Module):
    """Criterion for flat ``(K * B, D)`` outputs ordered view by view."""

    def __init__(self, n_views=4, target="ensemble"):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.n_views = int(n_views)
        self.target = target

    def forward(self, z, p):
        z = z.reshape(self.n_views, -1, z.shape[-1])
        p = p.reshape(self.n_views, -1, p.shape[-1])
        fn = ensemble_loss if self.target == "ensemble" else pair_loss
        return fn(z, p)


@torch.no_grad()
def collapse_std(z):
    """SimSiam's collapse indicator: mean over dimensions of the std of L2-normalized ``z``.

    About ``1 / sqrt(D)`` for well-spread outputs, 0 for a collapsed network.
    """
    return F.normalize(z.float(), dim=1).std(dim=0).mean()
