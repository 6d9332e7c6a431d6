"""EnSiam vs SimSiam K-aug vs SimSiam, continuing from an ImageNet-pretrained network.

    python -m benchmarks.bench_ensiam_pretrained [--quick] [--epochs 3] [--seeds 0 1 2]

The EnSiam paper ("EnSiam: Self-Supervised Learning With Ensemble
Representations", Table 1) trains ResNet-18 from scratch for 200-800 epochs:
EnSiam 91.67 vs SimSiam 91.01 kNN accuracy on CIFAR-10. Two CPU cores cannot
do that, so this benchmark tests the claim where a CPU can: start every method
from the same pretrained EfficientNet-Lite0 (repens-efficientnet-lite plugin),
continue self-supervised training on unlabelled Fashion-MNIST (raw grey 28 px,
fed at --img-size through the backbone's own preprocessing) with the same
epochs, batch size, augmentation and seed, and compare the cosine kNN accuracy
(k=20, 1,000 labelled training images, 1,000 test images) before and after.
SimSiam K-aug uses the same K as EnSiam; SimSiam uses K=2 (half the views per
step, so also about half the compute: the table says how long each took).
Thread setting: torch.set_num_threads(1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from repens_sklearn import EnSiamPretrainer, MeanTTAEmbedder, load_fashion_mnist

METHODS = {
    "EnSiam (K=4)": dict(n_views=4, target="ensemble"),
    "SimSiam K-aug (K=4)": dict(n_views=4, target="pair"),
    "SimSiam (K=2)": dict(n_views=2, target="pair"),
}


def knn_accuracy(embedder, X_lab, y_lab, X_test, y_test):
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="distance")
    return float(
        knn.fit(embedder.transform(X_lab), y_lab).score(embedder.transform(X_test), y_test)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="500 unlabelled images, 1 epoch, 1 seed"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-unlabelled", type=int, default=2000)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.n_unlabelled, args.seeds = 1, 500, [0]
    torch.set_num_threads(1)
    X, y = load_fashion_mnist(split="train", return_X_y=True)
    X_test, y_test = load_fashion_mnist(split="test", return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    X_unlab = X[order[: args.n_unlabelled]]
    X_lab, y_lab = X[order[-1000:]], y[order[-1000:]]
    X_test, y_test = X_test[:1000], y_test[:1000]
    start = MeanTTAEmbedder(
        "efficientnet_lite0", n_augmentations=0, img_size=args.img_size, device="cpu"
    ).fit(X_lab)
    before = knn_accuracy(start, X_lab, y_lab, X_test, y_test)
    print(
        f"pretrained EfficientNet-Lite0 at {args.img_size} px, before any training: "
        f"kNN k=20 {100 * before:.2f}",
        flush=True,
    )
    rows = []
    for label, method in METHODS.items():
        accs, seconds = [], []
        for seed in args.seeds:
            tic = time.process_time()
            encoder = EnSiamPretrainer(
                "efficientnet_lite0",
                img_size=args.img_size,
                policy="simsiam",
                policy_params={"scale": (0.4, 1.0)},
                projector_dim=512,
                predictor_hidden_dim=128,
                max_epochs=args.epochs,
                batch_size=64,
                base_lr=0.05,
                warmup_epochs=0,
                device="cpu",
                random_state=seed,
                **method,
            ).fit(X_unlab)
            seconds.append(time.process_time() - tic)
            accs.append(knn_accuracy(encoder, X_lab, y_lab, X_test, y_test))
            print(
                f"  {label} seed {seed}: {100 * accs[-1]:.2f} ({seconds[-1]:.0f} s CPU)", flush=True
            )
        rows.append((label, 100 * np.mean(accs), 100 * np.std(accs), np.mean(seconds)))
    print(
        f"\n{args.n_unlabelled} unlabelled images, {args.epochs} epochs, batch 64, "
        f"seeds {args.seeds}; before training: {100 * before:.2f}\n"
    )
    print("| method | kNN k=20 after | change | CPU s per run |")
    print("|---|---|---|---|")
    for label, mean, std, sec in rows:
        print(f"| {label} | {mean:.2f} ± {std:.2f} | {mean - 100 * before:+.2f} | {sec:.0f} |")
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    raise SystemExit(run_and_record(main, "bench_ensiam_pretrained"))
