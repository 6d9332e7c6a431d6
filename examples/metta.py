"""MeTTA in a few lines: mean embeddings over test-time augmentations.

Fine-tunes a small CNN on the digits images with ``crop_flip`` augmentation
(``FineTuneClassifier``), freezes it (``as_backbone()``), and compares linear
evaluation of its plain (centre) embedding with MeTTA embeddings (S random views
averaged; "Mean Embeddings with Test-Time Data Augmentation for Ensembling of
Representations", sec. 1-2, eq. 3) and with the multi-scale + GeM recipe of image
retrieval that the paper cites (sec. 4).

    python examples/metta.py [--quick]
"""

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repens_sklearn import FineTuneClassifier, MeanTTAEmbedder, load_digits_images

POLICY_PARAMS = {"scale": (0.6, 1.0)}


def train_cnn(X, y, epochs, seed=0):
    """A few epochs of cross-entropy with crop_flip augmentation: the backbone MeTTA embeds with."""
    clf = FineTuneClassifier(
        "convnet_small",
        lr=0.05,
        momentum=0.9,
        batch_size=64,
        max_steps=epochs * -(-len(X) // 64),
        policy="crop_flip",
        policy_params=POLICY_PARAMS,
        device="cpu",
        random_state=seed,
    )
    return clf.fit(X, y).as_backbone()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    X, y = load_digits_images(return_X_y=True)
    if args.quick:
        X, y = X[:300], y[:300]
    X_fit, X_rest, y_fit, y_rest = train_test_split(
        X, y, train_size=0.4, random_state=0, stratify=y
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    backbone = train_cnn(X_fit, y_fit, epochs=1 if args.quick else 8)

    settings = {
        "centre (plain)": dict(n_augmentations=0),
        "MeTTA S=8": dict(policy="crop_flip", policy_params=POLICY_PARAMS, n_augmentations=8),
        "MeTTA S=8 + identity": dict(
            policy="crop_flip",
            policy_params=POLICY_PARAMS,
            n_augmentations=8,
            include_identity=True,
        ),
        "multi-scale + GeM": dict(policy="multiscale", n_augmentations=3, aggregation="gem"),
    }
    for name, params in settings.items():
        embedder = MeanTTAEmbedder(backbone, random_state=0, **params)
        clf = make_pipeline(embedder, StandardScaler(), LogisticRegression(max_iter=2000))
        accuracy = clf.fit(X_train, y_train).score(X_test, y_test)
        print(
            f"{name:<22} linear-eval accuracy {100 * accuracy:5.1f}%  "
            f"({embedder.n_views_} view(s) per image)"
        )
    print(f"embedding shape: {np.shape(embedder.transform(X_test[:5]))}")


if __name__ == "__main__":
    main()
