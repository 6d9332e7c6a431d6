"""Learned ensemble vs concatenation / averaging / individual backbones, kNN on Fashion-MNIST.

Learned-ensemble paper (learned-nn-representations-from-ensembles.txt): a vector
per image learned so that one MLP per frozen backbone recovers its features
(section 3), compared with concatenation, averaging and the individual models
(section 3.1 "Baselines"), by cosine kNN accuracy (k = 1 and 20); plus the
single-model case for the best backbone (section 4.2). The paper reports about
+2 points over concatenation / averaging. The "best" backbone is chosen on the
training split only (leave-one-out cosine kNN accuracy, k = 20, of each
backbone's training features, ``loo_knn_accuracy``), never on the test split.

Backbones (``_zoo.train_backbone``, cached in ``benchmarks/.cache``; the
configurations of ``bench_diversity.py``): convnet_small trained on all classes
(``base``), with other hyper-parameters (``hparam``), on 5 of the 10 classes
(``data-classes``), a narrower convnet_small (``arch``, width 16 -> 64 dims), a
random-initialised convnet_small (``random``) and a self-supervised one
(``ensiam``: ``EnSiamPretrainer`` on convnet_small, the settings of
``bench_diversity.ensiam_features``; its encoder, cached in ``benchmarks/.cache``
too, is embedded like the other backbones).

Shrunk for a shared 2-core CPU: the backbones train 2 epochs on 1,000 images
(a resnet18 or 3 epochs on 6,000 take many minutes here); kNN on 5,000 training
/ 2,000 test images (not 60k / 10k). The learned ensemble itself runs the
paper's settings (50 epochs, Adam 3e-4, batch 256, half warm-up). Three seeds
of the learned ensemble (the baselines are deterministic).

    python benchmarks/bench_learned_ensemble.py            # default (minutes)
    python benchmarks/bench_learned_ensemble.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time

import numpy as np
import psutil
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

sys.path.insert(0, os.path.dirname(__file__))
from _zoo import CACHE, machine_description, print_table, train_backbone  # noqa: E402

from repens_sklearn import (  # noqa: E402
    EnSiamPretrainer,
    LearnedEnsembleEmbedder,
    MeanTTAEmbedder,
    create_backbone,
    load_fashion_mnist,
)
from repens_sklearn.selection._loo import loo_knn_accuracy  # noqa: E402


def split(n_train, n_test, seed=0):
    """The training / test pools of bench_diversity.py (same draw, so the zoo cache is shared)."""
    X, y = load_fashion_mnist(split="train", return_X_y=True)
    X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
    rng = np.random.default_rng(seed)
    base = rng.permutation(len(X))[:n_train]
    te = rng.permutation(len(X_te))[:n_test]
    return X[base], y[base], X_te[te], y_te[te]


def build_zoo(X, y, epochs):
    common = dict(epochs=epochs, lr=0.05, batch_size=128, verbose=True)
    specs = {
        "base": dict(seed=0),
        "hparam": dict(seed=2, lr=0.01, batch_size=64),
        "data-classes": dict(seed=5, classes=[0, 1, 2, 3, 4]),
        "arch": dict(seed=3, arch="convnet_small", arch_params={"width": 16}),
        "random": dict(seed=7, epochs=0),
    }
    zoo = {name: train_backbone(X, y, name=f"div-{name}", **{**common, **kw})
           for name, kw in specs.items()}
    zoo["ensiam"] = ensiam_backbone(X, epochs)
    return zoo


def ensiam_backbone(X, epochs, seed=0):
    """Self-supervised EnSiam convnet_small (labels unused); its encoder, cached on disk.

    The settings of ``bench_diversity.ensiam_features``; the encoder's weights are
    cached (not its features) so that it is embedded like the other backbones.
    """
    params = dict(backbone="convnet_small", n_views=2, policy="simsiam", projector_dim=256,
                  predictor_hidden_dim=64, max_epochs=epochs, batch_size=128, base_lr=0.05,
                  warmup_epochs=0, device="cpu", random_state=seed)
    key = hashlib.sha1(json.dumps({**params, "n": len(X), "x": hashlib.sha1(
        np.ascontiguousarray(X[:64]).tobytes()).hexdigest()}, sort_keys=True).encode()
    ).hexdigest()[:16]
    path = CACHE / f"ensiam-encoder-{key}.pt"
    backbone = create_backbone("convnet_small", in_chans=X.shape[1])
    if path.exists():
        backbone.load_state_dict(torch.load(path, weights_only=True))
        return backbone.eval()
    start = time.perf_counter()
    encoder = EnSiamPretrainer(**params).fit(X).as_backbone()
    print(f"  [ensiam] EnSiam pretraining {time.perf_counter() - start:.0f}s", flush=True)
    backbone.load_state_dict(encoder.state_dict())
    CACHE.mkdir(exist_ok=True)
    torch.save(backbone.state_dict(), path)
    return backbone.eval()


def knn_accuracy(F_train, y_train, F_test, y_test, k):
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    return 100.0 * knn.fit(F_train, y_train).score(F_test, y_test)


class PeakRSS:
    """Peak resident memory growth of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mib = (self.peak - self.start) / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for these small MLPs on a busy machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # backbones train on the first n_zoo training images; kNN uses all n_train / n_test
    n_zoo, n_train, n_test, zoo_epochs = (800, 800, 300, 1) if args.quick else (1000, 5000, 2000, 2)
    le_params = dict(max_epochs=4, batch_size=128) if args.quick else dict(max_epochs=50)
    seeds = [0] if args.quick else [0, 1, 2]
    torch.manual_seed(0)
    print(f"# Learned ensemble on Fashion-MNIST\n\n{machine_description()}; backbones trained "
          f"{zoo_epochs} epochs on {n_zoo} images; kNN on {n_train} train / {n_test} test images; "
          f"learned ensemble {le_params}, seeds {seeds}\n", flush=True)
    start = time.perf_counter()
    X_tr, y_tr, X_te, y_te = split(n_train, n_test)
    zoo = build_zoo(X_tr[:n_zoo], y_tr[:n_zoo], zoo_epochs)

    feats, embed_s = {}, 0.0
    for name, module in zoo.items():
        t0 = time.perf_counter()
        emb = MeanTTAEmbedder(backbone=module, n_augmentations=0, device="cpu").fit(X_tr[:1])
        feats[name] = (emb.transform(X_tr), emb.transform(X_te))
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
        rows.append([label, f"{knn_accuracy(A, y_tr, B, y_te, 1):.2f}",
                     f"{knn_accuracy(A, y_tr, B, y_te, 20):.2f}", "", ""])
    # the single-model case uses the best backbone by leave-one-out kNN on the training split
    loo = {n: 100.0 * loo_knn_accuracy(feats[n][0], y_tr, n_neighbors=20, metric="cosine")
           for n in names}
    best = max(names, key=loo.get)
    print("leave-one-out cosine kNN accuracy (k=20) on the training split: "
          + ", ".join(f"{n} {loo[n]:.2f}" for n in names)
          + f"\nsingle-model case: {best} (LOO {loo[best]:.2f}%)\n", flush=True)
    b = names.index(best)
    lo, hi = sum(widths[:b]), sum(widths[:b + 1])

    timing = []
    for label, X_fit, X_eval, groups in [
        ("learned ensemble", F_tr, F_te, widths),
        (f"learned, single model ({best})", F_tr[:, lo:hi], F_te[:, lo:hi], None),
    ]:
        acc1, acc20, cos = [], [], []
        for seed in seeds:
            le = LearnedEnsembleEmbedder(feature_groups=groups, random_state=seed, device="cpu",
                                         **le_params)
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
            timing.append([label, seed, f"{fit_s:.1f}", f"{1000 * tr_s / len(X_eval):.2f}",
                           f"{mem.mib:.0f}"])
        cos = np.mean(cos, axis=0)
        rows.append([label, f"{np.mean(acc1):.2f} ± {np.std(acc1):.2f}",
                     f"{np.mean(acc20):.2f} ± {np.std(acc20):.2f}",
                     f"{cos[0]:.3f} -> {cos[1]:.3f}", ""])

    ref = {r[0]: (float(r[1].split()[0]), float(r[2].split()[0])) for r in rows}
    for r in rows:
        if r[0].startswith("learned ensemble"):
            d = [ref[r[0]][i] - max(ref["concatenation"][i], ref["averaging (zero-padded)"][i])
                 for i in (0, 1)]
            r[4] = f"{d[0]:+.2f} / {d[1]:+.2f}"
        elif r[0].startswith("learned, single"):
            base = ref[f"individual: {best}"]
            r[4] = f"{ref[r[0]][0] - base[0]:+.2f} / {ref[r[0]][1] - base[1]:+.2f} vs {best}"
    print("## kNN accuracy (%), cosine, test split\n")
    print_table(rows, ["representation", "k=1", "k=20", "train cosine end warm-up -> end",
                       "Δ k=1 / k=20 vs best baseline"])
    print("\n## Cost of the learned ensemble (CPU)\n")
    embed_per_k = 1000 * embed_s / (len(X_tr) + len(X_te))
    timing = [t + [f"{float(t[3]) / embed_per_k:.2f}"] for t in timing]
    print_table(timing, ["method", "seed", "fit s", "transform s / 1,000 samples",
                         "transform peak RSS growth MiB",
                         "transform ÷ backbone features (all backbones)"])
    print(f"\nbackbone feature extraction (all {len(names)} backbones): "
          f"{embed_per_k:.2f} s / 1,000 samples; total run {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
