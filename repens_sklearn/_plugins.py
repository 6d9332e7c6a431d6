"""Plugin manager and the three registries (backbones, policies, aggregations).

Modelled on pytest's use of pluggy (one manager, built-ins registered like any
plugin, entry points loaded from the ``repens_sklearn`` group) and on timm's
registry (``list_*`` with fnmatch filters, close matches for unknown names).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import os
import threading

import pluggy

from . import hookspecs
from ._warnings import warn
from .exceptions import DuplicateNameWarning, PluginLoadWarning, UnknownNameError

ENTRY_POINT_GROUP = "repens_sklearn"
DISABLE_AUTOLOAD_ENV = "REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "repens_sklearn.backbones",
    "repens_sklearn.augment",
    "repens_sklearn.aggregate",
)

_KINDS = {
    "backbone": "repens_backbones",
    "augmentation policy": "repens_augmentation_policies",
    "aggregation": "repens_aggregations",
}

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_registry_cache: dict = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, creating it on first use.

    Built-in plugins are registered first, then the entry points of the
    ``repens_sklearn`` group unless ``REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD``
    is set to a non-empty value other than ``0``.
    """
    global _manager
    with _lock:
        if _manager is None:
            manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            manager.add_hookspecs(hookspecs)
            for module_name in BUILTIN_PLUGINS:
                module = __import__(module_name, fromlist=["_"])
                manager.register(module, name=module_name)
            if not _autoload_disabled():
                _load_entry_points(manager)
            _manager = manager
        return _manager


def reset_plugin_manager() -> None:
    """Forget the plugin manager so the next use rebuilds it (for tests)."""
    global _manager
    with _lock:
        _manager = None
        _registry_cache.clear()


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        # SystemExit too: a plugin calling sys.exit() at import must not end the caller
        # (every `repens` command loads the plugins); KeyboardInterrupt still stops.
        except (Exception, SystemExit) as exc:
            warn(
                f"repens_sklearn plugin {entry_point.name!r} ({entry_point.value}) "
                f"failed to load and was skipped: {_describe(exc)}",
                PluginLoadWarning,
            )
            continue
        _warn_unknown_hooks(manager, plugin, entry_point.name)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _warn_unknown_hooks(manager: pluggy.PluginManager, plugin, plugin_name: str) -> None:
    """Warn for each hook of ``plugin`` that no spec declares (a misspelt name is ignored
    by pluggy until ``check_pending``; here the user hears of it at once)."""
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
            continue
        close = suggest(caller.name, _KINDS.values(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warn(
            f"repens_sklearn plugin {plugin_name!r} defines hook {caller.name!r}, which is not "
            f"a repens_sklearn hook ({', '.join(sorted(_KINDS.values()))}), so it is "
            f"ignored{hint}",
            PluginLoadWarning,
        )


def _registry(kind: str) -> dict[str, tuple[object, str]]:
    """Merge every plugin's mapping for ``kind`` into ``{name: (obj, plugin)}``."""
    manager = get_plugin_manager()
    hook_name = _KINDS[kind]
    hookimpls = getattr(manager.hook, hook_name).get_hookimpls()
    key = (kind, tuple(id(impl.plugin) for impl in hookimpls))
    with _lock:
        if key in _registry_cache:
            return _registry_cache[key]
    merged: dict[str, tuple[object, str]] = {}
    # pluggy keeps hookimpls in registration order: later plugins override.
    for impl in hookimpls:
        plugin_name = manager.get_name(impl.plugin) or repr(impl.plugin)
        try:
            mapping = dict(impl.function() or {})
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the library
            warn(
                f"repens_sklearn plugin {plugin_name!r} raised in {hook_name}() and was "
                f"skipped: {_describe(exc)}",
                PluginLoadWarning,
            )
            continue
        for name, obj in mapping.items():
            if name in merged:
                warn(
                    f"{kind} {name!r} is registered by both plugin "
                    f"{merged[name][1]!r} and plugin {plugin_name!r}; "
                    f"using the one from {plugin_name!r}.",
                    DuplicateNameWarning,
                )
            merged[name] = (obj, plugin_name)
    with _lock:
        _registry_cache[key] = merged
    return merged


def matches(name: str, patterns) -> bool:
    """Whether ``name`` matches any fnmatch pattern of ``patterns`` (a str or several).

    Case-insensitive; a pattern without ``/`` also matches the part of a name after
    its plugin's prefix, so ``"resnet*"`` finds ``resnet18`` and ``timm/resnet18``
    alike. The ``list_*`` functions and ``repens plugins --filter`` filter with it.

    >>> matches("timm/resnet18", "resnet1*"), matches("ResNet50", ["resnet5?"])
    (True, True)
    >>> matches("timm/resnet18", "other/resnet*")
    False
    """
    patterns = [patterns] if isinstance(patterns, str) else patterns
    name = name.lower()
    short = name.split("/", 1)[1] if "/" in name else None
    for pattern in (p.lower() for p in patterns):
        if fnmatch.fnmatchcase(name, pattern):
            return True
        if short is not None and "/" not in pattern and fnmatch.fnmatchcase(short, pattern):
            return True
    return False


# How close (difflib's ratio) a registered name must be to an unknown one to be suggested.
SUGGEST_CUTOFF = 0.6


def suggest(name: str, names, n: int = 5) -> list[str]:
    """The ``n`` names of ``names`` closest to ``name`` ("did you mean"), closest first.

    A name counts as close when difflib's similarity ratio, case-insensitive, is
    at least :data:`SUGGEST_CUTOFF`, whole or after a plugin's ``prefix/`` on
    either side. Registry errors, the ``repens`` command and hook-name warnings use it.

    >>> suggest("resnet19", ["resnet18", "timm/resnet18d", "mlp"])
    ['resnet18', 'timm/resnet18d']
    """

    def score(candidate):
        pairs = {
            (name.lower(), candidate.lower()),
            (_short(name).lower(), _short(candidate).lower()),
        }
        return max(difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs)

    scored = sorted(((score(c), c) for c in names), key=lambda sc: (-sc[0], sc[1]))
    return [c for s, c in scored if s >= SUGGEST_CUTOFF][:n]


def _short(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name else name


def _list(kind: str, filter) -> list[str]:
    names = sorted(_registry(kind))
    return [n for n in names if matches(n, filter)] if filter else names


def _lookup(kind: str, name: str):
    registry = _registry(kind)
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
    if name not in registry:
        raise UnknownNameError(
            kind, name, suggest(name, registry), len(registry), f"list_{_plural(kind)}"
        )
    return registry[name][0]


def _plural(kind: str) -> str:
    return {
        "backbone": "backbones",
        "augmentation policy": "augmentation_policies",
        "aggregation": "aggregations",
    }[kind]


def plugin_of(kind: str, name: str) -> str:
    """Name of the plugin that provides ``name`` in the registry ``kind``."""
    _lookup(kind, name)
    return _registry(kind)[name][1]


def list_backbones(filter: str | None = None) -> list[str]:
    """Sorted names of registered backbones, optionally filtered by :func:`matches`.

    Parameters
    ----------
    filter : str, list of str or None, default=None
        An fnmatch pattern (``"resnet*"``, which also finds ``timm/resnet*``) or a
        list of them, compared case-insensitively (:func:`matches`); None lists all.

    Returns
    -------
    names : list of str
        Sorted registered names.
    """
    return _list("backbone", filter)


def create_backbone(name: str, **params):
    """Build the registered backbone ``name`` with ``params``.

    Parameters
    ----------
    name : str
        A registered backbone name (``list_backbones()``);
        an unknown name raises :class:`~repens_sklearn.exceptions.UnknownNameError`
        with the closest registered names.
    **params : dict
        Keyword arguments for the backbone's factory.

    Returns
    -------
    module : torch.nn.Module
        Maps a float batch ``(B, C, H, W)`` or ``(B, F)`` to ``(B, D)``.
    """
    return _lookup("backbone", name)(**params)


def list_augmentation_policies(filter: str | None = None) -> list[str]:
    """Sorted names of registered augmentation policies, optionally filtered by :func:`matches`.

    Parameters
    ----------
    filter : str, list of str or None, default=None
        An fnmatch pattern (``"resnet*"``, which also finds ``timm/resnet*``) or a
        list of them, compared case-insensitively (:func:`matches`); None lists all.

    Returns
    -------
    names : list of str
        Sorted registered names.
    """
    return _list("augmentation policy", filter)


def create_augmentation_policy(name: str, **params):
    """Build the registered augmentation policy ``name`` with ``params``.

    Parameters
    ----------
    name : str
        A registered augmentation policy name (``list_augmentation_policies()``);
        an unknown name raises :class:`~repens_sklearn.exceptions.UnknownNameError`
        with the closest registered names.
    **params : dict
        Keyword arguments for the augmentation policy's factory.

    Returns
    -------
    policy : callable
        ``policy(x, generator)``: a batch of the same shape, one random draw per sample.
    """
    return _lookup("augmentation policy", name)(**params)


def list_aggregations(filter: str | None = None) -> list[str]:
    """Sorted names of registered aggregation functions, optionally filtered by :func:`matches`.

    Parameters
    ----------
    filter : str, list of str or None, default=None
        An fnmatch pattern (``"resnet*"``, which also finds ``timm/resnet*``) or a
        list of them, compared case-insensitively (:func:`matches`); None lists all.

    Returns
    -------
    names : list of str
        Sorted registered names.
    """
    return _list("aggregation", filter)


def create_aggregation(name: str, **params):
    """Return the registered aggregation ``name``, with ``params`` bound.

    Parameters
    ----------
    name : str
        A registered aggregation name (``list_aggregations()``);
        an unknown name raises :class:`~repens_sklearn.exceptions.UnknownNameError`
        with the closest registered names.
    **params : dict
        Keyword arguments for the aggregation's factory.

    Returns
    -------
    aggregation : callable
        Maps ``views`` of shape ``(S, N, D)`` to ``(N, D)``.
    """
    fn = _lookup("aggregation", name)
    if not params:
        return fn
    import functools

    return functools.partial(fn, **params)
