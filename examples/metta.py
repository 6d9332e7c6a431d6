"""MeTTA in a few lines: mean embeddings over test-time augmentations.

Trains a small CNN on the digits images with ``crop_flip`` augmentation, freezes
it, and compares linear evaluation of its plain (centre) embedding with MeTTA
embeddings (S random views averaged; the MeTTA paper, sec. 3) and with the
multi-scale + GeM recipe of image retrieval (sec. 4).

    python examples/metta.py [--quick]
"""

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repens_sklearn import MeanTTAEmbedder, create_augmentation_policy, create_backbone
from repens_sklearn import load_digits_images

POLICY_PARAMS = {"scale": (0.6, 1.0)}


def train_cnn(X, y, epochs, seed=0):
    """A few epochs of cross-entropy with crop_flip augmentation (the model MeTTA will embed with)."""
    torch.manual_seed(seed)
    backbone = create_backbone("convnet_small", in_chans=1)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.embedding_dim, 10))
    policy = create_augmentation_policy("crop_flip", **POLICY_PARAMS)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(Xt), generator=generator).split(64):
            loss = torch.nn.functional.cross_entropy(model(policy(Xt[idx], generator)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return backbone.eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    X, y = load_digits_images(return_X_y=True)
    if args.quick:
        X, y = X[:300], y[:300]
    X_fit, X_rest, y_fit, y_rest = train_test_split(X, y, train_size=0.4, random_state=0,
                                                    stratify=y)
    X_train, X_test, y_train, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                        random_state=0, stratify=y_rest)
    backbone = train_cnn(X_fit, y_fit, epochs=1 if args.quick else 8)

    settings = {
        "centre (plain)": dict(n_augmentations=0),
        "MeTTA S=8": dict(policy="crop_flip", policy_params=POLICY_PARAMS, n_augmentations=8),
        "MeTTA S=8 + identity": dict(policy="crop_flip", policy_params=POLICY_PARAMS,
                                     n_augmentations=8, include_identity=True),
        "multi-scale + GeM": dict(policy="multiscale", n_augmentations=3, aggregation="gem"),
    }
    for name, params in settings.items():
        embedder = MeanTTAEmbedder(backbone, random_state=0, **params)
        clf = make_pipeline(embedder, StandardScaler(), LogisticRegression(max_iter=2000))
        accuracy = clf.fit(X_train, y_train).score(X_test, y_test)
        print(f"{name:<22} linear-eval accuracy {100 * accuracy:5.1f}%  "
              f"({embedder.n_views_} view(s) per image)")
    print(f"embedding shape: {np.shape(embedder.transform(X_test[:5]))}")


if __name__ == "__main__":
    main()
