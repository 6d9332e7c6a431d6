"""Writing a repens_sklearn plugin: a backbone, a policy and an aggregation.

A plugin is any importable module whose functions carry ``repens_sklearn.hookimpl``.
Installed packages announce it in their ``pyproject.toml``::

    [project.entry-points.repens_sklearn]
    my_plugin = "my_package.repens_plugin"

Here the module registers itself by hand, so the example runs without installing
anything. Run: ``python examples/plugin_authoring.py [--quick]``.
"""

import argparse
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

import repens_sklearn
from repens_sklearn import MeanTTAEmbedder, hookimpl


class RandomFeatures(torch.nn.Module):
    """A fixed random-projection backbone: (B, F) -> (B, D) with a ReLU."""

    def __init__(self, in_features, embedding_dim=256, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(in_features, embedding_dim, generator=generator))
        self.embedding_dim = embedding_dim

    def forward(self, x):
        return torch.relu(x.flatten(1) @ self.weight / self.weight.shape[0] ** 0.5)


class FeatureDropout:
    """Policy: zero a random 10% of every sample's features (independent per sample)."""

    def __init__(self, rate=0.1):
        self.rate = rate

    def __call__(self, x, generator):
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.rate
        return x * keep


@hookimpl
def repens_backbones():
    return {"random_features": RandomFeatures}


@hookimpl
def repens_augmentation_policies():
    return {"feature_dropout": FeatureDropout}


@hookimpl
def repens_aggregations():
    return {"trimmed_mean": lambda views: views.sort(dim=0).values[1:-1].mean(dim=0)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    repens_sklearn.get_plugin_manager().register(sys.modules[__name__], name="example_plugin")
    print("backbones:", repens_sklearn.list_backbones("random*"))
    print("policies:", repens_sklearn.list_augmentation_policies("feature*"))
    print("aggregations:", repens_sklearn.list_aggregations("trimmed*"))

    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    if args.quick:
        X, y = X[:300], y[:300]
    X = (X / 16.0).astype(np.float32)
    for n_views in (0, 8):
        pipe = make_pipeline(
            MeanTTAEmbedder(
                "random_features",
                policy="feature_dropout",
                n_augmentations=n_views,
                aggregation="trimmed_mean",
                random_state=0,
            ),
            LogisticRegression(max_iter=500),
        )
        score = cross_val_score(pipe, X, y, cv=3).mean()
        print(f"random_features + feature_dropout, S={n_views}: accuracy {score:.3f}")


if __name__ == "__main__":
    main()
