"""EnSiam self-supervised pretraining on Fashion-MNIST (or digits), then reuse the encoder.

1. Pretrain a small CNN with EnSiam (K=4 views, ensemble target; "EnSiam:
   Self-Supervised Learning With Ensemble Representations", sec. 3.2),
   watching a kNN monitor on held-out labelled images and checkpointing every
   epoch (stop it with Ctrl-C and run it again: it resumes where it stopped).
2. Linear evaluation: logistic regression on the frozen embeddings.
3. Hand the encoder to MeanTTAEmbedder (test-time augmentation embeddings).

    python examples/ensiam.py            # ~1-2 minutes on CPU
    python examples/ensiam.py --quick    # a few seconds
"""

import argparse
import os
import tempfile

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from repens_sklearn import EnSiamPretrainer, MeanTTAEmbedder, load_digits_images, load_fashion_mnist


def load(quick):
    try:
        X, y = load_fashion_mnist(split="train", return_X_y=True)
    except (FileNotFoundError, OSError):  # package dataset-fashion-mnist not installed
        X, y = load_digits_images(return_X_y=True)
    n = 300 if quick else 2400
    idx = np.random.default_rng(0).permutation(len(X))[:n]
    return train_test_split(X[idx], y[idx], test_size=0.3, random_state=0, stratify=y[idx])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--checkpoint-dir", default=os.path.join(tempfile.gettempdir(), "repens-ensiam-example-v2")
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny model: one thread is fastest on a shared machine
    threadpool_limits(1)
    X_train, X_test, y_train, y_test = load(args.quick)

    pretrainer = EnSiamPretrainer(
        "convnet_small",
        backbone_params={"width": 8},
        policy="simsiam",
        n_views=4,
        target="ensemble",  # target="pair" gives the SimSiam K-aug baseline
        max_epochs=1 if args.quick else 6,
        batch_size=128,
        projector_dim=256,
        predictor_hidden_dim=64,
        device="auto",
        random_state=0,
        checkpoint_dir=None if args.quick else args.checkpoint_dir,
        verbose=0 if args.quick else 1,
    )
    # y_train stays unused by the pretraining itself; it only feeds the kNN monitor.
    pretrainer.fit(X_train, X_val=X_test, y_val=y_test)
    print(
        f"epochs done: {pretrainer.n_epochs_}, kNN monitor: "
        f"{[round(a, 3) for a in pretrainer.history_[:, 'knn_acc']]}"
    )

    linear = make_pipeline(pretrainer, StandardScaler(), LogisticRegression(max_iter=1000))
    linear.fit(X_train, y_train)  # refits the pretrainer: resumes from the checkpoint
    print(f"linear evaluation accuracy: {linear.score(X_test, y_test):.3f}")

    tta = MeanTTAEmbedder(
        backbone=pretrainer,
        policy="crop_flip",
        policy_params={"scale": (0.6, 1.0)},
        n_augmentations=4,
        device="auto",
        random_state=0,
    )
    clf = make_pipeline(tta, StandardScaler(), LogisticRegression(max_iter=1000))
    print(
        f"MeanTTA on the pretrained encoder: {clf.fit(X_train, y_train).score(X_test, y_test):.3f}"
    )


if __name__ == "__main__":
    main()
