"""NLEEP, SFDA, GBC, TransRate, ETran and the rank aggregate (issue #26).

Each score is checked against its paper's formula computed independently here
(plain loops, explicit matrices, scikit-learn's own estimators), against the
invariances it should have, and for refusing bad input.
"""

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import FunctionTransformer

from repens_sklearn import TransferabilitySelector
from repens_sklearn.selection import (
    etran_score,
    gbc_score,
    knn_loo_score,
    logme_score,
    mean_rank_score,
    nleep_score,
    sfda_score,
    transrate_score,
)

NEW_SCORES = [nleep_score, sfda_score, gbc_score, transrate_score, etran_score]


def _blobs(n_per_class=20, d=4, n_classes=3, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), n_per_class)
    return centres[y] + spread * rng.normal(size=(len(y), d)), y


def _rotation(d, seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# ------------------------------------------------------------------ NLEEP


def _nleep_by_hand(Z, y, variance=0.8, per_class=5):
    X = PCA(n_components=variance, svd_solver="full").fit_transform(Z)
    classes = np.unique(y)
    gmm = GaussianMixture(per_class * len(classes), random_state=0).fit(X)
    post = gmm.predict_proba(X)
    n, V = post.shape
    joint = np.zeros((len(classes), V))
    for i in range(n):
        joint[np.searchsorted(classes, y[i])] += post[i] / n
    cond = joint / joint.sum(axis=0)
    return np.mean(
        [
            np.log(sum(cond[np.searchsorted(classes, y[i]), v] * post[i, v] for v in range(V)))
            for i in range(n)
        ]
    )


def test_nleep_is_leep_of_the_mixture_posteriors():
    Z, y = _blobs(n_per_class=30, d=5, spread=1.5)
    assert nleep_score(Z, y) == pytest.approx(_nleep_by_hand(Z, y), abs=1e-6)


def test_nleep_is_zero_for_separated_classes_and_log_prior_for_one_point():
    Z, y = _blobs(n_per_class=20, spread=0.01)
    assert nleep_score(Z, y, components_per_class=1) == pytest.approx(0.0, abs=1e-9)
    y = np.array([0, 0, 0, 1])
    assert nleep_score(np.ones((4, 3)), y) == pytest.approx((3 * np.log(0.75) + np.log(0.25)) / 4)


def test_nleep_invariant_to_rotation_translation_and_label_names():
    Z, y = _blobs(n_per_class=25, d=4, spread=2.0)
    base = nleep_score(Z, y)
    assert nleep_score(Z @ _rotation(4) + 5.0, y) == pytest.approx(base, abs=1e-6)
    assert nleep_score(Z, np.array(["c", "a", "b"])[y]) == pytest.approx(base, abs=1e-12)


# ------------------------------------------------------------------ SFDA and the LDA score


def _lda_proba_by_hand(Z, y, lam):
    lda = LinearDiscriminantAnalysis(
        solver="lsqr", shrinkage=lam, priors=np.bincount(y) / len(y)
    ).fit(Z, y)
    return lda.predict_proba(Z)


def _within_cov(Z, y):
    return sum((y == c).mean() * np.cov(Z[y == c].T, bias=True) for c in np.unique(y))


def _sfda_by_hand(Z, y):
    lam = max(np.exp(-5 * np.linalg.eigvalsh(_within_cov(Z, y)).max()), 1e-10)
    proba = _lda_proba_by_hand(Z, y, lam)
    soft = np.exp(proba) / np.exp(proba).sum(axis=1, keepdims=True)
    means = np.array([Z[y == c].mean(axis=0) for c in range(y.max() + 1)])
    mixed = Z.copy()
    for i in range(len(Z)):
        others = np.delete(means, y[i], axis=0).mean(axis=0)
        q = soft[i, y[i]]
        mixed[i] = q * Z[i] + (1 - q) * others
    proba = _lda_proba_by_hand(mixed, y, lam)
    return proba[np.arange(len(y)), y].mean()


@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_sfda_follows_the_paper_steps(scale):
    Z, y = _blobs(n_per_class=15, d=3, spread=1.5)
    Z = Z * scale  # small features: the adaptive shrinkage is far from 0
    assert sfda_score(Z, y) == pytest.approx(_sfda_by_hand(Z, y), rel=1e-9)


def test_sfda_invariant_to_rotation_translation_and_label_names():
    Z, y = _blobs(n_per_class=15, d=3, spread=2.0)
    Z = 0.2 * Z
    base = sfda_score(Z, y)
    assert sfda_score(Z @ _rotation(3) - 7.0, y) == pytest.approx(base, rel=1e-9)
    assert sfda_score(Z, np.array([10, 30, 20])[y]) == pytest.approx(base, rel=1e-12)
    assert 0 < base <= 1


def test_sfda_with_more_features_than_samples_stays_finite():
    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(12, 40)), np.tile([0, 1, 2], 4)
    assert 0 < sfda_score(Z, y) <= 1


def test_etran_is_energy_plus_lda_score():
    Z, y = _blobs(n_per_class=20, d=3, spread=1.5)
    Z = 0.3 * Z
    lam = 0.25
    energy = np.log(np.exp(Z).sum(axis=1))
    lowest = np.sort(energy)[:6].mean()  # 10 % of 60 samples
    lda = _lda_proba_by_hand(Z, y, lam)[np.arange(len(y)), y].mean()
    assert etran_score(Z, y, energy_fraction=0.1, shrinkage=lam) == pytest.approx(
        lowest + lda, rel=1e-9
    )
    # the default fraction (0.5 %) of 60 samples: the single lowest energy
    auto = max(np.exp(-5 * np.linalg.eigvalsh(_within_cov(Z, y)).max()), 1e-10)
    lda = _lda_proba_by_hand(Z, y, auto)[np.arange(len(y)), y].mean()
    assert etran_score(Z, y) == pytest.approx(energy.min() + lda, rel=1e-9)


# ------------------------------------------------------------------ GBC


def _bhattacharyya(m1, m2, S1, S2):
    S = (S1 + S2) / 2
    diff = m1 - m2
    return diff @ np.linalg.solve(S, diff) / 8 + 0.5 * (
        np.linalg.slogdet(S)[1] - 0.5 * (np.linalg.slogdet(S1)[1] + np.linalg.slogdet(S2)[1])
    )


def _gbc_by_hand(Z, y, gaussian):
    stats = []
    for c in np.unique(y):
        var = np.maximum(Z[y == c].var(axis=0), 1e-4)
        if gaussian == "spherical":
            var = np.full_like(var, var.mean())
        stats.append((Z[y == c].mean(axis=0), np.diag(var)))
    return -sum(
        np.exp(-_bhattacharyya(*stats[a][:1], *stats[b][:1], stats[a][1], stats[b][1]))
        for a in range(len(stats))
        for b in range(len(stats))
        if a != b
    )


@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_gbc_is_minus_the_summed_bhattacharyya_coefficients(gaussian):
    Z, y = _blobs(n_per_class=12, d=3, spread=2.5)
    Z[:, 2] *= 0.1  # unequal variances: spherical and diagonal differ
    expected = _gbc_by_hand(Z, y, gaussian)
    assert gbc_score(Z, y, n_components=None, gaussian=gaussian) == pytest.approx(
        expected, rel=1e-9
    )


def test_gbc_bounds_pca_and_invariances():
    Z, y = _blobs(n_per_class=20, d=5, spread=0.01)
    assert gbc_score(Z, y) == pytest.approx(0.0, abs=1e-12)  # no overlap
    rng = np.random.default_rng(0)
    same = rng.normal(size=(60, 2))
    identical = np.vstack([same, same, same])  # three classes, one distribution
    assert gbc_score(identical, np.repeat([0, 1, 2], 60)) == pytest.approx(-6.0)
    Z, y = _blobs(n_per_class=20, d=6, spread=2.0)
    pca = PCA(3).fit_transform(Z)
    assert gbc_score(Z, y, n_components=3) == pytest.approx(
        _gbc_by_hand(pca, y, "spherical"), rel=1e-9
    )
    assert gbc_score(Z @ _rotation(6) + 3.0, y, n_components=3) == pytest.approx(
        gbc_score(Z, y, n_components=3), rel=1e-9
    )


# ------------------------------------------------------------------ TransRate


def _rate(Z, d, eps):
    n = len(Z)
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps**2) * Z.T @ Z)[1]


def test_transrate_is_the_coding_rate_reduction():
    Z, y = _blobs(n_per_class=10, d=4, spread=1.0)
    Zc = Z - Z.mean(axis=0)
    expected = _rate(Zc, 4, 0.5) - sum(
        (y == c).mean() * _rate(Zc[y == c], 4, 0.5) for c in range(3)
    )
    assert transrate_score(Z, y, eps=0.5) == pytest.approx(expected, rel=1e-10)


def test_transrate_invariances_and_sign():
    Z, y = _blobs(n_per_class=10, d=4, spread=1.0)
    base = transrate_score(Z, y)
    assert transrate_score(Z @ _rotation(4) + 2.0, y) == pytest.approx(base, rel=1e-9)
    assert transrate_score(Z, np.array(["x", "z", "y"])[y]) == pytest.approx(base, rel=1e-12)
    assert base > 0  # the rate of the whole exceeds the weighted rates of the parts
    # tighter classes around the same centres raise it
    far, _ = _blobs(n_per_class=10, d=4, spread=0.1)
    assert transrate_score(far, y) > transrate_score(_blobs(10, 4, spread=3.0)[0], y)


# ------------------------------------------------------------------ all new scores


@pytest.mark.parametrize("score", NEW_SCORES, ids=lambda f: f.__name__)
def test_better_features_score_higher_on_digits(score):
    X, y = load_digits(return_X_y=True)
    X = X[:400] / 16
    y = y[:400]
    assert score(X, y) > score(X[:, :8], y)


@pytest.mark.parametrize(
    "score", [s for s in NEW_SCORES if s is not nleep_score], ids=lambda f: f.__name__
)
def test_sample_order_does_not_matter(score):
    # not NLEEP: its mixture's k-means start draws samples, so order moves the local optimum
    Z, y = _blobs(n_per_class=20, d=3, spread=1.5)
    Z = 0.3 * Z
    perm = np.random.default_rng(3).permutation(len(y))
    assert score(Z[perm], y[perm]) == pytest.approx(score(Z, y), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("score", NEW_SCORES, ids=lambda f: f.__name__)
def test_refuses_continuous_labels_one_class_and_nan(score):
    Z, _ = _blobs()
    name = score.__name__
    with pytest.raises(ValueError, match=f"^{name} needs class labels in y; got continuous"):
        score(Z, np.linspace(0, 1, len(Z)))
    with pytest.raises(ValueError, match=f"^{name} needs at least 2 classes in y; got 1 class"):
        score(Z, np.zeros(len(Z), dtype=int))
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input Z contains NaN"):
        score(bad, np.repeat([0, 1, 2], 20))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda Z, y: nleep_score(Z, y, variance=0),
            "nleep_score: variance must be a float in (0, 1], got 0",
        ),
        (
            lambda Z, y: nleep_score(Z, y, components_per_class=0),
            "nleep_score: components_per_class must be an int >= 1, got 0",
        ),
        (
            lambda Z, y: sfda_score(Z, y, shrinkage=0),
            "sfda_score: shrinkage must be 'auto' or a float in (0, 1], got 0",
        ),
        (
            lambda Z, y: etran_score(Z, y, energy_fraction=2),
            "etran_score: energy_fraction must be a float in (0, 1], got 2",
        ),
        (
            lambda Z, y: gbc_score(Z, y, gaussian="full"),
            "gbc_score: gaussian must be 'spherical' or 'diagonal', got 'full'",
        ),
        (
            lambda Z, y: gbc_score(Z, y, n_components=0),
            "gbc_score: n_components must be an int >= 1 or None, got 0",
        ),
        (
            lambda Z, y: transrate_score(Z, y, eps=0),
            "transrate_score: eps must be a float > 0, got 0",
        ),
    ],
)
def test_refuses_bad_parameters(call, message):
    Z, y = _blobs()
    with pytest.raises(ValueError) as info:
        call(Z, y)
    assert str(info.value) == message


@pytest.mark.parametrize("score", NEW_SCORES, ids=lambda f: f.__name__)
def test_returns_a_python_float_from_float32_input(score):
    Z, y = _blobs()
    value = score(Z.astype(np.float32) * 0.3, y)
    assert type(value) is float and np.isfinite(value)


# ------------------------------------------------------------------ rank aggregate


def test_mean_rank_score_is_the_mean_normalized_rank():
    table = np.array([[0.9, 0.5, 0.7, 0.5], [-1.0, -2.0, -3.0, 0.0]])
    expected = np.mean([(rankdata(row) - 1) / 3 for row in table], axis=0)
    np.testing.assert_allclose(mean_rank_score(table), expected)
    # ranks 0..3, ties averaged: [3, .5, 2, .5] and [2, 1, 0, 3], over 3, then averaged
    np.testing.assert_allclose(mean_rank_score(table), [5 / 6, 1 / 4, 1 / 3, 7 / 12])
    assert mean_rank_score([[3.0]]).tolist() == [1.0]
    # monotone transforms of a score change nothing
    np.testing.assert_allclose(mean_rank_score(np.exp(table)), mean_rank_score(table))


def test_selector_ranks_by_the_mean_rank_of_a_scoring_list():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    candidates = [
        ("raw", FunctionTransformer()),
        ("half", FunctionTransformer(lambda Z: Z[:, :32])),
        ("few", FunctionTransformer(lambda Z: Z[:, :6])),
    ]
    selector = TransferabilitySelector(
        candidates, scoring=["logme", "knn_loo", "sfda"], n_select=None
    ).fit(X, y)
    parts = {"logme": logme_score, "knn_loo": knn_loo_score, "sfda": sfda_score}
    Zs = {"raw": X, "half": X[:, :32], "few": X[:, :6]}
    table = np.array([[fn(Zs[c].astype(np.float32), y) for c in Zs] for fn in parts.values()])
    np.testing.assert_allclose(list(selector.scores_.values()), mean_rank_score(table))
    assert list(selector.component_scores_) == ["logme", "knn_loo", "sfda"]
    np.testing.assert_allclose(list(selector.component_scores_["sfda"].values()), table[2])
    assert selector.ranking_[0] == "raw"


def test_selector_refuses_a_bad_scoring_list():
    X, y = load_digits(return_X_y=True)
    selector = TransferabilitySelector([("raw", FunctionTransformer())], scoring=["logme", "nope"])
    with pytest.raises(ValueError) as info:
        selector.fit(X[:50], y[:50])
    assert str(info.value).startswith("scoring: a list must hold at least one of the names [")
    assert str(info.value).endswith("or callables; got ['logme', 'nope']")
    with pytest.raises(ValueError, match="^scoring: a list must hold"):
        TransferabilitySelector([("raw", FunctionTransformer())], scoring=[]).fit(X[:50], y[:50])


def test_partial_scorings_keep_one_row_each():
    from functools import partial

    from repens_sklearn.selection import hscore

    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16, y[:200]
    candidates = [("raw", FunctionTransformer()), ("few", FunctionTransformer(lambda Z: Z[:, :6]))]
    scoring = [partial(hscore, shrinkage=0.0), partial(hscore, shrinkage=0.5), "knn_loo"]
    selector = TransferabilitySelector(candidates, scoring=scoring, n_select=None).fit(X, y)
    assert list(selector.component_scores_) == [
        "hscore(shrinkage=0.0)",
        "hscore(shrinkage=0.5)",
        "knn_loo",
    ]
