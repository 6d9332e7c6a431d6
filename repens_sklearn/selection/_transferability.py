"""Transferability scores: how well an embedding suits a labelled task, before fine-tuning.

Each score maps embeddings ``Z`` of shape (n_samples, n_features) and class
labels ``y`` to one number, larger meaning "a better starting point". They are
computed from embeddings made once per candidate, vectorised over samples and
classes; LogME and the H-score work in float64.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from .._warnings import warn

from ._loo import loo_knn_accuracy

__all__ = ["hscore", "knn_loo_score", "linear_cv_score", "logme_score"]


def _check_Zy(Z, y, *, dtype="numeric", score="score"):
    """``(Z, class indices, n_classes)``; errors name ``Z`` or ``y``."""
    Z = check_array(Z, dtype=dtype, ensure_min_samples=2, input_name="Z")
    y = column_or_1d(y, warn=True)
    check_consistent_length(Z, y)
    kind = type_of_target(y, input_name="y")
    if kind.startswith("continuous"):
        # np.unique would make every distinct value a class of its own
        raise ValueError(
            f"{score} needs class labels in y; got continuous values (type_of_target "
            f"{kind!r}). Encode the classes as integers or strings (whole-number floats "
            "are accepted)"
        )
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{score} needs at least 2 classes in y; got 1 class ({classes[0]!r})")
    return Z, y_idx, len(classes)


def _one_hot(y_idx, n_classes):
    return np.eye(n_classes)[y_idx]


# --------------------------------------------------------------------------- kNN


def knn_loo_score(Z, y, *, n_neighbors=1, metric="euclidean"):
    """Leave-one-out k-nearest-neighbour accuracy of the embeddings.

    The proxy of "Deep Ensembles for Low-Data Transfer Learning" (Mustafa et
    al., 2020), section 2.3 step 1, after "Scalable Transfer Learning with
    Expert Models" (Puigcerver et al., 2020): every sample is classified by a
    majority vote of its ``n_neighbors`` nearest *other* samples. Computed with
    blocked similarity products (see :func:`loo_knn_accuracy`).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings.
    y : array-like of shape (n_samples,)
        Class labels.
    n_neighbors : int, default=1
        Neighbours voting; ties go to the nearest tied class.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Similarity of the kNN classifier.

    Returns
    -------
    score : float
        Accuracy in [0, 1].

    See Also
    --------
    logme_score, hscore, linear_cv_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import knn_loo_score
    >>> X, y = load_digits(return_X_y=True)
    >>> round(knn_loo_score(X, y), 3)
    0.988
    """
    Z, y_idx, _ = _check_Zy(Z, y, score="knn_loo_score")
    return loo_knn_accuracy(Z, y_idx, n_neighbors=n_neighbors, metric=metric)


# --------------------------------------------------------------------------- LogME


def logme_score(Z, y, *, max_iter=100, tol=1e-6):
    """LogME: log of the maximum evidence of a Bayesian linear model on the embeddings.

    "LogME: Practical Assessment of Pre-trained Models for Transfer Learning"
    (You, Liu, Wang and Long, ICML 2021), Algorithm 1. For each
    class ``c`` the one-hot target ``y_c`` is modelled as ``Z w + noise`` with a
    prior ``w ~ N(0, I / alpha)`` and noise precision ``beta``. Its evidence
    ``p(y_c | Z, alpha, beta)`` is maximised by the paper's fixed-point updates
    ``gamma = sum(beta s_i / (alpha + beta s_i))``, ``alpha = gamma / m'm``,
    ``beta = (n - gamma) / |Z m - y_c|^2`` (``s_i`` the eigenvalues of ``Z'Z``,
    ``m`` the posterior mean), started at ``alpha = beta = 1`` and run to
    convergence. The score is the maximised log evidence divided by
    ``n_samples``, averaged over classes.

    One thin SVD of ``Z`` serves all classes (the rewriting used by the
    authors' fast version, "Ranking and Tuning Pre-trained Models: A New
    Paradigm for Exploiting Model Hubs", You et al., JMLR 2022): with
    ``x = U' y_c`` every evaluation costs ``O(min(n, d))`` per class. The
    updates only move ``t = alpha / beta`` (for a given ``t`` the best ``beta``
    has a closed form), and the plain iteration can need thousands of steps
    to converge, so their fixed point is found as a 1-D root in ``log t``:
    walked to from ``alpha = beta = 1`` in the direction the updates move
    until they turn back, then bisected to ``tol``. The evidence is the
    paper's formula evaluated exactly there, including the ``d - n`` zero
    eigenvalues of ``Z'Z`` when ``d > n``, so it equals the Gaussian log
    density ``log N(y_c; 0, I / beta + Z Z' / alpha) / n``. When the evidence
    keeps growing as the noise vanishes (``beta -> inf``; a class that is a
    linear function of the features, always possible when ``n <= d``), the
    search stops at ``alpha / beta = eps * s_max`` (``eps = max(n, d)``
    machine epsilons, ``s_max`` the largest eigenvalue), which gives that
    noise-free limit; likewise for ``alpha -> inf``. Features are used as
    given (no centring or scaling), as in the paper.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels (continuous values are refused: LogME here scores
        classification tasks).
    max_iter : int, default=100
        Most bisection steps once the fixed point is bracketed (about 20 reach
        the default ``tol``); a ``ConvergenceWarning`` says when they did not
        suffice.
    tol : float, default=1e-6
        Relative precision of every class's ``alpha / beta``.

    Returns
    -------
    score : float
        Mean log evidence per sample, averaged over classes. Unbounded and
        possibly negative; only differences between candidates on the same
        data are meaningful.

    See Also
    --------
    knn_loo_score, hscore, linear_cv_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import logme_score
    >>> X, y = load_digits(return_X_y=True)
    >>> logme_score(X / 16, y) > logme_score(X[:, :8] / 16, y)
    True
    """
    _check_iteration(max_iter, tol, "logme_score")
    evidence, _, _ = _logme_per_class(Z, y, max_iter=max_iter, tol=tol)
    return float(np.mean(evidence))


def _check_iteration(max_iter, tol, score):
    if not isinstance(max_iter, Integral) or max_iter < 1:
        raise ValueError(f"{score}: max_iter must be an int >= 1, got {max_iter!r}")
    if not isinstance(tol, Real) or not tol > 0:
        raise ValueError(f"{score}: tol must be a float > 0, got {tol!r}")


def _logme_per_class(Z, y, *, max_iter=100, tol=1e-6):
    """Per-class log evidence / n, alpha and beta (arrays of shape (n_classes,))."""
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="logme_score")
    n, d = Z.shape
    u, s, _ = np.linalg.svd(Z, full_matrices=False)
    terms = _EvidenceTerms(s**2, u.T @ _one_hot(y_idx, n_classes), np.bincount(y_idx), n, d)
    t = _logme_fixed_point(terms, max_iter, tol)
    m2, res2 = terms.posterior(t)
    beta = n / (res2 + t * m2)  # the best beta for this alpha / beta (see _EvidenceTerms)
    alpha = t * beta
    log_det = np.log(alpha + beta * terms.sigma).sum(axis=0) + (d - len(s)) * np.log(alpha)
    evidence = (n * np.log(beta) + d * np.log(alpha) - n * np.log(2 * np.pi)
                - beta * res2 - alpha * m2 - log_det) / 2
    return evidence / n, alpha, beta


class _EvidenceTerms:
    """What every class's evidence needs from one SVD, as functions of ``t = alpha / beta``.

    For a fixed ``t`` the evidence is that of ``y_c ~ N(0, (I + Z Z' / t) / beta)``,
    largest at ``beta = n / (|Z m - y_c|^2 + t m'm)``; MacKay's updates (LogME
    Algorithm 1) then only move ``t``, so their fixed point is a 1-D root.

    Parameters
    ----------
    sigma : ndarray of shape (k,)
        Eigenvalues of ``Z'Z`` that can be non-zero (squared singular values).
    coords : ndarray of shape (k, n_classes)
        Coordinates of each one-hot target along Z's left singular vectors.
    norms2 : ndarray of shape (n_classes,)
        ``|y_c|^2``, the class counts.
    n, d : int
        Samples and features.
    """

    def __init__(self, sigma, coords, norms2, n, d):
        self.sigma, self.x2, self.n, self.d = sigma[:, None], coords**2, n, d
        self.outside = np.maximum(norms2 - self.x2.sum(axis=0), 0.0)  # part no w can fit

    def posterior(self, t):
        """``(m'm, |Z m - y_c|^2)`` per class, ``m`` the posterior mean at ``t``."""
        shrink = self.sigma + t
        m2 = (self.sigma * self.x2 / shrink**2).sum(axis=0)
        res2 = (self.x2 * (t / shrink) ** 2).sum(axis=0) + self.outside
        return m2, res2

    def step(self, t):
        """``log(t' / t)`` per class for one MacKay update ``t -> t'`` (0 at a fixed point)."""
        ratio = self.sigma / (self.sigma + t)  # beta s_i / (alpha + beta s_i)
        gamma = ratio.sum(axis=0)
        n_minus_gamma = (self.n - len(self.sigma)) + (1 - ratio).sum(axis=0)  # no cancellation
        m2, res2 = self.posterior(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            move = np.log(gamma * res2) - np.log(n_minus_gamma * m2) - np.log(t)
        # gamma = m'm = 0 only when Z is all zeros: alpha does not change the evidence
        return np.nan_to_num(move, nan=0.0)


_WALK = 0.5  # step in log(alpha / beta) while looking for the fixed point (a factor 1.65)


def _logme_fixed_point(terms, max_iter, tol):
    """``t = alpha / beta`` at the fixed point of MacKay's updates, for every class at once.

    The plain iteration converges linearly, sometimes over thousands of steps
    (stopping it early gives a wrong evidence). Instead, from the paper's start
    ``alpha = beta = 1``, walk in ``log t`` the way the updates move until they
    turn back, which brackets the fixed point the iteration approaches, then
    bisect. ``t`` stays within ``[eps, 1 / eps]`` times the largest eigenvalue
    (``eps = max(n, d)`` machine epsilons): where the evidence keeps growing as
    the noise vanishes (a target that is a linear function of the features,
    always possible when n <= d) or as the weights vanish (features unrelated
    to the target), the search stops at that limit.
    """
    eps = max(terms.n, terms.d) * np.finfo(np.float64).eps
    scale = terms.sigma.max() if terms.sigma.max() > 0 else 1.0
    lo, hi = np.log(eps * scale), np.log(scale / eps)
    left, right = _bracket(terms, np.clip(0.0, lo, hi), lo, hi)
    width = np.log1p(tol)
    for _ in range(max_iter):
        if np.all(right - left <= width):
            break
        mid = (left + right) / 2
        up = terms.step(np.exp(mid)) > 0  # the updates move t up from mid: the root is above
        left, right = np.where(up, mid, left), np.where(up, right, mid)
    if np.any(right - left > width):
        warn(f"logme_score: alpha / beta not within tol={tol} of its fixed point after "
             f"max_iter={max_iter} bisection steps; increase max_iter", ConvergenceWarning)
    return np.exp((left + right) / 2)


def _bracket(terms, start, lo, hi):
    """``(left, right)`` in ``log t`` around the first fixed point the updates reach from start.

    Left of it the updates move ``t`` up, right of it down; a class whose updates
    run into ``lo`` or ``hi`` gets that limit as a zero-width bracket.
    """
    u = np.full(terms.x2.shape[1], start)
    direction = np.sign(terms.step(np.exp(u)))
    left, right = u.copy(), u.copy()
    active = direction != 0
    while active.any():
        nxt = np.where(active, np.clip(u + direction * _WALK, lo, hi), u)
        turned = active & (np.sign(terms.step(np.exp(nxt))) != direction)
        limit = active & ~turned & ((nxt == lo) | (nxt == hi))
        left = np.where(turned, np.minimum(u, nxt), np.where(limit, nxt, left))
        right = np.where(turned, np.maximum(u, nxt), np.where(limit, nxt, right))
        u, active = nxt, active & ~turned & ~limit
    return left, right


# --------------------------------------------------------------------------- H-score


def hscore(Z, y, *, shrinkage="auto"):
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))``, the class separation a linear head can use.

    "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning" (Bao, Li, Huang, Zhang, Zheng, Zamir and Guibas, ICIP 2019), the
    definition of the H-score: the between-class covariance of the features
    (covariance of the class-conditional means, weighted by class frequency)
    measured in the metric of the inverse feature covariance. It is the
    trace of the between-class to total scatter ratio of linear discriminant
    analysis, so it lies in ``[0, n_classes - 1]`` when the covariance is
    inverted exactly.

    The sample covariance of a few hundred embeddings of a wide network is
    singular or nearly so, and its plain (pseudo-)inverse drives every wide
    candidate towards the same ceiling. By default the covariance is therefore
    shrunk towards ``mu I`` (``mu`` its mean eigenvalue) with the Ledoit-Wolf
    coefficient ``alpha``, the regularised H-score of "Newer is not always
    better: Rethinking transferability metrics, their peculiarities, stability
    and performance" (Ibrahim, Ponomareva and Mazumder, ECML-PKDD 2022)::

        H_alpha = tr(((1 - alpha) cov(f) + alpha mu I)^-1 (1 - alpha) cov(E[f | y]))

    The between-class covariance is shrunk by the same ``1 - alpha`` as the
    covariance (as in TLlib's ``regularized_h_score``), so ``H_alpha`` is the
    H-score with a ridge ``alpha mu / (1 - alpha)`` and stays within
    ``[0, n_classes - 1]``. Both covariances are the biased (``1 / n``) sample
    ones; TLlib's ``np.cov`` between-class covariance makes its values
    ``n / (n - 1)`` times these, which ranks candidates on the same data
    identically. ``shrinkage=0`` gives Bao et al.'s definition with the
    Moore-Penrose pseudo-inverse. One thin SVD of the centred features serves
    the inverse, the Ledoit-Wolf coefficient and the trace.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    shrinkage : "auto" or float in [0, 1), default="auto"
        ``"auto"``: Ledoit-Wolf coefficient (as
        :func:`sklearn.covariance.ledoit_wolf_shrinkage`; where it is 1, the
        score is 0); a float: that coefficient; ``0``: no shrinkage,
        pseudo-inverse (eigenvalues below ``max(n_samples, n_features) * eps``
        times the largest are dropped). 1 is refused: it scores every
        candidate 0.

    Returns
    -------
    score : float
        In ``[0, n_classes - 1]``. 0 when all features are constant.

    See Also
    --------
    knn_loo_score, logme_score, linear_cv_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import hscore
    >>> X, y = load_digits(return_X_y=True)
    >>> hscore(X, y) > hscore(X[:, :8], y)
    True
    """
    _check_shrinkage(shrinkage)
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="hscore")
    n, d = Z.shape
    Zc = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(Zc, full_matrices=False)
    eig = s**2 / n  # covariance eigenvalues along the rows of vt; the rest are 0
    if eig.sum() <= 0:
        return 0.0
    counts = np.bincount(y_idx, minlength=n_classes)
    # rows: sqrt(p_c) (E[f | c] - E[f]), so that G'G = cov(E[f | y])
    G = (_one_hot(y_idx, n_classes).T @ Zc) / np.sqrt(counts * n)[:, None]
    rho = _ledoit_wolf_from_svd(Zc, eig, d) if shrinkage == "auto" else float(shrinkage)
    return _trace_inverse_times(G, vt, eig, rho, d, tol=max(n, d) * np.finfo(float).eps)


def _check_shrinkage(shrinkage):
    if isinstance(shrinkage, str) and shrinkage == "auto":
        return
    if isinstance(shrinkage, Real) and not isinstance(shrinkage, bool) and 0 <= shrinkage < 1:
        return
    # at 1, (1 - shrinkage) cov(E[f | y]) vanishes: every candidate would score 0
    raise ValueError(f"hscore: shrinkage must be 'auto' or a float in [0, 1), got {shrinkage!r}")


def _ledoit_wolf_from_svd(Zc, eig, d):
    """Ledoit-Wolf coefficient (scikit-learn's formula) from the SVD and the row norms."""
    n = len(Zc)
    trace = eig.sum()
    frob2 = (eig**2).sum()  # |cov|_F^2
    row4 = (np.einsum("ij,ij->i", Zc, Zc) ** 2).sum()  # sum_k |z_k|^4
    beta = (row4 / n - frob2) / (d * n)
    delta = (frob2 - trace**2 / d) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _trace_inverse_times(G, vt, eig, rho, d, tol):
    """``(1 - rho) tr(G S^-1 G')`` for ``S = (1 - rho) cov + rho mu I`` (pseudo-inverse at 0).

    ``G'G`` is the between-class covariance; its ``1 - rho`` factor is Ibrahim et
    al.'s (the ridge form of the H-score).
    """
    proj = G @ vt.T  # (C, k) coordinates along the covariance's eigenvectors
    if rho == 0:
        keep = eig > tol * eig.max()
        return float((proj[:, keep] ** 2 / eig[keep]).sum())
    mu = eig.sum() / d
    inside = (proj**2 / ((1 - rho) * eig + rho * mu)).sum()
    outside = max((G**2).sum() - (proj**2).sum(), 0.0) / (rho * mu)  # orthogonal complement
    return float((1 - rho) * (inside + outside))


# --------------------------------------------------------------------------- linear probe


def linear_cv_score(Z, y, *, cv=5, C=1.0, max_iter=1000, n_jobs=None):
    """Cross-validated accuracy of a logistic-regression probe on the embeddings.

    Logistic regression on fixed features, the linear-evaluation protocol of
    "Do Better ImageNet Models Transfer Better?" (Kornblith, Shlens and Le,
    CVPR 2019, section 4.1), used as a selection score: scikit-learn's
    :func:`~sklearn.model_selection.cross_val_score` of
    ``make_pipeline(StandardScaler(), LogisticRegression(C=C))`` on ``(Z, y)``.
    The most direct proxy for a linear head on frozen features, and the most
    expensive of the scores here (one L-BFGS fit per fold).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    cv : int or cross-validation splitter, default=5
        An int gives ``StratifiedKFold`` (no shuffling) with that many folds,
        capped at the size of the smallest class.
    C : float, default=1.0
        Inverse L2 regularisation of the logistic regression.
    max_iter : int, default=1000
        L-BFGS iterations per fit.
    n_jobs : int or None, default=None
        Folds fitted in parallel by ``cross_val_score``.

    Returns
    -------
    score : float
        Mean accuracy over the folds, in [0, 1].

    See Also
    --------
    knn_loo_score, logme_score, hscore : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import linear_cv_score
    >>> X, y = load_digits(return_X_y=True)
    >>> round(linear_cv_score(X, y), 2)
    0.92
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Z, y_idx, _ = _check_Zy(Z, y, dtype=np.float64, score="linear_cv_score")
    if isinstance(cv, Integral):
        cv = StratifiedKFold(_n_folds(cv, y, y_idx))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return float(cross_val_score(probe, Z, y_idx, cv=cv, n_jobs=n_jobs).mean())


def _n_folds(cv, y, y_idx):
    if cv < 2:
        raise ValueError(f"linear_cv_score: cv must be >= 2 folds, got {cv!r}")
    counts = np.bincount(y_idx)
    if counts.min() < 2:
        rare = np.unique(column_or_1d(y))[counts.argmin()]
        raise ValueError(
            f"linear_cv_score needs at least 2 samples of every class in y for "
            f"cross-validation; class {getattr(rare, 'item', lambda: rare)()!r} has 1"
        )
    return int(min(cv, counts.min()))
