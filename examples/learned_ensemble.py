"""Learned ensemble of three small backbones on digits, compared with concatenation / averaging.

The learned-ensemble paper ("Learning Rich Nearest Neighbor Representations from
Self-supervised Ensembles", sec. 3) learns one vector per image so that one small MLP per
frozen backbone recovers that backbone's L2-normalized features (cosine loss);
``transform`` learns vectors for new images with the MLPs frozen. Here three
differently initialised / trained small networks embed 8x8 digits, and cosine
kNN accuracy compares each backbone, the concatenation, the average and the
learned representation.

    python examples/learned_ensemble.py          # about a minute on a CPU
    python examples/learned_ensemble.py --quick  # a few seconds
"""

import argparse

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier

from repens_sklearn import ConcatEmbedder, LearnedEnsembleEmbedder, MeanTTAEmbedder
from repens_sklearn.datasets import load_digits_images


class HiddenLayer(MLPClassifier):
    """A fitted sklearn MLP whose transform is its ReLU hidden layer (a 'supervised backbone')."""

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        return np.maximum(X @ self.coefs_[0] + self.intercepts_[0], 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny MLPs: one thread is fastest

    X, y = load_digits_images(return_X_y=True)
    X = X.reshape(len(X), -1)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    epochs = 5 if args.quick else 50
    backbones = [  # three differently made "backbones", all vectors -> features
        ("random_mlp", MeanTTAEmbedder("mlp", n_augmentations=0, random_state=0)),
        # L-BFGS converges on 1,257 digits in about 50 iterations (Adam needs hundreds)
        ("supervised_a", HiddenLayer((64,), solver="lbfgs", max_iter=500, random_state=1)),
        (
            "supervised_b",
            HiddenLayer((64,), solver="lbfgs", max_iter=500, random_state=2, alpha=1e-2),
        ),
    ]

    def knn(F_tr, F_te, k=1):
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        return clf.fit(F_tr, y_tr).score(F_te, y_te)

    results = {}
    for name, backbone in backbones:
        single = ConcatEmbedder([(name, backbone)])
        results[name] = knn(single.fit_transform(X_tr, y_tr), single.transform(X_te))
    for combine in ("concat", "mean"):
        union = ConcatEmbedder(backbones, combine=combine)
        results[combine] = knn(union.fit_transform(X_tr, y_tr), union.transform(X_te))
    # identity output: the random MLP's features are negative in part, which ReLU cannot fit
    learned = LearnedEnsembleEmbedder(
        backbones, max_epochs=epochs, batch_size=64, final_activation="identity", random_state=0
    )
    Z_tr = learned.fit_transform(X_tr, y_tr)  # the supervised backbones use y in fit
    results["learned"] = knn(Z_tr, learned.transform(X_te))

    cos = learned.history_[:, "train_cosine"]
    print(f"mean cosine MLP output vs targets: epoch 1 {cos[0]:.3f} -> last {cos[-1]:.3f}")
    for name, acc in results.items():
        print(f"{name:>14}: 1-NN accuracy {100 * acc:.1f}%")


if __name__ == "__main__":
    main()
