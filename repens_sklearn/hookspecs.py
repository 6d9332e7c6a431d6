"""Hook specifications of repens_sklearn (the project's fixed plugin contract).

Every hook returns a mapping from a registered name to an object. The
registries in :mod:`repens_sklearn._plugins` merge the mappings of all plugins;
when two plugins give the same name, a warning names both and the plugin
registered later wins.
"""

import pluggy

PROJECT_NAME = "repens_sklearn"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def repens_backbones():
    """Return ``{name: factory}``; ``factory(**params)`` builds a ``torch.nn.Module``.

    The module maps a float batch ``(B, C, H, W)`` or ``(B, F)`` to ``(B, D)``
    embeddings and should expose ``embedding_dim`` (``D``).
    """


@hookspec
def repens_augmentation_policies():
    """Return ``{name: factory}``; ``factory(**params)`` builds a policy.

    A policy is ``policy(x: Tensor, generator: torch.Generator) -> Tensor`` of
    the same shape, with an independent random draw for each sample of the batch.
    """


@hookspec
def repens_aggregations():
    """Return ``{name: fn}``; ``fn(views: Tensor[S, N, D]) -> Tensor[N, D]``."""
