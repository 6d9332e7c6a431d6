"""Caruana et al. (2004) greedy ensemble selection with running sums.

At each step every candidate is tried as the next member: the ensemble's
probability is ``(running_sum + P[m]) / (t + 1)``, scored for all candidates at
once. Nothing is re-averaged from scratch; the running sum gets the winner.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.validation import column_or_1d

from ..diversity._metrics import _check_proba  # one rule for "rows are probabilities"

_EPS = np.finfo(np.float64).eps


def _losses(total, P, y_idx, count, scoring, rows):
    """Loss (lower is better) of ``(total + P[m]) / count`` for every candidate m on ``rows``."""
    if scoring == "log_loss":
        # only the true-class probability enters the cross-entropy
        p_true = (total[rows, y_idx[rows]][None, :] + P[:, rows, y_idx[rows]]) / count
        return -np.log(np.clip(p_true, _EPS, 1.0)).mean(axis=1)
    pred = np.argmax(total[None, rows] + P[:, rows], axis=2)
    return -(pred == y_idx[rows][None, :]).mean(axis=1)


def ensemble_score(proba, y_idx, scoring):
    """Validation score of averaged probabilities (log loss, or accuracy)."""
    if scoring == "log_loss":
        p_true = proba[np.arange(len(y_idx)), y_idx]
        return float(-np.log(np.clip(p_true, _EPS, 1.0)).mean())
    return float((np.argmax(proba, axis=1) == y_idx).mean())


def greedy_selection(
    P,
    y_idx,
    *,
    max_size=15,
    scoring="log_loss",
    replacement=False,
    bootstrap_fraction=None,
    random_state=None,
):
    """Greedy forward selection of ensemble members (Caruana et al., 2004).

    Parameters
    ----------
    P : ndarray of shape (n_candidates, n_samples, n_classes)
        Validation probabilities of each candidate: finite, in [0, 1], rows
        summing to 1 (checked; a ``ValueError`` names the first candidate that
        breaks this).
    y_idx : ndarray of shape (n_samples,)
        True class indices (integers in ``[0, n_classes)``).
    max_size : int
        Number of greedy picks (fewer without replacement when candidates run out).
    scoring : {"log_loss", "accuracy"}
        Log loss is minimised, accuracy maximised; equal scores go to the
        candidate listed first.
    replacement : bool
        Whether a candidate may be picked again (its weight grows).
    bootstrap_fraction : float or None
        Each step decides on ``round(fraction * n_samples)`` validation points
        drawn with replacement (section C.9 of the paper); the curve is still
        measured on all points.
    random_state : numpy Generator / RandomState, int or None
        Draws the bootstrap samples.

    Returns
    -------
    picks : list of int
        Candidate indices in pick order.
    curve : ndarray of shape (len(picks),)
        Score on all validation points after each pick, in the metric of ``scoring``.
    """
    if scoring not in ("log_loss", "accuracy"):  # anything else would score as accuracy
        raise ValueError(f"scoring must be 'log_loss' or 'accuracy'; got {scoring!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) or max_size < 1:
        raise ValueError(f"max_size must be an integer >= 1; got {max_size!r}")
    P, y_idx = _check_selection_inputs(P, y_idx)
    n_candidates, n_samples, _ = P.shape
    rng = (
        np.random.default_rng(random_state) if not hasattr(random_state, "choice") else random_state
    )
    total = np.zeros(P.shape[1:])
    used = np.zeros(n_candidates, dtype=bool)
    everyone = np.arange(n_samples)
    n_steps = max_size if replacement else min(max_size, n_candidates)
    picks, curve = [], []
    for step in range(n_steps):
        rows = everyone
        if bootstrap_fraction is not None:
            size = max(1, int(round(bootstrap_fraction * n_samples)))
            rows = rng.choice(n_samples, size=size, replace=True)
        losses = _losses(total, P, y_idx, step + 1, scoring, rows)
        if not replacement:
            losses[used] = np.inf
        best = int(np.argmin(losses))  # first index among equal losses
        picks.append(best)
        used[best] = True
        total += P[best]
        curve.append(ensemble_score(total / (step + 1), y_idx, scoring))
    return picks, np.asarray(curve)


def _check_selection_inputs(P, y_idx):
    """P as finite probabilities (n_candidates, n_samples, n_classes), y_idx as column indices.

    A NaN loss would win every ``argmin`` (numpy returns the first NaN), so a
    diverged candidate would be picked as the whole ensemble.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(
            f"P must have shape (n_candidates, n_samples, n_classes) with at least one "
            f"candidate and one sample; got shape {P.shape}"
        )
    for m in range(P.shape[0]):
        _check_proba(P[m], f"P[{m}]")
    y_idx = column_or_1d(y_idx)
    if len(y_idx) != P.shape[1]:
        raise ValueError(f"y_idx holds {len(y_idx)} labels but P holds {P.shape[1]} samples")
    if not np.issubdtype(y_idx.dtype, np.integer) or y_idx.min() < 0 or y_idx.max() >= P.shape[2]:
        raise ValueError(
            f"y_idx must hold class indices (integers in [0, {P.shape[2]})) into the columns "
            f"of P; got {y_idx.dtype} values from {y_idx.min()} to {y_idx.max()}"
        )
    return P, y_idx


def best_size(curve, scoring):
    """Smallest ensemble size reaching the best validation score."""
    curve = np.asarray(curve)
    index = np.argmin(curve) if scoring == "log_loss" else np.argmax(curve)
    return int(index) + 1
