"""Augmentation policies, registered through ``repens_augmentation_policies``.

A policy is ``policy(x, generator) -> Tensor`` of the same shape as ``x`` with an
independent random draw for every sample of the batch, made on ``x.device``.
"""

from ..hookspecs import hookimpl
from ._vector import GaussianNoise, Identity, gaussian_noise, identity

BUILTIN_POLICIES = {
    "identity": identity,
    "gaussian_noise": gaussian_noise,
}


@hookimpl
def repens_augmentation_policies():
    return dict(BUILTIN_POLICIES)


__all__ = ["GaussianNoise", "Identity", "gaussian_noise", "identity"]
