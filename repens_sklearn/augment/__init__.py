"""Augmentation policies, registered through ``repens_augmentation_policies``.

A policy is ``policy(x, generator) -> Tensor`` of the same shape as ``x`` with an
independent random draw for every sample of the batch, made on ``x.device`` and
reproducible from ``generator``. Built-ins: ``identity`` and ``gaussian_noise``
(any tensor, e.g. vectors), ``crop_flip`` (crop area adapted to the image
size), ``crop_flip_paper`` (the conventional 8-100% crops), ``simsiam`` and
``multiscale`` (image batches ``(B, C, H, W)``).

The contract and its two optional capabilities live in one module
(``_contract``): per-row seeds (``seeded(x, seeds)``, all built-ins have it;
:func:`is_seeded`) and deterministic views (``n_views`` + ``view(x, index)``,
e.g. ``multiscale``; :func:`fixed_views`, :func:`views_change_size`), as
:class:`typing.Protocol` classes (:class:`AugmentationPolicy`,
:class:`SupportsSeeded`, :class:`SupportsViews`) and base classes to inherit
(:class:`SeededPolicy` provides ``__call__`` from ``seeded``;
:class:`MultiViewPolicy`). :class:`~repens_sklearn.MeanTTAEmbedder` keys each
sample's views to ``random_state`` and the sample itself: batched through
``seeded``, else one call per view with a generator seeded from the view's seed.
:func:`uniform` and :func:`derive_seeds` draw per-row random numbers from seeds
in one vectorised call.
"""

from ..hookspecs import hookimpl
from ._contract import (
    AugmentationPolicy,
    MultiViewPolicy,
    SeededPolicy,
    SupportsSeeded,
    SupportsViews,
    fixed_views,
    is_seeded,
    views_change_size,
)
from ._image import (
    CropFlip,
    MultiScale,
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
    "AugmentationPolicy",
    "CropFlip",
    "GaussianNoise",
    "Identity",
    "MultiScale",
    "MultiViewPolicy",
    "SeededPolicy",
    "SimSiamAugment",
    "SupportsSeeded",
    "SupportsViews",
    "auto_crop_scale",
    "content_seeds",
    "crop_flip",
    "crop_flip_paper",
    "derive_seeds",
    "fixed_views",
    "gaussian_noise",
    "identity",
    "is_seeded",
    "multiscale",
    "seeded_global_rng",
    "seeds_from_generator",
    "simsiam",
    "uniform",
    "views_change_size",
]
