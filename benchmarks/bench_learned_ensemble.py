"""Learned ensemble vs concatenation / averaging / individual backbones, kNN on Fashion-MNIST.

"Learning Rich Nearest Neighbor Representations from Self-supervised Ensembles"
(the learned-ensemble paper): a vector per image learned so that one MLP per
frozen backbone recovers its features (section 3), compared with concatenation, averaging
and the individual models
(section 3.1 "Baselines"), by cosine kNN accuracy (k = 1 and 20); plus the
single-model case for the best backbone (section 4.2). The paper reports about
+2 points over concatenation / averaging. The "best" backbone is chosen on the
training split only (leave-one-out cosine kNN accuracy, k = 20, of each
backbone's training features, ``loo_knn_accuracy``), never on the test split.

Backbones (``benchmarks._common.train_backbone``, i.e. ``FineTuneClassifier``,
cached in ``benchmarks/.cache``; the configurations of ``bench_diversity``): convnet_small
trained on all classes
(``base``), with other hyper-parameters (``hparam``), on 5 of the 10 classes
(``data-classes``), a narrower convnet_small (``arch``, width 16 -> 64 dims), a
random-initialised convnet_small (``random``) and a self-supervised one
(``ensiam``: ``EnSiamPretrainer`` on convnet_small,
``benchmarks._common.ensiam_backbone`` as in ``bench_diversity``; its encoder,
cached in ``benchmarks/.cache`` too, is embedded like the other backbones).

Shrunk for a shared 2-core CPU: the backbones train 2 epochs on 1,000 images
(a resnet18 or 3 epochs on 6,000 take many minutes here); kNN on 5,000 training
/ 2,000 test images (not 60k / 10k). The learned ensemble itself runs the
paper's settings (50 epochs, Adam 3e-4, batch 256, half warm-up). Three seeds
of the learned ensemble (the baselines are deterministic).

    python -m benchmarks.bench_learned_ensemble            # default (minutes)
    python -m benchmarks.bench_learned_ensemble --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from benchmarks._common import (
    PeakRSS,
    embed,
    ensiam_backbone,
    fashion_pools,
    machine_description,
    print_table,
    run_and_record,
    set_threads,
    train_backbone,
)
from repens_sklearn import LearnedEnsembleEmbedder
from repens_sklearn.selection import loo_knn_accuracy


def split(n_train, n_test, seed=0):
    """The training / test pools of bench_diversity (same draw, so the zoo cache is shared)."""
    pools = fashion_pools({"train": n_train}, n_test, seed)
    return (*pools["train"], *pools["test"])


def build_zoo(X, y, epochs):
    common = dict(epochs=epochs, lr=0.05, batch_size=128, verbose=True)
    specs = {
        "base": dict(seed=0),
        "hparam": dict(seed=2, lr=0.01, batch_size=64),
        "data-classes": dict(seed=5, classes=[0, 1, 2, 3, 4]),
        "arch": dict(seed=3, arch="convnet_small", arch_params={"width": 16}),
        "random": dict(seed=7, epochs=0),
    }
    zoo = {
        name: train_backbone(X, y, name=f"div-{name}", **{**common, **kw})
        for name, kw in specs.items()
    }
    zoo["ensiam"] = ensiam_backbone(X, epochs=epochs)
    return zoo


def knn_accuracy(F_train, y_train, F_test, y_test, k):
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    return 100.0 * knn.fit(F_train, y_train).score(F_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is fastest for these small MLPs on a busy machine)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    # backbones train on the first n_zoo training images; kNN uses all n_train / n_test
    n_zoo, n_train, n_test, zoo_epochs = (800, 800, 300, 1) if args.quick else (1000, 5000, 2000, 2)
    le_params = dict(max_epochs=4, batch_size=128) if args.quick else dict(max_epochs=50)
    seeds = [0] if args.quick else [0, 1, 2]
    print(
        f"# Learned ensemble on Fashion-MNIST\n\n{machine_description()}; backbones trained "
        f"{zoo_epochs} epochs on {n_zoo} images; kNN on {n_train} train / {n_test} test images; "
        f"learned ensemble {le_params}, seeds {seeds}\n",
        flush=True,
    )
    start = time.perf_counter()
    X_tr, y_tr, X_te, y_te = split(n_train, n_test)
    zoo = build_zoo(X_tr[:n_zoo], y_tr[:n_zoo], zoo_epochs)

    feats, embed_s = {}, 0.0
    for name, module in zoo.items():
        t0 = time.perf_counter()
        feats[name] = (embed(module, X_tr), embed(module, X_te))
        embed_s += time.perf_counter() - t0
    names = list(feats)
    widths = [feats[n][0].shape[1] for n in names]
    F_tr = np.hstack([feats[n][0] for n in names])
    F_te = np.hstack([feats[n][1] for n in names])
    print(f"\nfeatures of {len(names)} backbones ({widths} dims) in {embed_s:.0f}s\n", flush=True)

    rows, reps = [], {}
    for name in names:
        reps[f"individual: {name}"] = (normalize(feats[name][0]), normalize(feats[name][1]))
    concat = lambda F: np.hstack([normalize(b) for b in np.split(F, np.cumsum(widths)[:-1], 1)])  # noqa: E731
    reps["concatenation"] = (concat(F_tr), concat(F_te))
    avg = LearnedEnsembleEmbedder(feature_groups=widths, transform_epochs=0, max_epochs=1).fit(F_tr)
    reps["averaging (zero-padded)"] = (avg.transform(F_tr), avg.transform(F_te))
    for label, (A, B) in reps.items():
        rows.append(
            [
                label,
                f"{knn_accuracy(A, y_tr, B, y_te, 1):.2f}",
                f"{knn_accuracy(A, y_tr, B, y_te, 20):.2f}",
                "",
                "",
            ]
        )
    # the single-model case uses the best backbone by leave-one-out kNN on the training split
    loo = {
        n: 100.0 * loo_knn_accuracy(feats[n][0], y_tr, n_neighbors=20, metric="cosine")
        for n in names
    }
    best = max(names, key=loo.get)
    print(
        "leave-one-out cosine kNN accuracy (k=20) on the training split: "
        + ", ".join(f"{n} {loo[n]:.2f}" for n in names)
        + f"\nsingle-model case: {best} (LOO {loo[best]:.2f}%)\n",
        flush=True,
    )
    b = names.index(best)
    lo, hi = sum(widths[:b]), sum(widths[: b + 1])

    timing = []
    for label, X_fit, X_eval, groups in [
        ("learned ensemble", F_tr, F_te, widths),
        (f"learned, single model ({best})", F_tr[:, lo:hi], F_te[:, lo:hi], None),
    ]:
        acc1, acc20, cos = [], [], []
        for seed in seeds:
            le = LearnedEnsembleEmbedder(
                feature_groups=groups, random_state=seed, device="cpu", **le_params
            )
            t0 = time.perf_counter()
            Z_tr = le.fit_transform(X_fit)
            fit_s = time.perf_counter() - t0
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                Z_te = le.transform(X_eval)
                tr_s = time.perf_counter() - t0
            acc1.append(knn_accuracy(Z_tr, y_tr, Z_te, y_te, 1))
            acc20.append(knn_accuracy(Z_tr, y_tr, Z_te, y_te, 20))
            c = le.history_[:, "train_cosine"]
            n_warm = le.history_[:, "phase"].count("warmup")
            cos.append((c[max(n_warm - 1, 0)], c[-1]))
            timing.append(
                [label, seed, f"{fit_s:.1f}", f"{1000 * tr_s / len(X_eval):.2f}", f"{mem.mib:.0f}"]
            )
        cos = np.mean(cos, axis=0)
        rows.append(
            [
                label,
                f"{np.mean(acc1):.2f} ± {np.std(acc1):.2f}",
                f"{np.mean(acc20):.2f} ± {np.std(acc20):.2f}",
                f"{cos[0]:.3f} -> {cos[1]:.3f}",
                "",
            ]
        )

    ref = {r[0]: (float(r[1].split()[0]), float(r[2].split()[0])) for r in rows}
    for r in rows:
        if r[0].startswith("learned ensemble"):
            d = [
                ref[r[0]][i] - max(ref["concatenation"][i], ref["averaging (zero-padded)"][i])
                for i in (0, 1)
            ]
            r[4] = f"{d[0]:+.2f} / {d[1]:+.2f}"
        elif r[0].startswith("learned, single"):
            base = ref[f"individual: {best}"]
            r[4] = f"{ref[r[0]][0] - base[0]:+.2f} / {ref[r[0]][1] - base[1]:+.2f} vs {best}"
    print("## kNN accuracy (%), cosine, test split\n")
    print_table(
        rows,
        [
            "representation",
            "k=1",
            "k=20",
            "train cosine end warm-up -> end",
            "Δ k=1 / k=20 vs best baseline",
        ],
    )
    print("\n## Cost of the learned ensemble (CPU)\n")
    embed_per_k = 1000 * embed_s / (len(X_tr) + len(X_te))
    timing = [t + [f"{float(t[3]) / embed_per_k:.2f}"] for t in timing]
    print_table(
        timing,
        [
            "method",
            "seed",
            "fit s",
            "transform s / 1,000 samples",
            "transform peak RSS growth MiB",
            "transform ÷ backbone features (all backbones)",
        ],
    )
    print(
        f"\nbackbone feature extraction (all {len(names)} backbones): "
        f"{embed_per_k:.2f} s / 1,000 samples; total run {time.perf_counter() - start:.0f}s"
    )


if __name__ == "__main__":
    run_and_record(main, "bench_learned_ensemble")
