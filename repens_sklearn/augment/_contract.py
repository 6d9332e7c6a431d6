"""The augmentation-policy contract, in one place: what a policy is and what it may add.

A policy is ``policy(x, generator) -> Tensor`` of ``x``'s shape, with an
independent random draw for every row (the plugin contract). Two optional
capabilities change how :class:`~repens_sklearn.MeanTTAEmbedder` draws views;
the library asks for them through the predicates here, nowhere else:

- **per-row seeds** (:class:`SupportsSeeded`, :func:`is_seeded`):
  ``seeded(x, seeds) -> Tensor`` where row ``i`` of the output depends on
  ``x[i]`` and ``seeds[i]`` only (``seeds``: 1-D CPU ``torch.int64``, one
  non-negative seed per row). Without it a policy is called once per view of a
  sample, with a generator seeded from that view's seed.
- **deterministic views** (:class:`SupportsViews`, :func:`fixed_views`): an
  ``n_views`` attribute and ``view(x, index) -> Tensor``, the whole batch as its
  view ``index``; such a policy makes at most ``n_views`` fixed views instead of
  random draws. A view may have its own resolution (multi-scale inference);
  ``resize_back`` (default True) says whether the views keep the input's size
  (:func:`views_change_size`).

Policies may simply have these methods (duck typing, :class:`typing.Protocol`),
or inherit the small base classes :class:`SeededPolicy` (``__call__`` from
``seeded``) and :class:`MultiViewPolicy`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ._seeds import seeds_from_generator


@runtime_checkable
class AugmentationPolicy(Protocol):
    """``policy(x, generator)``: ``x`` augmented, same shape, one random draw per row."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


@runtime_checkable
class SupportsSeeded(Protocol):
    """A policy whose row ``i`` can be drawn from ``seeds[i]`` alone."""

    def seeded(self, x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SupportsViews(Protocol):
    """A policy with ``n_views`` deterministic views, ``view(x, index)`` each."""

    n_views: int

    def view(self, x: torch.Tensor, index: int) -> torch.Tensor: ...


def is_seeded(policy) -> bool:
    """Whether ``policy`` draws rows from per-row seeds (a callable ``seeded``)."""
    return callable(getattr(policy, "seeded", None))


def fixed_views(policy) -> int | None:
    """Number of deterministic views of ``policy`` (``n_views``); None for a random policy."""
    if callable(getattr(policy, "view", None)) and hasattr(policy, "n_views"):
        return int(policy.n_views)
    return None


def views_change_size(policy) -> bool:
    """Whether the deterministic views of ``policy`` have their own resolution.

    True for a multi-view policy with ``resize_back=False`` (a backbone that
    needs a fixed input size cannot take them); False for any other policy.
    """
    return fixed_views(policy) is not None and not getattr(policy, "resize_back", True)


class SeededPolicy:
    """Base of random policies with per-row seeds: implement ``seeded``, get ``__call__``.

    Subclasses implement ``seeded(x, seeds)``; ``policy(x, generator)`` (the
    plugin contract) draws one seed per row from ``generator`` and calls it.
    :class:`~repens_sklearn.MeanTTAEmbedder` calls ``seeded`` directly with
    seeds keyed by ``random_state`` and each sample's content, so a sample's
    views do not depend on the rest of X. Any policy may implement ``seeded``
    to get the same (:func:`is_seeded`); others are called once per sample.
    ``_check(x)`` validates the batch (a tensor here; image policies ask for
    ``(B, C, H, W)``).
    """

    name = "policy"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check(x)
        return self.seeded(x, seeds_from_generator(generator, len(x)))

    def seeded(self, x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Row ``i``: ``x[i]`` augmented with randomness from ``seeds[i]`` alone."""
        raise NotImplementedError

    def _check(self, x):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"the {self.name!r} policy needs a tensor, got {type(x).__name__}")

    def _check_seeds(self, x, seeds):
        self._check(x)
        if len(seeds) != len(x):
            raise ValueError(
                f"the {self.name!r} policy needs one seed per row: got "
                f"{len(seeds)} seeds for {len(x)} rows"
            )


class MultiViewPolicy:
    """Base of deterministic multi-view policies: ``n_views`` views, ``view(x, index)`` each.

    :class:`~repens_sklearn.MeanTTAEmbedder` embeds views ``0 .. min(S, n_views) - 1``
    of every sample (:func:`fixed_views`) instead of random draws.
    ``resize_back=True`` (the default) promises that every view keeps the
    input's shape; a subclass whose views have their own resolution sets it
    False (:func:`views_change_size`).
    """

    resize_back = True

    @property
    def n_views(self) -> int:  # pragma: no cover
        """Number of deterministic views."""
        raise NotImplementedError

    def view(self, x: torch.Tensor, index: int) -> torch.Tensor:  # pragma: no cover
        """The whole batch ``x`` as its view ``index`` (``0 <= index < n_views``)."""
        raise NotImplementedError
