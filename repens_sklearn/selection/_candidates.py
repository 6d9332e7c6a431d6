"""Candidates' parallel, cached embedding and errors that name the candidate.

Which members a composite accepts lives in :mod:`repens_sklearn._composition`.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError


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
