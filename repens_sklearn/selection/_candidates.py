"""Candidate lists: validation, wrapping of backbone names, parallel cached embedding."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError


def check_named_list(items, param_name, what="candidate"):
    """``items`` as a list of ``(name, object)`` with unique string names, or raise."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(
            f"{param_name} must be a list of (name, {what}) tuples, got "
            f"{type(items).__name__}: {items!r}"
        )
    items = list(items)
    if not items:
        raise ValueError(f"{param_name} must hold at least one (name, {what}) tuple, got []")
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(
                f"{param_name}[{i}] must be a (name, {what}) tuple with a string name, got {item!r}"
            )
    names = [name for name, _ in items]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{param_name} has duplicate names {duplicates}; names must be unique")
    return items


def as_transformer(candidate, name, random_state=None):
    """A scikit-learn transformer for ``candidate``.

    A registered backbone name or an ``nn.Module`` becomes
    ``MeanTTAEmbedder(backbone=..., n_augmentations=0, random_state=random_state)``
    (its plain embedding; the seed fixes a named backbone's initialisation).
    """
    if isinstance(candidate, str) or _is_module(candidate):
        from ..embedders import MeanTTAEmbedder  # lazy: embedders import the heavy parts

        return MeanTTAEmbedder(backbone=candidate, n_augmentations=0, random_state=random_state)
    if not (hasattr(candidate, "transform") and hasattr(candidate, "fit")):
        raise TypeError(
            f"candidate {name!r} must be a scikit-learn transformer (fit/transform), a "
            f"registered backbone name or a torch.nn.Module, got {type(candidate).__name__}"
        )
    return candidate


def _is_module(obj):
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, nn.Module)


def embed_candidate(cached_fit_embed, name, transformer, X, y, score_fn=None):
    """Run ``cached_fit_embed`` for one candidate; errors name the candidate."""
    try:
        fitted, Z = cached_fit_embed(transformer, X, y)
    except Exception as exc:
        raise_naming(exc, f"candidate {name!r} failed to fit/embed")
    if score_fn is None:
        return fitted, Z
    try:
        return fitted, score_fn(Z)
    except Exception as exc:
        raise_naming(exc, f"candidate {name!r}")


def raise_naming(exc, context):
    """Re-raise ``exc`` with ``context`` (which names the candidate) in front of its message.

    The library's own exceptions (:mod:`repens_sklearn.exceptions`) keep their
    type, so callers (the CLI) branch on it; other common base types are kept
    (a subclass of ValueError is raised as a ValueError, so callers can still
    catch it); the rest become a RuntimeError, always chained to the original.
    """
    if type(exc).__module__ == "repens_sklearn.exceptions":
        raise type(exc)(f"{context}: {exc}") from exc
    for base in (NotFittedError, ValueError, TypeError, AttributeError, RuntimeError):
        if isinstance(exc, base):
            raise base(f"{context}: {exc}") from exc
    raise RuntimeError(f"{context}: {type(exc).__name__}: {exc}") from exc


def make_parallel(n_jobs, verbose, desc="candidates"):
    """``joblib.Parallel``, or with ``verbose`` and one effective job a progress bar.

    joblib's sequential path (one effective job) crashes in ``print_progress``
    when ``verbose`` is set, and prints nothing without it, so the sequential
    case with ``verbose`` runs the tasks itself under a tqdm bar named ``desc``.
    """
    from joblib import Parallel, effective_n_jobs

    dispatched = effective_n_jobs(n_jobs) != 1
    if verbose and not dispatched:
        return _SequentialWithProgress(desc)
    return Parallel(n_jobs=n_jobs, verbose=10 if verbose else 0)


class _SequentialWithProgress:
    def __init__(self, desc):
        self.desc = desc

    def __call__(self, tasks):
        from tqdm.auto import tqdm

        tasks = list(tasks)
        return [fn(*args, **kwargs) for fn, args, kwargs in tqdm(tasks, desc=self.desc)]
