"""Tests for the diversity displays: rendered with Agg, asserting on the artists drawn."""

import builtins

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from repens_sklearn.diversity import (  # noqa: E402
    ConfidenceDisplay,
    PairwiseDiversityDisplay,
    error_inconsistency,
    specialization_angle,
)
from repens_sklearn.selection import EnsembleCurveDisplay, SelectionDisplay  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits(digits_flat):
    X, y = digits_flat
    return X[:500], y[:500], X[500:900], y[500:900], X[900:1300], y[900:1300]


@pytest.fixture(scope="module")
def models(digits):
    X, y = digits[:2]
    return {
        "logreg": LogisticRegression(max_iter=300).fit(X, y),
        "nb": GaussianNB().fit(X, y),
        "logreg_weak": LogisticRegression(C=0.01, max_iter=300).fit(X, y),
    }


# --------------------------------------------------------------------------- heat map
def test_pairwise_display_from_estimators(digits, models):
    _, _, _, _, X_te, y_te = digits
    disp = PairwiseDiversityDisplay.from_estimators(models, X_te, y_te)
    m = disp.im_.get_array()
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 0)
    preds = {n: est.predict(X_te) for n, est in models.items()}
    assert m[0, 1] == pytest.approx(error_inconsistency(y_te, preds["logreg"], preds["nb"]))
    assert disp.text_[0, 1].get_text() == f"{m[0, 1]:.3f}"
    off = m[~np.eye(3, dtype=bool)]
    assert disp.im_.get_clim() == pytest.approx((off.min(), off.max()))  # not the 0 diagonal
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["logreg", "nb", "logreg_weak"]
    assert disp.figure_ is disp.ax_.figure
    assert len(disp.figure_.axes) == 2  # heat map + colour bar


def test_pairwise_display_ensemble_accuracy_diagonal_and_ax(digits, models):
    _, _, X_cal, y_cal, X_te, y_te = digits
    probas = {n: est.predict_proba(X_te) for n, est in models.items()}
    held = {n: est.predict_proba(X_cal) for n, est in models.items()}
    fig, ax = plt.subplots()
    disp = PairwiseDiversityDisplay.from_predictions(
        y_te,
        probas,
        metric="ensemble_accuracy",
        calibrate=True,
        proba_calib=held,
        y_calib=y_cal,
        ax=ax,
        plot_kw={"include_values": False, "colorbar": False},
    )
    assert disp.ax_ is ax and disp.figure_ is fig and disp.text_ is None
    diag = np.diag(disp.im_.get_array())
    acc = [np.mean(est.predict(X_te) == y_te) for est in models.values()]
    np.testing.assert_allclose(diag, acc)
    with pytest.raises(ValueError, match="metric must be one of"):
        PairwiseDiversityDisplay.from_predictions(y_te, probas, metric="accuracy_a")


def test_pairwise_display_bad_matrix():
    with pytest.raises(ValueError, match=r"matrix must have shape \(2, 2\)"):
        PairwiseDiversityDisplay(np.zeros((3, 3)), ["a", "b"]).plot()


# --------------------------------------------------------------------------- confidences
def test_confidence_display_groups_and_theta(digits, models):
    _, _, _, _, X_te, y_te = digits
    a, b = models["logreg"], models["nb"]
    disp = ConfidenceDisplay.from_estimators(
        a, b, X_te, y_te, name_a="lr", name_b="nb", calibrate=False
    )
    ca, cb = a.predict(X_te) == y_te, b.predict(X_te) == y_te
    counts = {
        "both correct": np.sum(ca & cb),
        "only lr correct": np.sum(ca & ~cb),
        "only nb correct": np.sum(~ca & cb),
        "neither correct": np.sum(~ca & ~cb),
    }
    assert {k: len(v.get_offsets()) for k, v in disp.scatter_.items()} == counts
    # scatter positions are the top-1 confidences
    only_a = disp.scatter_["only lr correct"].get_offsets()
    np.testing.assert_allclose(only_a[:, 0], a.predict_proba(X_te)[ca & ~cb].max(1))
    # histograms: the three groups with a disagreement or a shared error, by default
    assert set(disp.hist_) == {"only lr correct", "only nb correct", "neither correct"}
    heights = sum(p.get_height() for p in disp.hist_["only nb correct"])
    assert heights == counts["only nb correct"]
    theta = specialization_angle(a.predict_proba(X_te), b.predict_proba(X_te))
    assert np.all(np.abs(theta) <= np.pi / 4 + 1e-12)
    assert len(disp.ax_) == 2 and disp.figure_ is disp.ax_[0].figure
    assert "lr confidence" in disp.ax_[0].get_xlabel()


def test_confidence_display_from_predictions_values_and_ax():
    y = np.array([0, 1, 1, 0])
    pa = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    pb = np.array([[0.4, 0.6], [0.1, 0.9], [0.2, 0.8], [0.5, 0.5]])
    fig, axes = plt.subplots(1, 2)
    disp = ConfidenceDisplay.from_predictions(
        y, pa, pb, ax=axes, plot_kw={"include_consistent": True, "bins": 4}
    )
    assert disp.ax_[1] is axes[1]
    assert len(disp.hist_) == 4 and len(disp.hist_["both correct"]) == 4
    # theta is the angle about (1, 1), from the diagonal
    np.testing.assert_allclose(disp.theta, np.arctan2(1 - pb.max(1), 1 - pa.max(1)) - np.pi / 4)
    with pytest.raises(ValueError, match="sequence of 2 Axes"):
        disp.plot(ax=[axes[0]])


# --------------------------------------------------------------------------- greedy curve
def test_ensemble_curve_display_plain_values():
    disp = EnsembleCurveDisplay(
        [0.5, 0.4, 0.45],
        scoring="log_loss",
        candidate_scores={"a": 0.5, "b": 0.55},
        ensemble=["a", "b"],
    ).plot()
    np.testing.assert_allclose(disp.line_.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(disp.line_.get_ydata(), [0.5, 0.4, 0.45])
    np.testing.assert_allclose(disp.best_point_.get_offsets(), [[2, 0.4]])  # lowest loss
    assert disp.best_candidate_line_.get_ydata()[0] == 0.5
    assert [t.get_text() for t in disp.ax_.texts] == ["a", "b"]
    acc = EnsembleCurveDisplay([0.7, 0.8, 0.75], scoring="accuracy").plot()
    np.testing.assert_allclose(acc.best_point_.get_offsets(), [[2, 0.8]])  # highest accuracy
    assert acc.best_candidate_line_ is None
    with pytest.raises(ValueError, match="validation_curve is empty"):
        EnsembleCurveDisplay([]).plot()


def test_ensemble_curve_display_from_greedy_estimator(digits):
    selection = pytest.importorskip("repens_sklearn.selection")
    X, y = digits[:2]
    clf = selection.GreedyEnsembleClassifier(
        [
            ("lr", LogisticRegression(max_iter=200)),
            ("nb", GaussianNB()),
            ("lr_weak", LogisticRegression(C=0.01, max_iter=200)),
        ],
        max_size=3,
        replacement=True,
        random_state=0,
    ).fit(X, y)
    disp = EnsembleCurveDisplay.from_estimator(clf)
    np.testing.assert_allclose(disp.line_.get_ydata(), clf.validation_curve_)
    best = min(clf.candidate_scores_.values())  # log loss: lower is better
    assert disp.best_candidate_line_.get_ydata()[0] == pytest.approx(best)
    assert [t.get_text() for t in disp.ax_.texts] == list(clf.ensemble_)
    assert "log_loss" in disp.ax_.get_ylabel()
    with pytest.raises(ValueError, match="needs a fitted GreedyEnsembleClassifier"):
        EnsembleCurveDisplay.from_estimator(GaussianNB())


# --------------------------------------------------------------------------- selection
def test_selection_display_plain_values():
    disp = SelectionDisplay({"a": 0.6, "b": 0.9, "c": 0.7}, selected=["b", "c"]).plot()
    bars = list(disp.bars_)
    assert len(bars) == 3
    # best at the top: barh draws bottom-up, so widths ascend
    assert [b.get_width() for b in bars] == [0.6, 0.7, 0.9]
    assert [t.get_text() for t in disp.ax_.get_yticklabels()] == ["a", "c", "b"]
    grey = matplotlib.colors.to_rgba("lightgray")
    assert bars[0].get_facecolor() == grey and bars[2].get_facecolor() != grey
    assert "2 of 3" in disp.ax_.get_title()
    with pytest.raises(ValueError, match="selected names unknown candidates"):
        SelectionDisplay({"a": 0.6}, selected=["z"]).plot()
    with pytest.raises(ValueError, match="scores is empty"):
        SelectionDisplay({}).plot()


def test_selection_display_from_knn_selector(digits):
    selection = pytest.importorskip("repens_sklearn.selection")
    X, y = digits[:2]
    candidates = [
        ("raw", FunctionTransformer()),
        ("pca2", PCA(n_components=2)),
        ("pca16", PCA(n_components=16)),
    ]
    sel = selection.TransferabilitySelector(candidates, n_select=2).fit(X, y)
    disp = SelectionDisplay.from_estimator(sel)
    labels = [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert labels == sel.ranking_[::-1]
    widths = {lab: bar.get_width() for lab, bar in zip(labels, disp.bars_)}
    assert widths == pytest.approx(sel.scores_)
    grey = matplotlib.colors.to_rgba("lightgray")
    highlighted = {lab for lab, bar in zip(labels, disp.bars_) if bar.get_facecolor() != grey}
    assert highlighted == set(sel.selected_)
    assert disp.ax_.get_xlabel() == "leave-one-out kNN accuracy"
    with pytest.raises(ValueError, match="needs a fitted TransferabilitySelector"):
        SelectionDisplay.from_estimator(PCA())


def test_selection_display_names_the_score_and_shows_negative_ones(digits):
    selection = pytest.importorskip("repens_sklearn.selection")
    X, y = digits[:2]
    candidates = [("raw", FunctionTransformer()), ("pca2", PCA(n_components=2))]
    sel = selection.TransferabilitySelector(candidates, scoring="logme").fit(X, y)
    disp = SelectionDisplay.from_estimator(sel)
    assert disp.ax_.get_xlabel() == "LogME (log evidence)"
    low, high = disp.ax_.get_xlim()
    assert low <= min(sel.scores_.values()) and high >= max(sel.scores_.values())


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"SelectionDisplay.plot requires matplotlib.*\[plot\]"):
        SelectionDisplay({"a": 1.0}).plot()


def test_confidence_display_draws_the_thresholds_and_calibrates_by_default(digits, models):
    _, _, X_cal, y_cal, X_te, y_te = digits
    a, b = models["logreg"], models["nb"]
    disp = ConfidenceDisplay.from_estimators(a, b, X_te, y_te, X_calib=X_cal, y_calib=y_cal)
    from repens_sklearn.diversity import calibrate_temperature

    expected = calibrate_temperature(b, X_cal, y_cal).predict_proba(X_te).max(1)
    np.testing.assert_allclose(disp.confidence_b, expected)
    assert not np.allclose(disp.confidence_b, b.predict_proba(X_te).max(1))
    line_a, line_b, vline_pos, vline_neg = disp.threshold_lines_
    # c_b = 2 c_a - 1 and c_a = 2 c_b - 1, both through (1, 1)
    np.testing.assert_allclose(np.c_[line_a.get_xdata(), line_a.get_ydata()], [[0.5, 0], [1, 1]])
    np.testing.assert_allclose(np.c_[line_b.get_xdata(), line_b.get_ydata()], [[0, 0.5], [1, 1]])
    assert vline_pos.get_xdata()[0] == pytest.approx(np.arctan(2) - np.pi / 4)
    assert vline_neg.get_xdata()[0] == pytest.approx(np.pi / 4 - np.arctan(2))


def test_pairwise_display_matches_the_calibrated_table(digits, models):
    from repens_sklearn.diversity import pairwise_diversity

    _, _, _, _, X_te, y_te = digits
    tables = {}
    for averaging in ("proba", "logit"):
        disp = PairwiseDiversityDisplay.from_estimators(
            models,
            X_te,
            y_te,
            metric="ensemble_accuracy",
            averaging=averaging,
            plot_kw={"include_values": False, "colorbar": False},
        )
        tables[averaging] = pairwise_diversity(models, X_te, y_te, averaging=averaging)
        m = disp.im_.get_array()
        np.testing.assert_allclose(
            [m[0, 1], m[0, 2], m[1, 2]], tables[averaging]["ensemble_accuracy"]
        )
    raw = pairwise_diversity(models, X_te, y_te, calibrate=False)
    assert not np.allclose(raw["ensemble_accuracy"], tables["proba"]["ensemble_accuracy"])
    neither = PairwiseDiversityDisplay.from_estimators(
        models, X_te, y_te, metric="conversion_rate_neither", plot_kw={"colorbar": False}
    )
    np.testing.assert_allclose(np.diag(neither.im_.get_array()), 0.0)
