"""Deep ensembles for low-data transfer: kNN selection -> fine-tune sweep -> greedy ensemble.

The three steps of "Deep Ensembles for Low-Data Transfer Learning" (section 2.3)
on the 8x8 digits images, small enough for a CPU:

1. an "upstream" pool of small convnets: generalists with different seeds,
   experts trained on half of the classes, and an untrained one, all trained on
   images the downstream task never sees;
2. ``TransferabilitySelector`` ranks the pool by leave-one-out kNN accuracy on the
   downstream training data and keeps the top K;
3. ``make_finetune_sweep`` fine-tunes each kept backbone with a new head at two
   learning rates (paper: {0.1, 0.01} x {2,500, 10,000} steps);
4. ``GreedyEnsembleClassifier`` fits the sweep on 80 % of the training data and
   greedily builds the ensemble with the lowest validation cross-entropy on the
   other 20 %, then refits its members on all of it.

Run ``python examples/low_data_transfer.py`` (about a minute) or ``--quick``.
"""

import argparse

import numpy as np
from sklearn.model_selection import train_test_split

from repens_sklearn import (
    FineTuneClassifier,
    GreedyEnsembleClassifier,
    TransferabilitySelector,
    load_digits_images,
    make_finetune_sweep,
)


def upstream_pool(X, y, steps, quick=False):
    """Small convnets pre-trained on other data: generalists, experts, one untrained."""
    specs = {
        "generalist-0": (None, 0),
        "expert-0to4": ([0, 1, 2, 3, 4], 2),
        "expert-5to9": ([5, 6, 7, 8, 9], 3),
    }
    if not quick:
        specs["generalist-1"] = (None, 1)
    pool = {}
    for name, (classes, seed) in specs.items():
        keep = np.isin(y, classes) if classes else np.ones(len(y), bool)
        clf = FineTuneClassifier(
            "convnet_small",
            backbone_params={"width": 8},
            lr=0.05,
            max_steps=steps,
            batch_size=32,
            device="cpu",
            random_state=seed,
        ).fit(X[keep], y[keep])
        pool[name] = clf.as_backbone()
    pool["untrained"] = (
        FineTuneClassifier(
            "convnet_small",
            backbone_params={"width": 8},
            max_steps=1,
            lr=1e-9,
            batch_size=2,
            device="cpu",
            random_state=4,
        )
        .fit(X[:4], [0, 1, 0, 1])
        .as_backbone()
    )
    return pool


def main(quick=False):
    X, y = load_digits_images(return_X_y=True)
    X_up, X_down, y_up, y_down = train_test_split(X, y, train_size=0.4, stratify=y, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X_down, y_down, train_size=200 if quick else 500, stratify=y_down, random_state=0
    )
    steps = 10 if quick else 150
    lrs = (0.05,) if quick else (0.05, 0.01)

    pool = upstream_pool(X_up, y_up, steps, quick)
    selector = TransferabilitySelector(list(pool.items()), n_select=2).fit(X_train, y_train)
    print("leave-one-out kNN accuracy:")
    for name in selector.ranking_:
        print(f"  {name:<14} {selector.scores_[name]:.3f}")
    print("selected:", selector.selected_)

    sweep = make_finetune_sweep(
        selector, lrs=lrs, steps=(steps,), batch_size=32, device="cpu", random_state=0
    )
    ensemble = GreedyEnsembleClassifier(sweep, max_size=4, random_state=0).fit(X_train, y_train)
    print("greedy picks:", ensemble.ensemble_)
    print("validation log loss after each pick:", np.round(ensemble.validation_curve_, 3))

    best_name = min(ensemble.candidate_scores_, key=ensemble.candidate_scores_.get)
    single = dict(sweep)[best_name].fit(X_train, y_train)
    print(
        f"test accuracy, best single fine-tuned model ({best_name}): "
        f"{single.score(X_test, y_test):.3f}"
    )
    print(
        f"test accuracy, greedy ensemble of {len(ensemble.ensemble_)}: "
        f"{ensemble.score(X_test, y_test):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    main(parser.parse_args().quick)
