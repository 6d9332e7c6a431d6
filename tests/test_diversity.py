"""Tests for repens_sklearn.diversity metrics, calibration and pairwise tables."""

import importlib
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError, UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.naive_bayes import GaussianNB

from repens_sklearn.diversity import (
    calibrate_probas,
    calibrate_temperature,
    conversion_rate,
    ensemble_gain,
    ensemble_proba,
    error_consistency,
    error_inconsistency,
    linear_cka,
    pairwise_diversity,
    specialization_angle,
)

Y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
PRED_A = np.array([0, 0, 1, 0, 2, 1, 0, 1])  # wrong on 3, 5
PRED_B = np.array([0, 1, 1, 1, 2, 1, 2, 1])  # wrong on 1, 5, 6


def _onehot(pred, conf, n=3):
    """Probabilities with ``conf`` on ``pred`` and the rest spread evenly."""
    p = np.full((len(pred), n), (1 - conf) / (n - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_import_does_not_need_matplotlib(monkeypatch):
    # Re-import the subpackage with matplotlib made unimportable (sys.modules entry
    # None); monkeypatch puts the original modules back afterwards.
    for name in [m for m in sys.modules if m.startswith("repens_sklearn.diversity")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    module = importlib.import_module("repens_sklearn.diversity")
    assert module.error_inconsistency([0, 1], [0, 0], [0, 1]) == 0.5
    with pytest.raises(ImportError, match=r"requires matplotlib.*repens-sklearn\[plot\]"):
        module.SelectionDisplay({"a": 1.0}).plot()


# --------------------------------------------------------------------------- inconsistency
def test_error_inconsistency_counts_exactly_one_right():
    # exactly one right on samples 1, 3, 6 -> 3 / 8
    assert error_inconsistency(Y, PRED_A, PRED_B) == pytest.approx(3 / 8)
    assert error_inconsistency(Y, PRED_A, PRED_A) == 0.0
    # string labels work like sklearn.metrics
    ys = np.array(list("aabb"))
    assert error_inconsistency(ys, list("abbb"), list("aaab")) == pytest.approx(0.5)


def test_error_consistency_matches_geirhos_formula():
    res = error_consistency(Y, PRED_A, PRED_B)
    ca, cb = PRED_A == Y, PRED_B == Y
    pa, pb = ca.mean(), cb.mean()
    expected = pa * pb + (1 - pa) * (1 - pb)
    assert res.observed == pytest.approx(1 - 3 / 8)
    assert res.expected == pytest.approx(expected)
    assert res.kappa == pytest.approx((res.observed - expected) / (1 - expected))


def test_error_consistency_undefined_kappa_warns():
    with pytest.warns(UndefinedMetricWarning, match="kappa is undefined"):
        res = error_consistency([0, 1], [0, 1], [0, 1])
    assert res.observed == 1.0 and np.isnan(res.kappa)


@pytest.mark.parametrize("func", [error_inconsistency, error_consistency])
def test_prediction_metrics_reject_mismatched_lengths(func):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        func([0, 1, 1], [0, 1], [0, 1, 1])


def test_prediction_metrics_reject_continuous_targets():
    with pytest.raises(ValueError, match="y_true must hold class labels.*continuous"):
        error_inconsistency([0.1, 0.5], [0, 1], [0, 1])


# --------------------------------------------------------------------------- probabilities
def test_conversion_rate_and_gain_by_hand():
    # sample 0: A right & confident -> ensemble right; sample 1: B right but
    # A more confident -> ensemble wrong; sample 2: both right.
    pa = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    pb = np.array([[0.4, 0.6], [0.45, 0.55], [0.3, 0.7]])
    y = [0, 1, 1]
    assert conversion_rate(y, pa, pb) == pytest.approx(0.5)
    # accuracies 2/3 and 2/3, ensemble 2/3 -> gain 0
    assert ensemble_gain(y, pa, pb) == pytest.approx(0.0)
    pb2 = np.array([[0.4, 0.6], [0.01, 0.99], [0.3, 0.7]])
    assert conversion_rate(y, pa, pb2) == pytest.approx(1.0)
    assert ensemble_gain(y, pa, pb2) == pytest.approx(1 - 2 / 3)
    assert ensemble_gain(y, pa, pb2, baseline="max") == pytest.approx(1 - 2 / 3)
    np.testing.assert_allclose(ensemble_proba(pa, pb2), (pa + pb2) / 2)


def test_conversion_rate_without_inconsistent_samples_warns():
    p = _onehot(Y, 0.8)
    with pytest.warns(UndefinedMetricWarning, match="no sample has exactly one model right"):
        assert np.isnan(conversion_rate(Y, p, p))


def test_probability_metrics_use_labels_for_columns():
    y = np.array(["cat", "dog", "dog"])
    pa = np.array([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.6, 0.3, 0.1]])
    pb = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.1, 0.8, 0.1]])
    labels = ["cat", "dog", "eel"]
    assert conversion_rate(y, pa, pb, labels=labels) == pytest.approx(1.0)
    assert ensemble_gain(y, pa, pb, labels=labels) == pytest.approx(1 - 5 / 6)


def test_probability_metrics_errors():
    p = _onehot(Y, 0.8)
    with pytest.raises(ValueError, match="do not sum to one"):
        conversion_rate(Y, p * 0.5, p)
    with pytest.raises(ValueError, match="greater than 1"):
        conversion_rate(Y, p * 2, p)
    with pytest.raises(ValueError, match="lower than 0"):
        conversion_rate(Y, p - 0.5, p)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        conversion_rate(Y[:-1], p, p)
    with pytest.raises(ValueError, match="different number of classes: 2 vs 3.*labels argument"):
        ensemble_gain([0, 1, 0, 1, 0, 1, 0, 1], p, p)
    with pytest.raises(ValueError, match=r"y_true contains labels not present in labels: \[2\]"):
        ensemble_gain(Y, p, p, labels=[0, 1, 5])
    with pytest.raises(ValueError, match="number of labels \\(2\\) does not match"):
        ensemble_gain(Y, p, p, labels=[0, 1])
    with pytest.raises(ValueError, match="same number of classes"):
        ensemble_gain(Y, p, _onehot(Y, 0.8, n=4))
    with pytest.raises(ValueError, match="baseline must be 'mean' or 'max'"):
        ensemble_gain(Y, p, p, baseline="median")
    with pytest.raises(ValueError, match="n_classes >= 2"):
        specialization_angle(np.ones((3, 1)), np.ones((3, 1)))


def test_specialization_angle_geometry():
    pa = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2], [0.5, 0.5], [1.0, 0.0], [0.6, 0.4]])
    pb = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8], [0.5, 0.5], [0.0, 1.0], [0.9, 0.1]])
    theta = specialization_angle(pa, pb)
    # measured about (1, 1): A certain -> +pi/4, B certain -> -pi/4, equal confidences
    # (the corner included) -> 0; (0.6, 0.9) is atan2(0.1, 0.4) - pi/4
    np.testing.assert_allclose(
        theta, [np.pi / 4, -np.pi / 4, 0, 0, 0, np.arctan(0.25) - np.pi / 4], atol=1e-12
    )
    assert np.all(np.abs(specialization_angle(_onehot(Y, 0.9), _onehot(Y, 0.4), Y)) <= np.pi / 4)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        specialization_angle(pa, pb, [0, 1])


# --------------------------------------------------------------------------- CKA
def _gram_hsic_unbiased(K, L):
    # Song et al. (2012) unbiased HSIC on Gram matrices (reference implementation).
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    return (
        np.sum(K * L) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * K.sum(0) @ L.sum(0)
    ) / (n * (n - 3))


def test_linear_cka_invariances_and_gram_reference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(X, 2.5 * X @ Q + 3.0) == pytest.approx(1.0)
    Y = rng.normal(size=(40, 4))
    # biased CKA = HSIC(XX^T, YY^T) normalized, computed with centred Gram matrices
    H = np.eye(40) - 1 / 40
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    ref = np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))
    assert linear_cka(X, Y) == pytest.approx(ref)
    Kr, Lr = X @ X.T, Y @ Y.T
    ref_deb = _gram_hsic_unbiased(Kr, Lr) / np.sqrt(
        _gram_hsic_unbiased(Kr, Kr) * _gram_hsic_unbiased(Lr, Lr)
    )
    assert linear_cka(X, Y, debiased=True) == pytest.approx(ref_deb)
    # the debiased estimate of independent representations is near 0, the biased is not
    assert abs(linear_cka(X, Y, debiased=True)) < linear_cka(X, Y)


def test_linear_cka_errors():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        linear_cka(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="at least 4 samples"):
        linear_cka(np.eye(3), np.eye(3), debiased=True)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((5, 2)), np.eye(5))


# --------------------------------------------------------------------------- calibration
@pytest.fixture(scope="module")
def digits_models():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    tr, cal, te = slice(0, 600), slice(600, 1200), slice(1200, None)
    # weak regularisation -> overconfident; GaussianNB is notoriously overconfident
    lr = LogisticRegression(C=100, max_iter=300).fit(X[tr], y[tr])
    nb = GaussianNB().fit(X[tr], y[tr])
    return X, y, tr, cal, te, {"logreg": lr, "nb": nb}


def test_calibrate_temperature_reduces_held_out_log_loss(digits_models):
    X, y, tr, cal, te, models = digits_models
    nb = models["nb"]
    calibrated = calibrate_temperature(nb, X[cal], y[cal])
    beta = calibrated.calibrated_classifiers_[0].calibrators[0].beta_
    assert beta < 1  # overconfident model -> temperature above 1
    assert log_loss(y[te], calibrated.predict_proba(X[te])) < log_loss(
        y[te], np.clip(nb.predict_proba(X[te]), 1e-15, 1)
    )
    # temperature scaling never changes the top-1 class
    np.testing.assert_array_equal(calibrated.predict(X[te]), nb.predict(X[te]))
    with pytest.raises(TypeError, match="fitted classifier with predict_proba"):
        calibrate_temperature(object(), X[cal], y[cal])


def test_temperature_calibration_on_old_scikit_learn_says_what_it_needs(digits_models, monkeypatch):
    import sklearn

    X, y, tr, cal, te, models = digits_models
    monkeypatch.setattr(sklearn, "__version__", "1.7.2")
    with pytest.raises(ImportError, match="needs scikit-learn >= 1.8 .* 1.7.2 is installed"):
        calibrate_temperature(models["nb"], X[cal], y[cal])


def test_calibrate_probas_matches_estimator_calibration(digits_models):
    X, y, tr, cal, te, models = digits_models
    lr = models["logreg"]
    from_arrays = calibrate_probas(lr.predict_proba(X[cal]), y[cal], lr.predict_proba(X[te]))
    # same temperature as calibrating the estimator itself (it uses log-probas as logits)
    direct = calibrate_temperature(lr, X[cal], y[cal]).predict_proba(X[te])
    assert np.allclose(from_arrays.sum(1), 1)
    np.testing.assert_allclose(from_arrays.argmax(1), direct.argmax(1))
    assert log_loss(y[te], from_arrays) < log_loss(y[te], lr.predict_proba(X[te]))
    with pytest.raises(ValueError, match="same number of columns"):
        calibrate_probas(lr.predict_proba(X[cal]), y[cal], np.full((4, 3), 1 / 3))


# --------------------------------------------------------------------------- pairwise
def test_pairwise_diversity_from_probas_matches_metrics():
    probas = {"a": _onehot(PRED_A, 0.7), "b": _onehot(PRED_B, 0.6), "c": _onehot(Y, 0.5)}
    df = pairwise_diversity(probas, y=Y, calibrate=False)
    assert list(df["model_a"]) == ["a", "a", "b"] and list(df["model_b"]) == ["b", "c", "c"]
    row = df.iloc[0]
    assert row["error_inconsistency"] == pytest.approx(3 / 8)
    assert row["kappa"] == pytest.approx(error_consistency(Y, PRED_A, PRED_B).kappa)
    assert row["accuracy_a"] == pytest.approx(6 / 8) and row["accuracy_b"] == pytest.approx(5 / 8)
    assert row["ensemble_gain"] == pytest.approx(ensemble_gain(Y, probas["a"], probas["b"]))
    assert row["ensemble_accuracy"] - (6 / 8 + 5 / 8) / 2 == pytest.approx(row["ensemble_gain"])
    ref = pairwise_diversity(list(probas.items()), y=Y, reference="c", calibrate=False)
    assert list(ref["model_b"]) == ["a", "b"]
    assert np.all(ref["model_a"] == "c")


def test_pairwise_diversity_from_estimators_with_calibration(digits_models):
    X, y, tr, cal, te, models = digits_models
    raw = pairwise_diversity(models, X[te], y[te], calibrate=False)
    calibrated = pairwise_diversity(models, X[te], y[te], X_calib=X[cal], y_calib=y[cal])
    acc_lr = np.mean(models["logreg"].predict(X[te]) == y[te])
    assert raw.loc[0, "accuracy_a"] == pytest.approx(acc_lr)
    # calibration keeps every model's top-1 predictions: accuracies and inconsistency equal
    assert calibrated.loc[0, "error_inconsistency"] == pytest.approx(
        raw.loc[0, "error_inconsistency"]
    )
    assert calibrated.loc[0, "accuracy_b"] == pytest.approx(raw.loc[0, "accuracy_b"])
    # ... but the averaged ensemble changes (the over-confident NB no longer dominates)
    assert calibrated.loc[0, "ensemble_accuracy"] != raw.loc[0, "ensemble_accuracy"]
    # stored arrays with stored held-out arrays give the same calibrated table
    probas = {n: m.predict_proba(X[te]) for n, m in models.items()}
    held = {n: m.predict_proba(X[cal]) for n, m in models.items()}
    from_arrays = pairwise_diversity(probas, y=y[te], X_calib=held, y_calib=y[cal])
    assert from_arrays.loc[0, "ensemble_accuracy"] == pytest.approx(
        calibrated.loc[0, "ensemble_accuracy"], abs=2 / len(y[te])
    )


def test_pairwise_diversity_structured_array_without_pandas(monkeypatch):
    from repens_sklearn.diversity import _pairwise

    monkeypatch.setattr(_pairwise, "_import_pandas", lambda: None)  # pandas not installed
    table = pairwise_diversity({"a": _onehot(PRED_A, 0.7), "b": _onehot(PRED_B, 0.6)}, y=Y)
    assert isinstance(table, np.ndarray) and table.dtype.names[:2] == ("model_a", "model_b")
    assert table["error_inconsistency"][0] == pytest.approx(3 / 8)
    assert table["model_b"][0] == "b"


def test_pairwise_diversity_errors(digits_models):
    X, y, tr, cal, te, models = digits_models
    p = _onehot(Y, 0.8)
    with pytest.raises(TypeError, match="dict or a list of \\(name"):
        pairwise_diversity(42, y=Y)
    with pytest.raises(ValueError, match="at least 2 models; got 1"):
        pairwise_diversity({"a": p}, y=Y)
    with pytest.raises(ValueError, match="duplicate names \\['a'\\]"):
        pairwise_diversity([("a", p), ("a", p)], y=Y)
    with pytest.raises(ValueError, match="y is required"):
        pairwise_diversity({"a": p, "b": p})
    with pytest.raises(ValueError, match="X is required"):
        pairwise_diversity(models, y=y[te])
    with pytest.raises(ValueError, match="X_calib and y_calib go together.*only X_calib"):
        pairwise_diversity({"a": p, "b": p}, y=Y, X_calib={"a": p, "b": p})
    with pytest.raises(
        ValueError,
        match=r"needs at least 2 samples of every class; "
        r"classes \[2\] have fewer",
    ):
        pairwise_diversity({"a": p[:-1], "b": p[:-1]}, y=[0, 0, 1, 1, 2, 0, 0])
    with pytest.raises(ValueError, match="averaging must be one of"):
        pairwise_diversity({"a": p, "b": p}, y=Y, averaging="median")
    with pytest.raises(ValueError, match="X_calib has no held-out probabilities for 'b'"):
        pairwise_diversity({"a": p, "b": p}, y=Y, calibrate=True, X_calib={"a": p}, y_calib=Y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples: y has 7"):
        pairwise_diversity({"a": p, "b": p}, y=Y[:-1])
    with pytest.raises(ValueError, match="do not sum to one"):
        pairwise_diversity({"a": p, "b": p * 0.9}, y=Y)
    with pytest.raises(ValueError, match="reference 'z' is not one of the models"):
        pairwise_diversity({"a": p, "b": p}, y=Y, reference="z")
    other = LogisticRegression(max_iter=200).fit(X[tr][y[tr] < 5], y[tr][y[tr] < 5])
    with pytest.raises(ValueError, match="same classes_"):
        pairwise_diversity({"a": models["nb"], "b": other}, X[te], y[te])
    with pytest.raises(NotFittedError, match="classifier 'b' is not fitted"):
        pairwise_diversity({"a": models["nb"], "b": LogisticRegression()}, X[te], y[te])


# --------------------------------------------------------------------------- theta thresholds
def test_specialization_angle_is_constant_along_the_thresholds():
    """Fig. 9: theta aligns with the lines c_b = 2 c_a - 1 and c_a = 2 c_b - 1 (through (1, 1))
    beyond which the more confident model's top-1 class always wins the average."""

    def top1(conf, n=10):  # top-1 confidence ``conf``, the rest spread over n - 1 classes
        return np.column_stack([conf] + [(1 - conf) / (n - 1)] * (n - 1))

    ca = np.array([0.7, 0.8, 0.9, 0.95, 0.99])
    cb = 2 * ca - 1
    pa, pb = top1(ca), top1(cb)
    np.testing.assert_allclose(pb.max(1), cb)
    # the angle about the origin ran from 0.27 to 0.005 along this line
    np.testing.assert_allclose(specialization_angle(pa, pb), np.arctan(2) - np.pi / 4, rtol=1e-12)
    np.testing.assert_allclose(specialization_angle(pb, pa), np.pi / 4 - np.arctan(2), rtol=1e-12)
    # any line through (1, 1) is a level set of theta
    t = np.linspace(0.05, 0.5, 6)
    theta = specialization_angle(top1(1 - t), top1(1 - 0.3 * t))
    np.testing.assert_allclose(theta, np.arctan2(0.3, 1) - np.pi / 4, rtol=1e-12)


def test_theta_threshold_separates_where_the_confident_model_always_wins():
    rng = np.random.default_rng(0)
    pa, pb = rng.dirichlet(np.ones(4) * 0.3, size=2000), rng.dirichlet(np.ones(4) * 0.3, 2000)
    theta = specialization_angle(pa, pb)
    wins = ensemble_proba(pa, pb).argmax(1) == pa.argmax(1)
    beyond = theta > np.arctan(2) - np.pi / 4
    assert beyond.sum() > 100 and wins[beyond].all()


# --------------------------------------------------------------------------- averaging, neither
# s0: neither right; the probability average picks class 0, the logit average class 1
# s1: neither right; both averages right.  s2: only A right.  s3: both right.
# s4: neither right, and no average rescues it.
_PA = np.array(
    [[0.6, 0.35, 0.05], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1]]
)
_PB = np.array(
    [[0.2, 0.35, 0.45], [0.4, 0.1, 0.5], [0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.15, 0.1, 0.75]]
)
_Y = np.array([1, 0, 2, 0, 1])


def test_logit_averaging_is_the_normalized_geometric_mean():
    logit = ensemble_proba(_PA, _PB, averaging="logit")
    geo = np.sqrt(_PA * _PB)
    np.testing.assert_allclose(logit, geo / geo.sum(1, keepdims=True), rtol=1e-9)
    assert ensemble_proba(_PA, _PB).argmax(1).tolist() == [0, 0, 2, 0, 0]
    assert logit.argmax(1).tolist() == [1, 0, 2, 0, 0]
    np.testing.assert_allclose(
        ensemble_proba(_PA[:1], _PB[:1], averaging="logit"),
        [[np.sqrt(0.12), 0.35, 0.15]] / np.sum([np.sqrt(0.12), 0.35, 0.15]),
    )
    with pytest.raises(ValueError, match="averaging must be one of \\['proba', 'logit'\\]"):
        ensemble_proba(_PA, _PB, averaging="max")


def test_conversion_rate_of_neither_correct_samples():
    # neither right on s0, s1, s4: the probability average converts s1, the logit one s0, s1
    assert conversion_rate(_Y, _PA, _PB, among="neither") == pytest.approx(1 / 3)
    assert conversion_rate(_Y, _PA, _PB, among="neither", averaging="logit") == pytest.approx(2 / 3)
    assert conversion_rate(_Y, _PA, _PB) == 1.0  # s2, the only inconsistent sample
    assert ensemble_gain(_Y, _PA, _PB, averaging="logit") == pytest.approx(4 / 5 - 3 / 10)
    with pytest.warns(UndefinedMetricWarning, match="no sample has both models wrong"):
        assert np.isnan(
            conversion_rate(_Y[2:4], _PA[2:4], _PB[2:4], labels=[0, 1, 2], among="neither")
        )
    with pytest.raises(ValueError, match="among must be one of"):
        conversion_rate(_Y, _PA, _PB, among="both")


def test_pairwise_diversity_pins_averaging_and_neither_columns():
    probas = {"a": _PA, "b": _PB}
    raw = pairwise_diversity(probas, y=_Y, calibrate=False).iloc[0]
    logit = pairwise_diversity(probas, y=_Y, calibrate=False, averaging="logit").iloc[0]
    assert (raw["accuracy_a"], raw["accuracy_b"]) == (pytest.approx(2 / 5), pytest.approx(1 / 5))
    assert raw["error_inconsistency"] == pytest.approx(1 / 5)
    assert raw["ensemble_accuracy"] == pytest.approx(3 / 5)
    assert logit["ensemble_accuracy"] == pytest.approx(4 / 5)
    assert raw["conversion_rate"] == logit["conversion_rate"] == 1.0
    assert raw["conversion_rate_neither"] == pytest.approx(1 / 3)
    assert logit["conversion_rate_neither"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- calibrated default
def _binary(pred, conf):
    p = np.full((len(pred), 2), 1 - conf)
    p[np.arange(len(pred)), pred] = conf
    return p


def _confident_vs_calibrated(kinds):
    """A says 0.99 and is right 60% of the time; B says 0.8 and is right 80% of the time.

    ``kinds`` lists per sample which models are right ("RW": A only, "WR": B only, ...).
    """
    y = np.arange(len(kinds)) % 2
    right_a = np.array([k[0] == "R" for k in kinds])
    right_b = np.array([k[1] == "R" for k in kinds])
    pa = _binary(np.where(right_a, y, 1 - y), 0.99)
    pb = _binary(np.where(right_b, y, 1 - y), 0.8)
    return y, pa, pb


def test_pairwise_diversity_calibrates_by_default_with_held_out_data():
    # held out: A right on 6 of 10 -> its temperature brings 0.99 down to 0.6; B stays 0.8
    y_cal, pa_cal, pb_cal = _confident_vs_calibrated(["RR"] * 4 + ["RW"] * 2 + ["WR"] * 4)
    # evaluated: A alone right once, B alone right three times
    y, pa, pb = _confident_vs_calibrated(["RW"] + ["WR"] * 3)
    np.testing.assert_allclose(calibrate_probas(pa_cal, y_cal, pa).max(1), 0.6, atol=1e-4)
    np.testing.assert_allclose(calibrate_probas(pb_cal, y_cal, pb).max(1), 0.8, atol=1e-4)
    held = {"a": pa_cal, "b": pb_cal}
    default = pairwise_diversity({"a": pa, "b": pb}, y=y, X_calib=held, y_calib=y_cal).iloc[0]
    raw = pairwise_diversity({"a": pa, "b": pb}, y=y, calibrate=False).iloc[0]
    # raw: the over-confident A always wins the average; calibrated: the more accurate B
    assert raw["ensemble_accuracy"] == 0.25 and raw["conversion_rate"] == 0.25
    assert default["ensemble_accuracy"] == 0.75 and default["conversion_rate"] == 0.75
    assert default["accuracy_a"] == raw["accuracy_a"] == 0.25  # top-1 never changes
    assert default["error_inconsistency"] == raw["error_inconsistency"] == 1.0


def test_pairwise_diversity_cross_fits_the_temperature_without_held_out_data():
    # 20 samples: A right on 12 (0.99 sure), B right on 16 (0.8 sure). Each fold is scaled
    # with temperatures fitted on the other 16 samples, where A is right 50-70% of the time
    # and B 75-85%: B becomes the more confident, and wins every disagreement.
    kinds = ["RR", "RW", "WR", "RR", "WR"] * 4
    y, pa, pb = _confident_vs_calibrated(kinds)
    default = pairwise_diversity({"a": pa, "b": pb}, y=y).iloc[0]
    raw = pairwise_diversity({"a": pa, "b": pb}, y=y, calibrate=False).iloc[0]
    assert (raw["accuracy_a"], raw["accuracy_b"]) == (0.6, 0.8)
    assert raw["ensemble_accuracy"] == pytest.approx(0.6)  # A: RR + RW
    assert default["ensemble_accuracy"] == pytest.approx(0.8)  # B: RR + WR
    assert default["conversion_rate"] == pytest.approx(8 / 12)
    from repens_sklearn.diversity._calibration import calibration_folds, cross_fitted_probas

    folds = calibration_folds(y)
    assert np.bincount(folds).tolist() == [4] * 5
    assert all(set(y[folds != k]) == {0, 1} for k in range(5))
    scaled = cross_fitted_probas(pa, y, np.array([0, 1]))
    for k in range(5):  # each fold: the temperature of the other folds, nothing else
        test = folds == k
        np.testing.assert_allclose(
            scaled[test], calibrate_probas(pa[~test], y[~test], pa[test]), rtol=1e-12
        )


def test_calibration_needs_every_class_in_the_held_out_labels(digits_models):
    X, y, tr, cal, te, models = digits_models
    keep = y[cal] != 3
    with pytest.raises(ValueError, match=r"y_calib must contain every class.*\[3\] missing"):
        calibrate_temperature(models["nb"], X[cal][keep], y[cal][keep])
    p = models["nb"].predict_proba(X[cal])
    with pytest.raises(ValueError, match=r"y_calib must contain every class.*\[3\] missing"):
        calibrate_probas(p[keep], y[cal][keep], p, labels=np.arange(10))
