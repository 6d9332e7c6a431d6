"""Diversity of a small model zoo on Fashion-MNIST ("No One Representation to Rule Them All:
Overlapping Features of Training Methods", Gontijo-Lopes et al., ICLR 2022).

A base classifier and one model per category of the paper (§3.1): reinit
(other seed), hyper-parameters, architecture, framework (unsupervised PCA
features + linear head instead of an end-to-end MLP) and data (other training
samples). For each pair with the base we print error inconsistency, kappa and
the gain of the averaged pair, before and after temperature calibration
(scikit-learn's ``CalibratedClassifierCV(method="temperature")``), then draw the
four displays of ``repens_sklearn.diversity`` into PNG files.

This example uses scikit-learn models on raw pixels so that it runs in about a
minute on a CPU; ``python -m benchmarks.bench_diversity`` runs the same study on
trained neural backbones.

    python examples/model_zoo_diversity.py [--quick] [--out FOLDER]
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from repens_sklearn import (
    GreedyEnsembleClassifier,
    TransferabilitySelector,
    load_digits_images,
    load_fashion_mnist,
)
from repens_sklearn.diversity import (
    ConfidenceDisplay,
    PairwiseDiversityDisplay,
    pairwise_diversity,
)
from repens_sklearn.selection import EnsembleCurveDisplay, SelectionDisplay


def load_images():
    """Fashion-MNIST (pixels in [0, 1]) when its Debian package is installed, else digits."""
    try:
        X, y = load_fashion_mnist(split="train", return_X_y=True)
        X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
        return X / 255.0, y, X_te / 255.0, y_te
    except (FileNotFoundError, OSError):  # dataset-fashion-mnist not installed
        print("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): using digits")
        X, y = load_digits_images(return_X_y=True)
        return X[:-400], y[:-400], X[-400:], y[-400:]


def load(n_train, n_calib, n_test, seed=0):
    X, y, X_te, y_te = load_images()
    X, X_te = X.reshape(len(X), -1), X_te.reshape(len(X_te), -1)
    shrink = min(1.0, len(X) / (2 * n_train + n_calib))  # digits is smaller than the full run
    n_train, n_calib = int(n_train * shrink), int(n_calib * shrink)
    perm = np.random.default_rng(seed).permutation(len(X))
    parts = np.split(perm[: 2 * n_train + n_calib], [n_train, n_train + n_calib])
    return [(X[p], y[p]) for p in parts] + [(X_te[:n_test], y_te[:n_test])]


def zoo(max_iter):
    mlp = dict(hidden_layer_sizes=(128,), max_iter=max_iter, early_stopping=False)
    return {
        "base": MLPClassifier(random_state=0, **mlp),
        "reinit": MLPClassifier(random_state=1, **mlp),
        "hparam": MLPClassifier(random_state=2, alpha=1e-2, learning_rate_init=3e-3, **mlp),
        "arch": MLPClassifier(random_state=3, **{**mlp, "hidden_layer_sizes": (64, 64)}),
        "framework": make_pipeline(PCA(40, random_state=0), LogisticRegression(max_iter=500)),
        "data": MLPClassifier(random_state=0, **mlp),
    }


def main(argv=None):
    # Small models: one BLAS thread avoids oversubscribing a shared CPU.
    with threadpool_limits(limits=1, user_api="blas"):
        run(argv)


def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    parser.add_argument("--out", default=None, help="folder for the PNG files")
    args = parser.parse_args(argv)
    n_train, n_calib, n_test, max_iter = (
        (400, 300, 400, 15) if args.quick else (3000, 1500, 3000, 40)
    )
    (X, y), (X_cal, y_cal), (X_other, y_other), (X_te, y_te) = load(n_train, n_calib, n_test)
    models = zoo(max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, model in models.items():
            if name == "data":
                model.fit(X_other, y_other)
            else:
                model.fit(X, y)

    for calibrate in (False, True):
        table = pairwise_diversity(
            models, X_te, y_te, reference="base", calibrate=calibrate, X_calib=X_cal, y_calib=y_cal
        )
        print(f"\npairs with the base model ({'calibrated' if calibrate else 'raw'}):")
        print(
            table[
                [
                    "model_b",
                    "accuracy_b",
                    "error_inconsistency",
                    "kappa",
                    "ensemble_accuracy",
                    "ensemble_gain",
                ]
            ]
            .round(4)
            .to_string(index=False)
        )

    import matplotlib

    matplotlib.use("Agg")
    out = Path(args.out or tempfile.mkdtemp(prefix="model_zoo_diversity_"))
    out.mkdir(parents=True, exist_ok=True)
    disp = PairwiseDiversityDisplay.from_estimators(
        models, X_te, y_te, calibrate=True, X_calib=X_cal, y_calib=y_cal
    )
    disp.figure_.savefig(out / "pairwise_error_inconsistency.png", bbox_inches="tight")
    disp = ConfidenceDisplay.from_estimators(
        models["base"], models["framework"], X_te, y_te, name_a="base", name_b="framework"
    )
    disp.figure_.savefig(out / "confidence_base_vs_framework.png", bbox_inches="tight")

    # The zoo, frozen, as candidates of a greedy ensemble chosen on held-out data.
    greedy = GreedyEnsembleClassifier(
        [(n, FrozenEstimator(m)) for n, m in models.items()],
        max_size=6,
        replacement=True,
        random_state=0,
    )
    greedy.fit(X_cal, y_cal)
    print(f"\ngreedy ensemble {greedy.ensemble_}: test accuracy {greedy.score(X_te, y_te):.4f}")
    disp = EnsembleCurveDisplay.from_estimator(greedy)
    disp.figure_.savefig(out / "greedy_ensemble_curve.png", bbox_inches="tight")

    # Ranking representations by leave-one-out kNN accuracy.
    candidates = [
        ("pixels", FunctionTransformer()),
        ("pca8", PCA(8, random_state=0)),
        ("pca16", PCA(16, random_state=0)),
        ("pca32", PCA(32, random_state=0)),
    ]
    selector = TransferabilitySelector(candidates, n_select=2).fit(X_cal, y_cal)
    disp = SelectionDisplay.from_estimator(selector)
    disp.figure_.savefig(out / "knn_selection.png", bbox_inches="tight")
    print(f"\nfigures saved to {out}")


if __name__ == "__main__":
    main()
