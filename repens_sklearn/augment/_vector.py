"""Policies that work on any tensor: identity and additive Gaussian noise."""

from __future__ import annotations

import torch

from ._contract import SeededPolicy


class Identity(SeededPolicy):
    """Returns the batch unchanged (the un-augmented, 'centre' view)."""

    name = "identity"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    def seeded(self, x, seeds):
        return x

    def __repr__(self):
        return "Identity()"


class GaussianNoise(SeededPolicy):
    """Adds ``N(0, std^2)`` noise independently to every entry: the policy for vectors.

    ``relative=True`` scales ``std`` by each sample's own standard deviation, so
    the same setting suits features of any scale.

    Per-row seeds (:meth:`seeded`) draw each row's noise from its own
    ``torch.Generator`` on the batch's device: a loop over rows of one
    ``torch.randn`` each (about 10 microseconds a row on a CPU).
    """

    name = "gaussian_noise"

    def __init__(self, std: float = 0.1, relative: bool = False):
        if not std >= 0:
            raise ValueError(f"gaussian_noise policy needs std >= 0, got std={std!r}")
        self.std = float(std)
        self.relative = bool(relative)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self._add(x, noise)

    def seeded(self, x, seeds):
        self._check_seeds(x, seeds)
        generator = torch.Generator(device=x.device)
        noise = torch.empty_like(x)
        for row, seed in enumerate(seeds.tolist()):
            generator.manual_seed(seed)
            noise[row] = torch.randn(
                x.shape[1:], generator=generator, device=x.device, dtype=x.dtype
            )
        return self._add(x, noise)

    def _add(self, x, noise):
        scale = self.std
        if self.relative:
            dims = tuple(range(1, x.ndim))
            scale = self.std * x.std(dim=dims, keepdim=True).clamp_min(1e-12)
        return x + scale * noise

    def __repr__(self):
        return f"GaussianNoise(std={self.std}, relative={self.relative})"


def identity():
    """The identity policy (no augmentation)."""
    return Identity()


def gaussian_noise(std=0.1, relative=False):
    """Additive Gaussian noise, for vector inputs."""
    return GaussianNoise(std=std, relative=relative)
