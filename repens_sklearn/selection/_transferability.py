"""Transferability scores: how well an embedding suits a labelled task, before fine-tuning.

Each score maps embeddings ``Z`` of shape (n_samples, n_features) and class
labels ``y`` to one number, larger meaning "a better starting point". They are
computed from embeddings made once per candidate, vectorised over samples and
classes; all but the kNN accuracy work in float64.

Besides the kNN accuracy, LogME, the H-score and the linear probe, the scores
of the recent literature: NLEEP, SFDA, GBC, TransRate and ETran. No one score
ranks best everywhere ("How stable are Transferability Metrics evaluations?",
Agostinelli et al., ECCV 2022), so :func:`mean_rank_score` aggregates several
by the mean rank they give each candidate (``TransferabilitySelector(scoring=[...])``).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp, softmax
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from .._warnings import warn
from ._loo import loo_knn_accuracy

__all__ = [
    "etran_score",
    "gbc_score",
    "hscore",
    "knn_loo_score",
    "linear_cv_score",
    "logme_score",
    "mean_rank_score",
    "nleep_score",
    "sfda_score",
    "transrate_score",
]


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


def _check_number(value, name, score, kind, accept, expected, *, allow_bool=False):
    """Raise ``ValueError`` naming ``score`` and ``name`` unless ``value`` is a number of
    ``kind`` (Integral or Real) with ``accept(value)``; ``expected`` words the rule."""
    if (
        not isinstance(value, kind)
        or (isinstance(value, bool) and not allow_bool)
        or not accept(value)
    ):
        raise ValueError(f"{score}: {name} must be {expected}, got {value!r}")


def _check_iteration(max_iter, tol, score):
    _check_number(
        max_iter, "max_iter", score, Integral, lambda v: v >= 1, "an int >= 1", allow_bool=True
    )
    _check_number(tol, "tol", score, Real, lambda v: v > 0, "a float > 0", allow_bool=True)


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
    evidence = (
        n * np.log(beta)
        + d * np.log(alpha)
        - n * np.log(2 * np.pi)
        - beta * res2
        - alpha * m2
        - log_det
    ) / 2
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
        warn(
            f"logme_score: alpha / beta not within tol={tol} of its fixed point after "
            f"max_iter={max_iter} bisection steps; increase max_iter",
            ConvergenceWarning,
        )
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
    # at 1, (1 - shrinkage) cov(E[f | y]) vanishes: every candidate would score 0
    if not (isinstance(shrinkage, str) and shrinkage == "auto"):
        _check_number(
            shrinkage,
            "shrinkage",
            "hscore",
            Real,
            lambda v: 0 <= v < 1,
            "'auto' or a float in [0, 1)",
        )


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


# --------------------------------------------------------------------------- NLEEP


def nleep_score(Z, y, *, variance=0.8, components_per_class=5, random_state=0):
    """NLEEP: LEEP with the posteriors of a Gaussian mixture fitted to the embeddings.

    "Ranking Neural Checkpoints" (Li, Jia, Zhou, Karamchandani, Chen, Zhu and
    Kolluri, CVPR 2021), section 3.3: the embeddings are reduced by PCA to the
    components explaining ``variance`` of their variance (80 %), a Gaussian
    mixture with ``components_per_class`` times the number of classes (5 C)
    full-covariance components is fitted to them (scikit-learn's
    :class:`~sklearn.mixture.GaussianMixture` defaults), and its posteriors
    ``pi_iv = p(v | z_i)`` play the source classifier's part in LEEP
    (Nguyen et al., ICML 2020, eq. 2)::

        P(y, v) = sum_i [y_i = y] pi_iv / n,   P(y | v) = P(y, v) / sum_y' P(y', v)
        NLEEP = sum_i log(sum_v P(y_i | v) pi_iv) / n

    The log is the paper's (the SFDA authors' reimplementation drops it). The
    mixture is seeded by ``random_state``; its components are capped at the
    number of samples. Features with no variance at all give the limit where
    every sample has the same posterior: the mean log class frequency.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    variance : float in (0, 1], default=0.8
        Fraction of the variance the PCA keeps.
    components_per_class : int, default=5
        Mixture components per class.
    random_state : int, RandomState instance or None, default=0
        Seeds the mixture's k-means initialisation.

    Returns
    -------
    score : float
        Mean log-likelihood of the labels, in ``(-inf, 0]``.

    See Also
    --------
    logme_score, sfda_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import nleep_score
    >>> X, y = load_digits(return_X_y=True)
    >>> nleep_score(X, y) > nleep_score(X[:, :8], y)
    True
    """
    from sklearn.mixture import GaussianMixture

    _check_number(
        variance, "variance", "nleep_score", Real, lambda v: 0 < v <= 1, "a float in (0, 1]"
    )
    _check_number(
        components_per_class,
        "components_per_class",
        "nleep_score",
        Integral,
        lambda v: v >= 1,
        "an int >= 1",
        allow_bool=True,
    )
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="nleep_score")
    if not np.ptp(Z, axis=0).any():  # one point: every posterior is the same
        return float(np.log(np.bincount(y_idx)[y_idx] / len(y_idx)).mean())
    X = _pca(Z, variance=variance)
    n_components = min(components_per_class * n_classes, len(X))
    gmm = GaussianMixture(n_components, random_state=random_state).fit(X)
    return _leep(gmm.predict_proba(X), y_idx, n_classes)


def _pca(Z, *, n_components=None, variance=None):
    """Principal-component scores of Z: the first ``n_components``, or those explaining
    ``variance`` (the fewest whose cumulative ratio reaches it, as scikit-learn's PCA).

    One thin SVD (LAPACK's divide and conquer), several times faster here than
    ``PCA(svd_solver="full")``.
    """
    Zc = Z - Z.mean(axis=0)
    u, s, _ = np.linalg.svd(Zc, full_matrices=False)
    if variance is not None:
        ratio = np.cumsum(s**2) / max((s**2).sum(), np.finfo(float).tiny)
        n_components = int(np.searchsorted(ratio, variance - 1e-12) + 1)
    n_components = min(n_components, len(s))
    return u[:, :n_components] * s[:n_components]


def _leep(post, y_idx, n_classes):
    """LEEP of posteriors ``post`` (n, V) over pseudo-classes: mean log p(y_i | x_i)."""
    joint = _one_hot(y_idx, n_classes).T @ post  # (C, V), times n
    cond = joint / np.maximum(joint.sum(axis=0), np.finfo(float).tiny)  # P(y | v)
    p = np.einsum("iv,iv->i", post, cond[y_idx])
    return float(np.log(np.maximum(p, np.finfo(float).tiny)).mean())


# --------------------------------------------------------------------------- SFDA / LDA


def sfda_score(Z, y, *, shrinkage="auto"):
    """SFDA: accuracy of a regularised Fisher classifier on self-challenged embeddings.

    "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space" (Shao, Zhao, Ge, Lu, Ma, Jiang, Luo and Zhang,
    ECCV 2022), section 3: a linear discriminant analysis with the within-class
    covariance shrunk towards ``mu I`` (``mu`` its mean eigenvalue),
    ``S = (1 - lambda) S_w + lambda mu I`` with the adaptive
    ``lambda = max(exp(-5 sigma_max(S_w)), 1e-10)``, gives class probabilities
    ``p(c | z_i)``; they are softened by a second softmax and every sample is
    moved towards the mean of the *other* classes' means ``m_{-y_i}`` by its
    confidence (ConfMix): ``z_i <- q_i z_i + (1 - q_i) m_{-y_i}``, ``q_i`` its
    softened probability of its own class. A second discriminant analysis with
    the same ``lambda`` on the mixed embeddings scores the mean probability of
    the true class (without log, as the authors do). Where the authors' code
    estimates ``sigma_max`` by three power iterations, it is exact here (one
    SVD of the within-class centred embeddings serves it and the inverse).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    shrinkage : "auto" or float in (0, 1], default="auto"
        ``lambda``; "auto" is the paper's adaptive value.

    Returns
    -------
    score : float
        Mean probability of the true class, in ``(0, 1]``.

    See Also
    --------
    etran_score, logme_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import sfda_score
    >>> X, y = load_digits(return_X_y=True)
    >>> sfda_score(X / 16, y) > sfda_score(X[:, :8] / 16, y)
    True
    """
    _check_lda_shrinkage(shrinkage, "sfda_score")
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="sfda_score")
    proba, lam = _lda_proba(Z, y_idx, n_classes, shrinkage)
    own = softmax(proba, axis=1)[np.arange(len(Z)), y_idx][:, None]  # softened confidence
    means = _class_means(Z, y_idx, n_classes)
    others = (means.sum(axis=0) - means) / (n_classes - 1)  # mean of the other classes' means
    mixed = own * Z + (1 - own) * others[y_idx]
    proba, _ = _lda_proba(mixed, y_idx, n_classes, lam)
    return float(proba[np.arange(len(Z)), y_idx].mean())


def _check_lda_shrinkage(shrinkage, score):
    if not (isinstance(shrinkage, str) and shrinkage == "auto"):
        _check_number(
            shrinkage, "shrinkage", score, Real, lambda v: 0 < v <= 1, "'auto' or a float in (0, 1]"
        )


def _class_means(Z, y_idx, n_classes):
    return (_one_hot(y_idx, n_classes).T @ Z) / np.bincount(y_idx, minlength=n_classes)[:, None]


def _lda_proba(Z, y_idx, n_classes, shrinkage):
    """``(p(c | z_i) of the shrunk LDA, lambda)``; lambda adaptive when shrinkage is "auto".

    ``S = (1 - lambda) S_w + lambda mu I`` is inverted through the SVD of the
    within-class centred embeddings ``W = V diag(s^2 / n) V'``: the
    directions outside V get ``1 / (lambda mu)``.
    """
    n, d = Z.shape
    means = _class_means(Z, y_idx, n_classes)
    _, s, vt = np.linalg.svd(Z - means[y_idx], full_matrices=False)
    eig = s**2 / n
    lam = max(np.exp(-5 * eig.max()), 1e-10) if shrinkage == "auto" else float(shrinkage)
    mu = eig.sum() / d if eig.sum() > 0 else 1.0  # no within-class scatter: S = lambda I
    coords = means @ vt.T  # (C, k)
    inv_means = (coords / ((1 - lam) * eig + lam * mu)) @ vt + (means - coords @ vt) / (
        lam * mu
    )  # S^-1 m_c, rows
    priors = np.bincount(y_idx, minlength=n_classes) / n
    logits = Z @ inv_means.T - 0.5 * np.einsum("cd,cd->c", means, inv_means) + np.log(priors)
    return softmax(logits, axis=1), lam


# --------------------------------------------------------------------------- GBC


def gbc_score(Z, y, *, n_components=64, gaussian="spherical"):
    """GBC: minus the summed Bhattacharyya coefficients between the classes' Gaussians.

    "Transferability Estimation using Bhattacharyya Class Separability"
    (Pandy, Agostinelli, Uijlings, Ferrari and Mensink, CVPR 2022), section 3:
    the embeddings are reduced by PCA to ``n_components`` dimensions (64), each
    class is modelled as a Gaussian with a spherical (the default) or diagonal
    covariance, and::

        D_B(c, c') = (m_c - m_c')' S^-1 (m_c - m_c') / 8
                     + log(det S / sqrt(det S_c det S_c')) / 2,   S = (S_c + S_c') / 2
        GBC = - sum_{c != c'} exp(-D_B(c, c'))

    Variances are the biased (``1 / n_c``) per-dimension ones, floored at 1e-4
    as in the authors' code (google-research ``stable_transfer``); a spherical
    covariance is their mean times the identity. The log-determinant term counts
    every dimension, as the paper's formula does (the authors' spherical code
    adds it once).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    n_components : int or None, default=64
        PCA dimensions (capped at ``min(n_samples, n_features)``); None keeps
        the features as they are.
    gaussian : {"spherical", "diagonal"}, default="spherical"
        Covariance of every class.

    Returns
    -------
    score : float
        In ``[-C (C - 1), 0]``: 0 when the classes do not overlap at all.

    See Also
    --------
    hscore, transrate_score : other class-separation scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import gbc_score
    >>> X, y = load_digits(return_X_y=True)
    >>> gbc_score(X, y) > gbc_score(X[:, :8], y)
    True
    """
    if gaussian not in ("spherical", "diagonal"):
        raise ValueError(f"gbc_score: gaussian must be 'spherical' or 'diagonal', got {gaussian!r}")
    if n_components is not None:
        _check_number(
            n_components,
            "n_components",
            "gbc_score",
            Integral,
            lambda v: v >= 1,
            "an int >= 1 or None",
        )
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="gbc_score")
    if n_components is not None and Z.shape[1] > 1:
        Z = _pca(Z, n_components=n_components)
    means = _class_means(Z, y_idx, n_classes)
    var = np.maximum(_class_means((Z - means[y_idx]) ** 2, y_idx, n_classes), 1e-4)
    if gaussian == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), Z.shape[1], axis=1)
    avg = (var[:, None] + var[None]) / 2  # (C, C, d)
    dist = ((means[:, None] - means[None]) ** 2 / avg).sum(-1) / 8 + (
        np.log(avg).sum(-1) - (np.log(var).sum(-1)[:, None] + np.log(var).sum(-1)[None]) / 2
    ) / 2
    coef = np.exp(-dist)
    return float(-(coef.sum() - np.trace(coef)))


# --------------------------------------------------------------------------- TransRate


def transrate_score(Z, y, *, eps=1e-2):
    """TransRate: coding rate of the embeddings minus their coding rate given the class.

    "Frustratingly Easy Transferability Estimation" (Huang, Huang, Ren, Wang,
    Xu and Liu, ICML 2022), section 3, the rate-distortion formula of
    maximal coding rate reduction (Yu et al., NeurIPS 2020) on centred
    embeddings ``Z``::

        R(Z) = logdet(I + d / (n eps^2) Z'Z) / 2
        R(Z | y) = sum_c n_c / n * logdet(I + d / (n_c eps^2) Z_c'Z_c) / 2
        TransRate = R(Z) - R(Z | y)

    Each log-determinant comes from singular values. The authors' code differs
    in its constants (``1 / (n eps)`` without ``d``, an unweighted mean over
    classes); the formula here is the paper's.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    eps : float, default=1e-2
        Distortion ``eps`` (``eps^2 = 1e-4``, the authors' code's value).

    Returns
    -------
    score : float
        Coding-rate reduction in nats; unbounded, compare candidates on the
        same data only.

    See Also
    --------
    gbc_score, hscore : other class-separation scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import transrate_score
    >>> X, y = load_digits(return_X_y=True)
    >>> transrate_score(X / 16, y) > transrate_score(X[:, :8] / 16, y)
    True
    """
    _check_number(eps, "eps", "transrate_score", Real, lambda v: v > 0, "a float > 0")
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="transrate_score")
    Z = Z - Z.mean(axis=0)
    n, d = Z.shape
    given = sum((y_idx == c).mean() * _coding_rate(Z[y_idx == c], d, eps) for c in range(n_classes))
    return float(_coding_rate(Z, d, eps) - given)


def _coding_rate(Z, d, eps):
    """``logdet(I + d / (n eps^2) Z'Z) / 2`` from the singular values of Z."""
    s = np.linalg.svd(Z, compute_uv=False)
    return float(np.log1p(d / (len(Z) * eps**2) * s**2).sum() / 2)


# --------------------------------------------------------------------------- ETran


def etran_score(Z, y, *, energy_fraction=0.005, shrinkage="auto"):
    """ETran for classification: energy score plus LDA score of the embeddings.

    "ETran: Energy-Based Transferability Estimation" (Gholami, Akbari, Wang,
    Rezaei and Zhang, ICCV 2023), section 3: the energy score ``S_en`` treats
    the embedding as logits, ``-E(z) = logsumexp_j z_j``, and averages it over
    the samples of lowest ``-E`` (the ``energy_fraction`` of them, 0.5 % in
    the authors' code, at least one); the LDA score ``S_lda`` is the mean
    probability of the true class under the shrunk linear discriminant
    analysis of :func:`sfda_score` (its first stage, adaptive ``lambda``). The
    score is ``S_en + S_lda``. The authors' code instead min-max normalizes the
    two parts over the model zoo and weighs them 0.15 / 0.85, which needs all
    candidates at once (``TransferabilitySelector(scoring=[...])`` aggregates scores
    over the zoo by rank); the detection-only SVD part is left out.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings; converted to float64.
    y : array-like of shape (n_samples,)
        Class labels.
    energy_fraction : float in (0, 1], default=0.005
        Fraction of samples (lowest ``logsumexp``) the energy score averages.
    shrinkage : "auto" or float in (0, 1], default="auto"
        ``lambda`` of the LDA, as in :func:`sfda_score`.

    Returns
    -------
    score : float
        Unbounded; compare candidates on the same data only.

    See Also
    --------
    sfda_score, logme_score : other transferability scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from repens_sklearn.selection import etran_score
    >>> X, y = load_digits(return_X_y=True)
    >>> etran_score(X / 16, y) > etran_score(X[:, :8] / 16, y)
    True
    """
    _check_number(
        energy_fraction,
        "energy_fraction",
        "etran_score",
        Real,
        lambda v: 0 < v <= 1,
        "a float in (0, 1]",
    )
    _check_lda_shrinkage(shrinkage, "etran_score")
    Z, y_idx, n_classes = _check_Zy(Z, y, dtype=np.float64, score="etran_score")
    energy = np.sort(logsumexp(Z, axis=1))[: max(1, int(energy_fraction * len(Z)))].mean()
    proba, _ = _lda_proba(Z, y_idx, n_classes, shrinkage)
    return float(energy + proba[np.arange(len(Z)), y_idx].mean())


# --------------------------------------------------------------------------- rank aggregate


def mean_rank_score(table):
    """Mean normalized rank of every candidate over several scores (a Borda count).

    Each row of ``table`` holds one score's values for all candidates (larger
    is better); each row is turned into ranks (ties share their average rank),
    scaled to ``[0, 1]`` (0 the worst, 1 the best: the fraction of the other
    candidates it beats), and the rows are averaged. A score's scale and
    outliers no longer matter, which is what makes several scores comparable
    and the ranking more stable than any one of them ("How stable are
    Transferability Metrics evaluations?", Agostinelli et al., ECCV 2022).

    Parameters
    ----------
    table : array-like of shape (n_scores, n_candidates)
        Finite score values.

    Returns
    -------
    aggregate : ndarray of shape (n_candidates,)
        In ``[0, 1]``; a single candidate gets 1.

    Examples
    --------
    >>> from repens_sklearn.selection import mean_rank_score
    >>> mean_rank_score([[0.9, 0.5, 0.7], [-1.0, -2.0, -3.0]])
    array([1.  , 0.25, 0.25])
    """
    table = check_array(table, dtype=np.float64, input_name="table")
    if table.shape[1] == 1:
        return np.ones(1)
    ranks = rankdata(table, axis=1) - 1  # 0 for the worst, average ranks for ties
    return ranks.mean(axis=0) / (table.shape[1] - 1)
