"""Augmentation policies, registered through ``repens_augmentation_policies``.

A policy is ``policy(x, generator) -> Tensor`` of the same shape as ``x`` with an
independent random draw for every sample of the batch, made on ``x.device`` and
reproducible from ``generator``. Built-ins: ``identity`` and ``gaussian_noise``
(any tensor, e.g. vectors), ``crop_flip``, ``simsiam`` and ``multiscale``
(image batches ``(B, C, H, W)``, via kornia).
"""

from ..hookspecs import hookimpl
from ._image import (
    CropFlip,
    MultiScale,
    SimSiamAugment,
    crop_flip,
    multiscale,
    seeded_global_rng,
    simsiam,
)
from ._vector import GaussianNoise, Identity, gaussian_noise, identity

BUILTIN_POLICIES = {
    "identity": identity,
    "gaussian_noise": gaussian_noise,
    "crop_flip": crop_flip,
    "simsiam": simsiam,
    "multiscale": multiscale,
}


@hookimpl
def repens_augmentation_policies():
    return dict(BUILTIN_POLICIES)


__all__ = [
    "CropFlip",
    "GaussianNoise",
    "Identity",
    "MultiScale",
    "SimSiamAugment",
    "crop_flip",
    "gaussian_noise",
    "identity",
    "multiscale",
    "seeded_global_rng",
    "simsiam",
]
