"""Model-zoo diversity study on Fashion-MNIST ("No One Representation to Rule Them All").

A base model (convnet_small, supervised) and one model per category of the
paper (§3.1), each differing from the base along one more axis:

- reinit: another seed;
- hparam: other learning rate and batch size (and seed);
- arch: a convnet half as wide (width 16 instead of 32; ResNet-18 is too slow
  to train on the shared CPU within the time budget);
- framework: self-supervised EnSiam (``EnSiamPretrainer``) instead of supervised;
- data (samples): trained on a disjoint sample of the training set;
- data (classes): trained on 5 of the 10 classes only.

Every backbone is frozen and gets a linear head (LogisticRegression on its
features, same training labels for all), so every model gives probabilities on
the test split. For each pair (base, other): error inconsistency, kappa, the
averaged pair's accuracy and gain over the members' mean, raw and after
temperature calibration (``CalibratedClassifierCV(method="temperature")`` on a
held-out split, §3.2); then the §4.6 linear evaluation of concatenated
embeddings with ``ConcatEmbedder`` fractions 0/25/50/75/100 of the base.

Backbones are trained by ``FineTuneClassifier`` and ``EnSiamPretrainer`` and cached
under benchmarks/.cache (``benchmarks._common.train_backbone`` / ``ensiam_backbone``);
their features come from ``MeanTTAEmbedder(n_augmentations=0)``.

    python -m benchmarks.bench_diversity    # default (~10 min on 2 shared cores, cold cache)
    python -m benchmarks.bench_diversity --quick    # seconds-scale smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from benchmarks._common import (
    CACHE,
    embed,
    ensiam_backbone,
    fashion_pools,
    machine_description,
    print_table,
    run_and_record,
    set_threads,
    train_backbone,
)
from repens_sklearn.diversity import (
    ConfidenceDisplay,
    PairwiseDiversityDisplay,
    linear_cka,
    pairwise_diversity,
)
from repens_sklearn.embedders import ConcatEmbedder

CATEGORIES = ["reinit", "hparam", "arch", "framework", "data-samples", "data-classes"]
SPLITS = ("train", "calib", "test")


def split(n_train, n_calib, n_test, seed=0):
    """Disjoint pools of the training split (base, calibration, other data) and a test subset."""
    return fashion_pools({"train": n_train, "calib": n_calib, "other": n_train}, n_test, seed)


def build_zoo(data, epochs):
    """{name: {split: features}} for the base and one model per category."""
    X, y = data["train"]
    Xo, yo = data["other"]
    common = dict(epochs=epochs, lr=0.05, batch_size=128, verbose=True)
    specs = {
        "base": (X, y, dict(seed=0)),
        "reinit": (X, y, dict(seed=1)),
        "hparam": (X, y, dict(seed=2, lr=0.01, batch_size=64)),
        "arch": (X, y, dict(seed=3, arch_params=dict(width=16))),
        "data-samples": (Xo, yo, dict(seed=4)),
        "data-classes": (X, y, dict(seed=5, classes=[0, 1, 2, 3, 4])),
    }
    zoo = {}
    for name, (Xb, yb, kw) in specs.items():
        start = time.perf_counter()
        module = train_backbone(Xb, yb, name=f"div-{name}", **{**common, **kw})
        zoo[name] = {s: embed(module, data[s][0]) for s in SPLITS}
        print(
            f"  {name}: {zoo[name]['test'].shape[1]} dims ({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    encoder = ensiam_backbone(X, epochs=epochs)  # self-supervised: labels unused
    zoo["framework"] = {s: embed(encoder, data[s][0]) for s in SPLITS}
    return {k: zoo[k] for k in ["base"] + CATEGORIES if k in zoo}


def linear_head(F_train, y_train):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(F_train, y_train)


def _cols(Z, start, stop):
    return Z[:, start:stop]


def concat_accuracy(base, other, y_train, y_test, fraction_base, seed=0):
    """§4.6: random `fraction_base` of the base dims + the rest of the other's, linear eval."""
    d0, d1 = base["train"].shape[1], other["train"].shape[1]
    members = [
        ("base", FunctionTransformer(_cols, kw_args=dict(start=0, stop=d0))),
        ("other", FunctionTransformer(_cols, kw_args=dict(start=d0, stop=d0 + d1))),
    ]
    fractions = {}
    if fraction_base == 0:
        members[0] = ("base", "drop")
    elif fraction_base == 1:
        members[1] = ("other", "drop")
    else:
        fractions = {"base": fraction_base, "other": 1 - fraction_base}
    emb = ConcatEmbedder(members, fractions=fractions or None, random_state=seed)
    model = make_pipeline(emb, StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(np.hstack([base["train"], other["train"]]), y_train)
    return model.score(np.hstack([base["test"], other["test"]]), y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument(
        "--out", default=str(CACHE / "diversity_figures"), help="folder for the PNG figures"
    )
    parser.add_argument("--n-train", type=int, default=2000, help="backbone/head training images")
    parser.add_argument("--epochs", type=int, default=2, help="backbone training epochs")
    args = parser.parse_args(argv)
    n_train, n_calib, n_test, epochs = (
        (800, 400, 500, 1) if args.quick else (args.n_train, 1000, 2000, args.epochs)
    )
    set_threads(1)
    print(
        f"# Diversity of a model zoo on Fashion-MNIST\n\n{machine_description()}; "
        f"{n_train} train / {n_calib} calibration / {n_test} test images, {epochs} epochs\n"
    )
    start = time.perf_counter()
    data = split(n_train, n_calib, n_test)
    zoo = build_zoo(data, epochs)
    analyse(zoo, data, args.out, start)


def analyse(zoo, data, out, start):
    y_tr, y_cal, y_te = data["train"][1], data["calib"][1], data["test"][1]
    heads = {k: linear_head(f["train"], y_tr) for k, f in zoo.items()}
    probas = {k: heads[k].predict_proba(f["test"]) for k, f in zoo.items()}
    held = {k: heads[k].predict_proba(f["calib"]) for k, f in zoo.items()}
    raw = pairwise_diversity(probas, y=y_te, reference="base", calibrate=False)
    cal = pairwise_diversity(
        probas, y=y_te, reference="base", calibrate=True, X_calib=held, y_calib=y_cal
    )
    print("\n## Pairs (base, other): diversity and ensemble benefit\n")
    rows, ref_inc = [], float(raw.loc[raw.model_b == "reinit", "error_inconsistency"].iloc[0])
    for i, name in enumerate(raw.model_b):
        r, c = raw.iloc[i], cal.iloc[i]
        rows.append(
            [
                name,
                f"{r.accuracy_b:.4f}",
                f"{r.error_inconsistency:.4f}",
                f"{r.error_inconsistency / ref_inc:.2f}x",
                f"{r.kappa:.3f}",
                f"{linear_cka(zoo['base']['test'], zoo[name]['test']):.3f}",
                f"{r.ensemble_accuracy:.4f}",
                f"{r.ensemble_gain:+.4f}",
                f"{c.ensemble_accuracy:.4f}",
                f"{c.ensemble_gain:+.4f}",
                f"{c.conversion_rate:.3f}",
            ]
        )
    print(
        f"base accuracy {raw.accuracy_a.iloc[0]:.4f}; ratio = inconsistency / reinit's "
        "(baseline measured in this run); gain = pair accuracy - mean member accuracy\n"
    )
    print_table(
        rows,
        [
            "category",
            "acc",
            "err. inconsistency",
            "ratio vs reinit",
            "kappa",
            "CKA",
            "ens. acc (raw)",
            "gain (raw)",
            "ens. acc (calibrated)",
            "gain (calibrated)",
            "conversion (cal.)",
        ],
    )
    order = raw.sort_values("error_inconsistency").model_b.tolist()
    print(f"\nordering by error inconsistency: {' < '.join(order)}")
    print("paper's ordering: reinit < hparam < arch < framework/dataset")

    print("\n## Concatenated embeddings, linear evaluation (§4.6, ConcatEmbedder fractions)\n")
    fractions = [1.0, 0.75, 0.5, 0.25, 0.0]
    crow, curves = [], {}
    for name in zoo:
        if name == "base":
            continue
        accs = [concat_accuracy(zoo["base"], zoo[name], y_tr, y_te, f) for f in fractions]
        curves[name] = accs
        best_single = max(accs[0], accs[-1])
        crow.append(
            [name]
            + [f"{a:.4f}" for a in accs]
            + [f"{max(accs[1:-1]) - best_single:+.4f}", f"{max(accs[1:-1]) / accs[0]:.3f}x"]
        )
    print("columns: share of base dims / share of other dims; ratio = best mix / base alone\n")
    print_table(
        crow,
        [
            "other",
            "100/0",
            "75/25",
            "50/50",
            "25/75",
            "0/100",
            "best mix - best single",
            "ratio vs base",
        ],
    )
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    save_figures(Path(out), raw, cal, probas, y_te, curves, fractions)


def save_figures(out, raw, cal, probas, y_te, curves, fractions):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figures")
        return
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(raw))
    ax.bar(x - 0.2, raw.error_inconsistency, 0.4, label="error inconsistency")
    ax.bar(x + 0.2, cal.ensemble_gain, 0.4, label="ensemble gain (calibrated)")
    ax.set(xticks=x, xticklabels=raw.model_b, title="pairs with the base model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "inconsistency_by_category.png", dpi=120)
    for metric in ("error_inconsistency", "ensemble_gain"):
        fig, ax = plt.subplots(figsize=(7, 6))
        PairwiseDiversityDisplay.from_predictions(y_te, probas, metric=metric, ax=ax)
        fig.tight_layout()
        fig.savefig(out / f"pairwise_{metric}.png", dpi=120)
    for name in ("reinit", "arch", "framework", "data-classes"):
        if name in probas:
            disp = ConfidenceDisplay.from_predictions(
                y_te, probas["base"], probas[name], name_a="base", name_b=name
            )
            disp.figure_.tight_layout()
            disp.figure_.savefig(out / f"confidence_base_vs_{name}.png", dpi=120)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, accs in curves.items():
        ax.plot([int(f * 100) for f in fractions], accs, marker="o", label=name)
    ax.set(
        xlabel="% of base dimensions (rest from the other model)",
        ylabel="linear-eval accuracy",
        title="concatenated embeddings",
    )
    ax.invert_xaxis()
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "concat_fractions.png", dpi=120)
    plt.close("all")
    print(f"\nfigures saved to {out}")


if __name__ == "__main__":
    run_and_record(main, "bench_diversity")
