"""Augmentation policies, registered through ``repens_augmentation_policies``.

A policy is ``policy(x, generator) -> Tensor`` of the same shape as ``x`` with an
independent random draw for every sample of the batch, made on ``x.device`` and
reproducible from ``generator``. Built-ins: ``identity`` and ``gaussian_noise``
(any tensor, e.g. vectors), ``crop_flip`` (crop area adapted to the image
size), ``crop_flip_paper`` (the conventional 8-100% crops), ``simsiam`` and
``multiscale`` (image batches ``(B, C, H, W)``).

Per-sample seeds (optional, all built-ins have it): a policy may also define
``seeded(x, seeds) -> Tensor``, where ``seeds`` is a 1-D CPU ``torch.int64``
tensor with one non-negative seed per row and row ``i`` of the output depends
on ``x[i]`` and ``seeds[i]`` only. :class:`~repens_sklearn.MeanTTAEmbedder`
uses it to key each sample's views to ``random_state`` and the sample itself,
batched; a policy without it is called once per sample with a generator
seeded from that sample's key. :class:`SeededPolicy` is a base class that
provides ``__call__`` from ``seeded``; :func:`uniform` and :func:`derive_seeds`
draw per-row random numbers from seeds in one vectorised call.
"""

from ..hookspecs import hookimpl
from ._image import (
    CropFlip,
    MultiScale,
    SeededPolicy,
    SimSiamAugment,
    auto_crop_scale,
    crop_flip,
    crop_flip_paper,
    multiscale,
    seeded_global_rng,
    simsiam,
)
from ._seeds import content_seeds, derive_seeds, seeds_from_generator, uniform
from ._vector import GaussianNoise, Identity, gaussian_noise, identity

BUILTIN_POLICIES = {
    "identity": identity,
    "gaussian_noise": gaussian_noise,
    "crop_flip": crop_flip,
    "crop_flip_paper": crop_flip_paper,
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
    "SeededPolicy",
    "SimSiamAugment",
    "auto_crop_scale",
    "content_seeds",
    "crop_flip",
    "crop_flip_paper",
    "derive_seeds",
    "gaussian_noise",
    "identity",
    "multiscale",
    "seeded_global_rng",
    "seeds_from_generator",
    "simsiam",
    "uniform",
]
