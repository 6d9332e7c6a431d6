"""Tune test-time augmentation like any other hyper-parameter.

A ``Pipeline`` with a ``MeanTTAEmbedder`` in front of a ``LogisticRegression``;
``GridSearchCV`` picks the number of views (0 = the plain embedding) and the
augmentation policy by cross-validation, then the pipeline is saved with joblib.

    python examples/pipeline_gridsearch.py [--quick]
"""

import argparse
import os
import tempfile

import joblib
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from repens_sklearn import MeanTTAEmbedder, load_digits_images


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    X, y = load_digits_images(return_X_y=True)
    X = X[:200] if args.quick else X[:600]
    y = y[: len(X)]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    # A randomly initialised (frozen) CNN as the feature extractor; in practice pass a
    # trained backbone, e.g. a module, weights via backbone_params or a fitted pretrainer.
    pipe = Pipeline(
        [
            ("embed", MeanTTAEmbedder("convnet_small", random_state=0)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    # n_augmentations=0 is the plain embedding (the policy is then unused), so it is
    # one candidate; the multi-scale policy has 3 deterministic views.
    grid = [
        {"embed__n_augmentations": [0]},
        {
            "embed__n_augmentations": [4] if args.quick else [4, 8],
            "embed__policy": ["crop_flip"],
            "embed__policy_params": [{"scale": (0.7, 1.0)}],
        },
    ]
    if not args.quick:
        grid.append(
            {
                "embed__n_augmentations": [3],
                "embed__policy": ["multiscale"],
                "embed__aggregation": ["mean", "gem"],
            }
        )
    search = GridSearchCV(pipe, grid, cv=2 if args.quick else 3, n_jobs=1)
    search.fit(X_train, y_train)

    results = pd.DataFrame(search.cv_results_)
    params = [c for c in results if c.startswith("param_")]
    results[params] = results[params].map(repr)
    columns = params + ["mean_test_score"]
    print(results[columns].sort_values("mean_test_score", ascending=False).to_string(index=False))
    print(f"\nbest: {search.best_params_}")
    print(f"test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.3f}")

    path = os.path.join(tempfile.mkdtemp(), "metta_pipeline.joblib")
    joblib.dump(search.best_estimator_, path)
    restored = joblib.load(path)
    assert (restored.predict(X_test) == search.predict(X_test)).all()
    print(f"saved and reloaded the pipeline from {path}")


if __name__ == "__main__":
    main()
