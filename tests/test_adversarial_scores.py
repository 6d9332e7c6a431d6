"""Transferability scores against reference formulas written here (issue #21, section 4).

Every reference is computed independently of the library, in float64 with numpy:
LogME by the paper's fixed point on the full D x D problem (all D eigenvalues of
F'F, the zero ones included when D > N) run to convergence; the H-score as
``tr(S^-1 (1 - alpha) cov(E[f | y]))`` with the shrunk covariance ``S`` of
Ibrahim et al. (2022), or with the pseudo-inverse of the covariance. Values are
compared on single problems and rankings over families of candidates
(D < N and D > N); leave-one-out kNN against scikit-learn's own.
"""

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.covariance import LedoitWolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from repens_sklearn.selection import (
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    loo_knn_accuracy,
)

N_TASK = 60  # samples of the shared task the candidate families are ranked on


def _features(n, d, signal, seed, n_classes=3):
    """Gaussian features with a class-dependent shift of strength ``signal``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    Z = rng.normal(size=(n, d)) + signal * np.eye(n_classes)[y] @ rng.normal(size=(n_classes, d))
    return Z, y


# (n, d, signal, seed): twelve problems, five with D > N
PROBLEMS = [
    (80, 5, 0.5, 0),
    (80, 12, 0.3, 1),
    (60, 20, 0.8, 2),
    (50, 8, 1.5, 3),
    (40, 40, 0.4, 4),
    (100, 30, 0.2, 5),
    (45, 10, 0.6, 6),
    (30, 60, 0.3, 7),
    (24, 40, 0.2, 8),
    (20, 50, 0.2, 12),
    (40, 80, 0.2, 17),
    (30, 45, 0.35, 11),
]


def _family(widths, signals, seed=0):
    """Candidates of several widths and signal strengths embedding the same task."""
    rng = np.random.default_rng(seed)
    y = np.arange(N_TASK) % 4
    means = rng.normal(size=(4, max(widths)))
    family = [rng.normal(size=(N_TASK, d)) + s * means[y, :d] for d, s in zip(widths, signals)]
    return family, y


# widths below and above N_TASK = 60
NARROW = _family(
    [4, 8, 8, 16, 24, 32, 12, 20, 6, 40], [0.3, 0.2, 0.6, 0.4, 0.3, 0.5, 0.9, 0.1, 1.2, 0.35]
)
WIDE = _family(
    [80, 120, 100, 140, 90, 130, 70, 110, 125, 95],
    [0.1, 0.15, 0.2, 0.12, 0.25, 0.08, 0.3, 0.18, 0.05, 0.22],
    1,
)


def _assert_same_ranking(ours, reference):
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert np.ptp(reference) > 0
    assert np.array_equal(np.argsort(ours), np.argsort(reference)), (ours, reference)
    assert kendalltau(ours, reference).statistic == pytest.approx(1.0)


# --------------------------------------------------------------------------- LogME reference


def _ref_logme(F, y, tol=1e-12, max_iter=20000):
    """Mean over classes of the log evidence / n, You et al. (2021) Algorithm 1 to convergence.

    Every class iterates the paper's updates from alpha = beta = 1 with the full
    D x D eigendecomposition of F'F: all D eigenvalues enter log|A|, the D - N
    zero ones included when D > N. A class whose alpha / beta runs off to
    infinity (the weights vanish) gets the evidence of that limit, noise alone.
    """
    n, d = F.shape
    T = (y[:, None] == np.unique(y)[None, :]).astype(float)  # one-hot targets, (n, C)
    sigma, V = np.linalg.eigh(F.T @ F)
    sigma = np.clip(sigma, 0.0, None)[:, None]
    FV, z = F @ V, V.T @ (F.T @ T)  # m = V c: work with the coordinates c
    alpha, beta = np.ones(T.shape[1]), np.ones(T.shape[1])
    running = np.ones(T.shape[1], dtype=bool)
    for _ in range(max_iter):
        c = beta * z / (alpha + beta * sigma)
        gamma = np.sum(beta * sigma / (alpha + beta * sigma), axis=0)
        new_alpha = gamma / np.sum(c**2, axis=0)
        new_beta = (n - gamma) / np.sum((FV @ c - T) ** 2, axis=0)
        converged = np.abs(new_alpha / new_beta - alpha / beta) <= tol * alpha / beta
        alpha = np.where(running, new_alpha, alpha)
        beta = np.where(running, new_beta, beta)
        running &= ~converged & (alpha / beta < 1e10 * sigma.max())
        if not running.any():
            break
    else:
        raise AssertionError("reference LogME did not converge: pick another problem")
    c = beta * z / (alpha + beta * sigma)
    evidence = (
        (
            n * np.log(beta)
            + d * np.log(alpha)
            - n * np.log(2 * np.pi)
            - beta * np.sum((FV @ c - T) ** 2, axis=0)
            - alpha * np.sum(c**2, axis=0)
            - np.sum(np.log(alpha + beta * sigma), axis=0)
        )
        / 2
        / n
    )
    noise_only = -0.5 * (np.log(2 * np.pi) + 1 + np.log(np.sum(T**2, axis=0) / n))
    return np.mean(np.where(alpha / beta >= 1e10 * sigma.max(), noise_only, evidence))


@pytest.mark.parametrize("n, d, signal, seed", PROBLEMS)
def test_logme_values_match_the_reference(n, d, signal, seed):
    Z, y = _features(n, d, signal, seed)
    assert logme_score(Z, y) == pytest.approx(_ref_logme(Z, y), rel=1e-8)


@pytest.mark.parametrize("family", [NARROW, WIDE], ids=["D<N", "D>N"])
def test_logme_ranking_matches_the_reference(family):
    candidates, y = family
    _assert_same_ranking(
        [logme_score(Z, y) for Z in candidates], [_ref_logme(Z, y) for Z in candidates]
    )


@pytest.mark.parametrize(
    "n, d, signal, seed", [(30, 60, 0.15, 21), (60, 30, 0.1, 25), (80, 40, 0.08, 26)]
)
def test_logme_slow_fixed_points_are_reached(n, d, signal, seed):
    # the paper's plain iteration needs thousands of steps here; stopped after 100 it
    # was off by about 1e-6 relatively, enough to swap close candidates
    Z, y = _features(n, d, signal, seed)
    assert logme_score(Z, y) == pytest.approx(_ref_logme(Z, y), rel=1e-11)


def test_logme_says_when_it_did_not_converge():
    Z, y = _features(30, 60, 0.15, 21)
    with pytest.warns(
        ConvergenceWarning,
        match=r"logme_score: alpha / beta not within "
        r"tol=1e-12 of its fixed point after "
        r"max_iter=3 bisection steps; increase max_iter",
    ):
        logme_score(Z, y, max_iter=3, tol=1e-12)


# --------------------------------------------------------------------------- H-score reference


def _ref_hscore(Z, y, alpha):
    """``tr(S^-1 (1 - alpha) cov(E[f | y]))``, ``S = (1 - alpha) cov + alpha mu I``.

    Both covariances are the biased (1 / n) sample ones; ``alpha = 0`` uses the
    pseudo-inverse of ``cov`` (Bao et al., 2019).
    """
    n, d = Z.shape
    Zc = Z - Z.mean(axis=0)
    cov = Zc.T @ Zc / n
    means = np.stack([Zc[y == c].mean(axis=0) for c in y])  # each row: its class mean
    between = means.T @ means / n
    if alpha == 0:
        return np.trace(np.linalg.pinv(cov, rcond=1e-10, hermitian=True) @ between)
    shrunk = (1 - alpha) * cov + alpha * np.trace(cov) / d * np.eye(d)
    return np.trace(np.linalg.solve(shrunk, (1 - alpha) * between))


def _lw_alpha(Z):
    return LedoitWolf().fit(Z).shrinkage_


def _tllib_style_regularized_hscore(Z, y):
    """The formula as TLlib's ``regularized_h_score`` evaluates it.

    Ledoit-Wolf covariance (1 / n) but ``np.cov`` (1 / (n - 1)) for the
    between-class one: its values are ours times n / (n - 1).
    """
    Zc = Z - Z.mean(axis=0)
    lw = LedoitWolf().fit(Zc)
    means = np.stack([Zc[y == c].mean(axis=0) for c in y])
    covg = np.cov(means, rowvar=False)
    return np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * covg))


@pytest.mark.parametrize("n, d, signal, seed", PROBLEMS)
def test_hscore_shrinkage_values_match_the_reference(n, d, signal, seed):
    Z, y = _features(n, d, signal, seed)
    alpha = _lw_alpha(Z)
    assert 0 < alpha < 1
    assert hscore(Z, y) == pytest.approx(_ref_hscore(Z, y, alpha), rel=1e-9)
    assert hscore(Z, y) == pytest.approx(
        _tllib_style_regularized_hscore(Z, y) * (n - 1) / n, rel=1e-7
    )
    assert hscore(Z, y, shrinkage=0.3) == pytest.approx(_ref_hscore(Z, y, 0.3), rel=1e-9)
    assert 0 <= hscore(Z, y) <= 2  # a ridge-regularised LDA trace: at most n_classes - 1


@pytest.mark.parametrize("n, d, signal, seed", PROBLEMS)
def test_hscore_pseudo_inverse_values_match_the_reference(n, d, signal, seed):
    Z, y = _features(n, d, signal, seed)
    assert hscore(Z, y, shrinkage=0) == pytest.approx(_ref_hscore(Z, y, 0), rel=1e-8)


@pytest.mark.parametrize("family", [NARROW, WIDE], ids=["D<N", "D>N"])
@pytest.mark.parametrize("shrinkage", ["auto", 0.5])
def test_hscore_shrinkage_ranking_matches_the_reference(family, shrinkage):
    candidates, y = family
    alphas = [_lw_alpha(Z) if shrinkage == "auto" else shrinkage for Z in candidates]
    _assert_same_ranking(
        [hscore(Z, y, shrinkage=shrinkage) for Z in candidates],
        [_ref_hscore(Z, y, a) for Z, a in zip(candidates, alphas)],
    )


def test_hscore_pseudo_inverse_ranking_matches_the_reference():
    candidates, y = NARROW  # when D > N every candidate ties at n_classes - 1
    _assert_same_ranking(
        [hscore(Z, y, shrinkage=0) for Z in candidates], [_ref_hscore(Z, y, 0) for Z in candidates]
    )


def test_hscore_full_shrinkage_is_refused():
    # (1 - alpha) cov(E[f | y]) vanishes at alpha = 1: every candidate would score 0
    Z, y = _features(20, 4, 0.5, 0)
    with pytest.raises(
        ValueError,
        match=r"hscore: shrinkage must be 'auto' or a float in "
        r"\[0, 1\), got 1",
    ):
        hscore(Z, y, shrinkage=1)


# --------------------------------------------------------------------------- kNN LOO offsets


def _sklearn_loo(Z, y, k):
    knn = KNeighborsClassifier(k, algorithm="brute")
    return cross_val_score(knn, Z, y, cv=LeaveOneOut()).mean()


@pytest.fixture(scope="module")
def offset_task():
    """Two overlapping classes (LOO accuracy near 0.65, so a wrong neighbour shows)."""
    Z, y = _features(200, 8, 0.35, 3, n_classes=2)
    return Z, y


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4, 1e6])
@pytest.mark.parametrize("k", [1, 3])
def test_knn_loo_score_is_offset_invariant(offset_task, offset, k):
    Z, y = offset_task
    expected = _sklearn_loo(Z, y, k)
    assert 0.55 < expected < 0.8
    assert knn_loo_score(Z + offset, y, n_neighbors=k) == pytest.approx(expected, abs=1e-12)
    assert loo_knn_accuracy(Z + offset, y, n_neighbors=k, block_size=17) == pytest.approx(
        expected, abs=1e-12
    )


def test_knn_loo_score_float32_input_far_from_the_origin(offset_task):
    # features on a 1/64 grid are exact in float32 at an offset of 1e4
    Z, y = offset_task
    Z = np.round(Z * 64) / 64
    expected = _sklearn_loo(Z, y, 1)
    assert knn_loo_score((Z + 1e4).astype(np.float32), y) == pytest.approx(expected, abs=1e-12)


def test_knn_loo_two_clusters_far_apart():
    # centring cannot help: each half sits 1e4 from the mean, its points about 1 apart;
    # neighbours never cross halves, so the accuracy is the mean of the halves' own
    Z, y = _features(120, 6, 0.5, 4, n_classes=2)
    side = np.where(np.arange(120) < 60, 1e4, -1e4)[:, None]
    halves = (slice(0, 60), slice(60, None))
    expected = np.mean([_sklearn_loo(Z[h], y[h], 1) for h in halves])
    assert knn_loo_score(Z + side, y) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- continuous y


@pytest.mark.parametrize("score", [logme_score, hscore, knn_loo_score, linear_cv_score])
def test_continuous_y_is_refused(score):
    Z, _ = _features(30, 4, 0.5, 0)
    y = np.random.default_rng(0).normal(size=30)
    name = score.__name__
    with pytest.raises(
        ValueError,
        match=rf"{name} needs class labels in y; got continuous "
        r"values \(type_of_target 'continuous'",
    ):
        score(Z, y)
    # float labels that are whole numbers are classes
    y_int = (np.arange(30) % 3).astype(float)
    assert np.isfinite(score(Z, y_int))
