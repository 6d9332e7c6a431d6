"""Transferability scores against direct (naive) computations on small cases."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import multivariate_normal
from sklearn.covariance import ledoit_wolf, ledoit_wolf_shrinkage
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repens_sklearn.selection import (
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    loo_knn_accuracy,
)
from repens_sklearn.selection._transferability import _logme_per_class


def _features(n, d, signal, seed, n_classes=3):
    """Gaussian features with a class-dependent shift of strength ``signal``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    Z = rng.normal(size=(n, d)) + signal * np.eye(n_classes)[y] @ rng.normal(size=(n_classes, d))
    return Z, y


# --------------------------------------------------------------------------- LogME, naive


def _naive_fixed_point(F, t, tol=1e-13, max_iter=5000):
    """The paper's updates with the full D x D matrix A = alpha I + beta F'F."""
    n, d = F.shape
    eig = np.linalg.eigvalsh(F.T @ F)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        A = alpha * np.eye(d) + beta * F.T @ F
        m = beta * np.linalg.solve(A, F.T @ t)
        gamma = np.sum(beta * eig / (alpha + beta * eig))
        new_alpha, new_beta = gamma / (m @ m), (n - gamma) / np.sum((F @ m - t) ** 2)
        done = abs(new_alpha / new_beta - alpha / beta) < tol * alpha / beta
        alpha, beta = new_alpha, new_beta
        if done:
            return alpha, beta
    raise AssertionError("the naive fixed point did not converge: pick another test case")


def _naive_log_evidence(F, t, alpha, beta):
    """log N(t; 0, I / beta + F F' / alpha) / n with the full N x N covariance."""
    n = len(F)
    cov = np.eye(n) / beta + F @ F.T / alpha
    return multivariate_normal(np.zeros(n), cov).logpdf(t) / n


def _naive_logme(F, y):
    evidences = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        evidences.append(_naive_log_evidence(F, t, *_naive_fixed_point(F, t)))
    return np.mean(evidences)


@pytest.mark.parametrize(
    "n, d, signal, seed",
    [
        (60, 8, 0.5, 0),  # D < N
        (24, 40, 0.3, 0),  # N < D: the d - n zero eigenvalues of F'F count
        (20, 40, 0.4, 0),  # N < D
        (40, 40, 0.5, 1),  # N = D
    ],
)
def test_logme_matches_the_naive_computation(n, d, signal, seed):
    Z, y = _features(n, d, signal, seed)
    assert logme_score(Z, y) == pytest.approx(_naive_logme(Z, y), rel=1e-9)


def test_logme_alpha_beta_maximise_the_evidence():
    Z, y = _features(24, 40, 0.3, 0)
    _, alphas, betas = _logme_per_class(Z, y)
    for c, (alpha, beta) in enumerate(zip(alphas, betas)):
        t = (y == c).astype(float)
        best = _naive_log_evidence(Z, t, alpha, beta)
        for fa, fb in [(1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2), (1.2, 1.2)]:
            assert _naive_log_evidence(Z, t, alpha * fa, beta * fb) < best


def test_logme_noise_free_limit_when_n_below_d():
    # strong signal, n < d: some classes are best explained with beta -> infinity
    Z, y = _features(12, 30, 2.0, 5)
    evidence, alphas, betas = _logme_per_class(Z, y)
    assert np.all(np.isfinite(evidence))
    limit = betas / alphas > 1e10
    assert limit.any(), "test case must reach the noise-free limit for some class"
    for c in np.flatnonzero(limit):
        t = (y == c).astype(float)

        # beta = inf: t ~ N(0, Z Z' / alpha), maximised over alpha by a 1-D search
        def neg(log_alpha, t=t):
            return -multivariate_normal(np.zeros(12), Z @ Z.T / np.exp(log_alpha)).logpdf(t)

        res = minimize_scalar(neg, bounds=(-20, 20), method="bounded", options={"xatol": 1e-10})
        assert evidence[c] == pytest.approx(-res.fun / 12, rel=1e-7)


def test_logme_zero_features_is_the_noise_only_evidence():
    y = np.arange(10) % 2
    # each class: t ~ N(0, I / beta), beta = n / |t|^2 = 2 -> 0.5 log(2) - 0.5 log(2 pi) - 0.5
    expected = 0.5 * np.log(2) - 0.5 * np.log(2 * np.pi) - 0.5
    assert logme_score(np.zeros((10, 4)), y) == pytest.approx(expected)


def test_logme_invariances_and_dtype():
    Z, y = _features(50, 12, 0.5, 3)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 12)))
    score = logme_score(Z, y)
    assert logme_score(Z @ Q, y) == pytest.approx(score, rel=1e-9)  # rotation
    assert logme_score(100 * Z, y) == pytest.approx(score, rel=1e-6)  # scale (alpha absorbs it)
    assert logme_score(Z.astype(np.float32), y) == pytest.approx(score, rel=1e-5)
    assert logme_score(Z, np.array(list("abc"))[y]) == score  # any labels


def test_logme_prefers_informative_features():
    Z, y = _features(100, 16, 1.0, 0)
    noise = np.random.default_rng(1).normal(size=Z.shape)
    assert logme_score(Z, y) > logme_score(noise, y)


def test_logme_bad_parameters_are_named():
    Z, y = _features(20, 4, 0.5, 0)
    with pytest.raises(ValueError, match="logme_score: max_iter must be an int >= 1, got 0"):
        logme_score(Z, y, max_iter=0)
    with pytest.raises(ValueError, match="logme_score: tol must be a float > 0, got -1"):
        logme_score(Z, y, tol=-1)


# --------------------------------------------------------------------------- H-score


def _naive_between_cov(Z, y):
    """cov(E[f | y]): every sample replaced by its class mean, then the covariance."""
    G = np.stack([Z[y == c].mean(axis=0) for c in y])
    return np.cov(G.T, bias=True)


@pytest.mark.parametrize("n, d", [(80, 6), (15, 30)])
def test_hscore_with_ledoit_wolf_matches_the_direct_formula(n, d):
    Z, y = _features(n, d, 0.7, 2)
    shrunk, alpha = ledoit_wolf(Z)
    # Ibrahim et al. (2022): the between-class covariance is shrunk by 1 - alpha too
    expected = np.trace(np.linalg.solve(shrunk, (1 - alpha) * _naive_between_cov(Z, y)))
    assert hscore(Z, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n, d", [(80, 6), (15, 30)])
def test_hscore_pseudo_inverse_matches_the_direct_formula(n, d):
    Z, y = _features(n, d, 0.7, 2)
    cov = np.cov(Z.T, bias=True)
    expected = np.trace(np.linalg.pinv(cov, rcond=1e-10, hermitian=True) @ _naive_between_cov(Z, y))
    assert hscore(Z, y, shrinkage=0) == pytest.approx(expected, rel=1e-8)
    assert 0 <= hscore(Z, y, shrinkage=0) <= 2 + 1e-9  # at most n_classes - 1


def test_hscore_fixed_shrinkage():
    Z, y = _features(40, 5, 0.7, 4)
    cov = np.cov(Z.T, bias=True)
    mu = np.trace(cov) / 5
    between = _naive_between_cov(Z, y)
    shrunk = 0.7 * cov + 0.3 * mu * np.eye(5)
    assert hscore(Z, y, shrinkage=0.3) == pytest.approx(
        np.trace(np.linalg.solve(shrunk, 0.7 * between))
    )
    # the ridge form: cov + mu * rho / (1 - rho) I against the unshrunk between-class covariance
    ridge = cov + mu * 0.9 / 0.1 * np.eye(5)
    assert hscore(Z, y, shrinkage=0.9) == pytest.approx(np.trace(np.linalg.solve(ridge, between)))


@pytest.mark.parametrize("n, d", [(80, 6), (15, 30), (30, 30)])
def test_ledoit_wolf_coefficient_from_the_svd_is_sklearns(n, d):
    from repens_sklearn.selection._transferability import _ledoit_wolf_from_svd

    Z, _ = _features(n, d, 0.7, 6)
    Zc = Z - Z.mean(axis=0)
    eig = np.linalg.svd(Zc, compute_uv=False) ** 2 / n
    assert _ledoit_wolf_from_svd(Zc, eig, d) == pytest.approx(ledoit_wolf_shrinkage(Z))


def test_hscore_constant_features_and_ranking():
    Z, y = _features(60, 8, 1.0, 0)
    assert hscore(np.ones((60, 8)), y) == 0.0
    noise = np.random.default_rng(1).normal(size=Z.shape)
    assert hscore(Z, y) > hscore(noise, y)


def test_hscore_bad_shrinkage_is_named():
    Z, y = _features(20, 4, 0.5, 0)
    for bad in (1.5, "ledoit", -0.1, True):
        with pytest.raises(ValueError, match="hscore: shrinkage must be 'auto' or a float"):
            hscore(Z, y, shrinkage=bad)


# --------------------------------------------------------------------------- linear probe, kNN


def test_linear_cv_is_sklearns_cross_val_score():
    Z, y = _features(90, 10, 0.5, 0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    expected = cross_val_score(probe, Z, y, cv=StratifiedKFold(5)).mean()
    assert linear_cv_score(Z, y) == pytest.approx(expected)
    splitter = KFold(3, shuffle=True, random_state=0)
    expected = cross_val_score(probe, Z, y, cv=splitter).mean()
    assert linear_cv_score(Z, y, cv=splitter) == pytest.approx(expected)


def test_linear_cv_caps_folds_at_the_rarest_class():
    Z, y = _features(30, 4, 1.0, 0)
    y = y.copy()
    y[:3] = 7  # a class with 3 samples: 3 folds
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    assert linear_cv_score(Z, y) == pytest.approx(
        cross_val_score(probe, Z, y, cv=StratifiedKFold(3)).mean()
    )
    y[0] = 9  # a class with 1 sample
    with pytest.raises(ValueError, match="at least 2 samples of every class.*class 9 has 1"):
        linear_cv_score(Z, y)
    with pytest.raises(ValueError, match="cv must be >= 2 folds, got 1"):
        linear_cv_score(Z, y % 2, cv=1)


def test_knn_loo_score_is_the_loo_accuracy():
    Z, y = _features(50, 6, 0.8, 0)
    assert knn_loo_score(Z, y) == loo_knn_accuracy(Z, y)
    assert knn_loo_score(Z, y, n_neighbors=3, metric="euclidean") == loo_knn_accuracy(
        Z, y, n_neighbors=3, metric="euclidean"
    )


# --------------------------------------------------------------------------- shared input checks


@pytest.mark.parametrize("score", [knn_loo_score, logme_score, hscore, linear_cv_score])
def test_input_errors_name_the_argument(score):
    Z, y = _features(20, 4, 0.5, 0)
    with pytest.raises(ValueError, match="at least 2 classes in y; got 1 class"):
        score(Z, np.zeros(20))
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Z"):
        score(bad, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        score(Z, y[:-1])
    with pytest.raises(ValueError, match="Expected 2D array"):
        score(Z[0], y[:1])
