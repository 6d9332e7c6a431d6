"""Benchmark: transferability scores against fine-tuned and linear-probe accuracy.

Which score ranks a zoo of backbones the way fine-tuning would, and how stable
is that ranking when the labelled images change ("How stable are
Transferability Metrics evaluations?", Agostinelli et al., ECCV 2022)? For
every task, every size (labelled images per class) and every draw of those
images, and every candidate backbone, this measures

  * every score of ``repens_sklearn.selection`` on the candidate's embeddings
    of the labelled images, timed: leave-one-out 1-NN accuracy (``knn_loo``,
    Euclidean, the paper's; ``knn_loo_cosine``), LogME, the H-score with
    Ledoit-Wolf shrinkage, the 5-fold logistic-regression accuracy
    (``linear_cv``), NLEEP, SFDA, GBC, TransRate, ETran, and rank aggregates
    of several of them (``mean_rank_score``, what ``TransferabilitySelector(scoring=
    [...])`` ranks by);
  * the ground truths: (a) test accuracy after fine-tuning the whole backbone
    with a new head (``FineTuneClassifier``: 40 SGD steps of 32 images at a
    constant learning rate of 0.01; BatchNorm statistics recalibrated), on one
    draw at each task's reference size (Fashion-MNIST 100, digits 50 images
    per class: fine-tuning is the cost of this benchmark); (b) test accuracy
    of a linear probe (standardised logistic regression on the frozen
    embeddings) for every size and draw;

and reports, as mean ± standard deviation over the runs, Kendall's tau between
each score and each ground truth over the zoo, the regret of keeping only the
score's top-1 candidate (best accuracy of the zoo minus that of the pick, in
points) and the scoring time per candidate; then tau per task and size, and
how often each score is the best one.

Tasks (one test set each, 500 images)
  * Fashion-MNIST: a pool of 350 images per class drawn outside the 3,000
    "upstream" images the small zoo networks are pre-trained on;
  * digits (scikit-learn's 8x8 images): the 1,297 images outside the test set
    (at least 126 per class, so no 300-per-class draws).
Each draw takes ``size`` images of every class from the pool (nested: the
50-image draw is part of the 100-image one). The pool is embedded once.

Zoo
  * ImageNet-pretrained EfficientNet-Lite0/1/2 (the repens-efficientnet-lite
    plugin) at each of ``--resolutions`` (default 64 and 96 pixels, for the
    CPU), the whole image kept (``crop_pct=1``), and a random Lite0;
  * small convnets pre-trained on the upstream images: supervised and
    self-supervised (EnSiam), plus one left at its random initialisation,
    fed 28x28 images.

Everything runs on the CPU with one thread (``set_threads(1)``). Embeddings
and fine-tuned accuracies are cached under ``benchmarks/.cache`` (keyed by the
whole configuration); scores are always recomputed and timed.

``python -m benchmarks.bench_transferability --resolutions 64 --ft-draws 0 1``
(7 candidates, 3 draws) took 14 minutes on 2 shared cores with the pools and the
first draw's fine-tuning cached, about 23 more to fill that cache (fine-tuning
the EfficientNets is most of it); ``--quick`` (under a minute, near-chance
fine-tuning) is a smoke test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from functools import partial

import numpy as np
import torch
from scipy.stats import kendalltau
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks._common import (
    CACHE,
    machine_description,
    print_table,
    run_and_record,
    set_threads,
    train_backbone,
)
from repens_sklearn import (  # noqa: E402
    EnSiamPretrainer,
    FineTuneClassifier,
    MeanTTAEmbedder,
    create_backbone,
    list_backbones,
    load_digits_images,
    load_fashion_mnist,
)
from repens_sklearn.selection import (  # noqa: E402
    etran_score,
    gbc_score,
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    mean_rank_score,
    nleep_score,
    sfda_score,
    transrate_score,
)

torch.set_num_threads(1)

SCORES = {
    "knn_loo": knn_loo_score,
    # the paper ranks with Euclidean kNN and suspects cosine may help (appendix C.7)
    "knn_loo_cosine": partial(knn_loo_score, metric="cosine"),
    "logme": logme_score,
    "hscore": hscore,
    "linear_cv": linear_cv_score,
    "nleep": nleep_score,
    "sfda": sfda_score,
    "gbc": gbc_score,
    "transrate": transrate_score,
    "etran": etran_score,
}

# rank aggregates (TransferabilitySelector(scoring=[...])): mean rank of the candidates over
# the scores
AGGREGATES = {
    "rank(logme,sfda,nleep)": ["logme", "sfda", "nleep"],
    "rank(logme,knn_loo,sfda)": ["logme", "knn_loo", "sfda"],
    "rank(all cheap)": ["knn_loo", "logme", "hscore", "nleep", "sfda", "gbc", "transrate", "etran"],
}


# --------------------------------------------------------------------------- tasks


def _per_class(y, pool, size, seed):
    """Indices of ``size`` images of every class drawn from ``pool`` (nested across sizes)."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(pool[y[pool] == c])[:size] for c in np.unique(y[pool])]
    return np.sort(np.concatenate(picks))


def fashion_task(args):
    """Fashion-MNIST: upstream images for the small zoo, a labelled pool, one test set.

    The pool (``args.pool`` images of every class) is embedded once; each draw takes
    ``size`` images of every class from it.
    """
    X, y = load_fashion_mnist(split="train", return_X_y=True)
    X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
    order = np.random.default_rng(1234).permutation(len(X))
    up, rest = order[: args.n_upstream], order[args.n_upstream :]
    pool = _per_class(y, rest, args.pool, 7)
    te = np.random.default_rng(99).permutation(len(X_te))[: args.n_test]  # one test set
    return dict(
        name="fashion",
        X=X[pool],
        y=y[pool],
        X_test=X_te[te],
        y_test=y_te[te],
        X_up=X[up],
        y_up=y[up],
    )


def digits_task(args):
    """digits: a stratified test set of ``n_test`` images, the other images are the pool."""
    X, y = load_digits_images(return_X_y=True)
    X_pool, X_te, y_pool, y_te = train_test_split(
        X, y, test_size=args.n_test, stratify=y, random_state=0
    )
    return dict(name="digits", X=X_pool, y=y_pool, X_test=X_te, y_test=y_te)


# --------------------------------------------------------------------------- zoo


def _lite(name, pretrained):
    """EfficientNet-Lite from the repens-efficientnet-lite plugin.

    Random weights get the pretrained preprocessing too (same resize and
    normalization), so only the weights differ.
    """
    if name not in list_backbones():
        raise SystemExit(
            f"backbone {name!r} is not registered: install the plugin with "
            "`pip install -e plugins/repens-efficientnet-lite` (and make sure "
            "REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD is not set)"
        )
    torch.manual_seed(0)
    module = create_backbone(name, pretrained=pretrained)
    if module.pretrained_cfg is None:
        from repens_efficientnet_lite import pretrained_cfg

        module.pretrained_cfg = pretrained_cfg(name)
    return module.eval()


def _small_cfg(module):
    """Tell the estimators to resize any task's images to the 28x28 the net was trained on."""
    module.pretrained_cfg = dict(
        input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), interpolation="bilinear", crop_pct=1.0
    )
    return module


def _ensiam(X_up, args):
    """EnSiam-pretrained convnet on the upstream images (no labels), cached on disk."""
    params = dict(
        backbone="convnet_small",
        backbone_params={"width": args.width},
        n_views=4,
        policy="simsiam",
        max_epochs=args.epochs_ssl,
        batch_size=128,
        base_lr=0.05,
        projector_dim=128,
        predictor_hidden_dim=32,
        device="cpu",
        random_state=0,
    )
    key = hashlib.sha1(json.dumps([params, len(X_up)], sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"transfer-ensiam-{key}.pt"
    backbone = create_backbone("convnet_small", in_chans=1, width=args.width)
    if path.exists():
        backbone.load_state_dict(torch.load(path, weights_only=True))
        return backbone.eval()
    start = time.perf_counter()
    trained = EnSiamPretrainer(**params).fit(X_up).as_backbone()
    print(f"  EnSiam pre-training: {time.perf_counter() - start:.0f}s", flush=True)
    CACHE.mkdir(exist_ok=True)
    torch.save(trained.state_dict(), path)
    backbone.load_state_dict(trained.state_dict())
    return backbone.eval()


def build_zoo(fashion, args):
    """{name: (module, img_size or None)}."""
    zoo = {}
    for index in args.lites:
        module = _lite(f"efficientnet_lite{index}", pretrained=True)
        for res in args.resolutions:
            zoo[f"lite{index}@{res}"] = (module, res)
    module = _lite("efficientnet_lite0", pretrained=False)
    zoo[f"lite0-random@{args.resolutions[0]}"] = (module, args.resolutions[0])
    small = dict(
        arch="convnet_small",
        arch_params={"width": args.width},
        epochs=args.epochs_sup,
        lr=0.05,
        batch_size=128,
        seed=0,
        verbose=False,
    )
    zoo["cnn-supervised"] = (
        _small_cfg(train_backbone(fashion["X_up"], fashion["y_up"], name="transfer-sup", **small)),
        None,
    )
    zoo["cnn-ensiam"] = (_small_cfg(_ensiam(fashion["X_up"], args)), None)
    torch.manual_seed(1)
    zoo["cnn-random"] = (
        _small_cfg(create_backbone("convnet_small", in_chans=1, width=args.width)),
        None,
    )
    return zoo


# --------------------------------------------------------------------------- measurements


def _cached(key_parts, compute):
    key = hashlib.sha1(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()
    path = CACHE / f"transfer-{key[:20]}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}, True
    out = compute()
    CACHE.mkdir(exist_ok=True)
    np.savez(path, **out)
    return out, False


def _image_params(res):
    return {} if res is None else dict(img_size=res, crop_pct=1.0)


def _zoo_key(args):
    return [args.width, args.epochs_sup, args.epochs_ssl, args.n_upstream, args.device]


def embed_pool(task, name, module, res, args):
    """Embeddings of the task's whole pool and test set, and the seconds per image (cached)."""

    def compute():
        t0 = time.perf_counter()
        emb = MeanTTAEmbedder(
            module,
            n_augmentations=0,
            device=args.device,
            batch_size=128,
            random_state=0,
            **_image_params(res),
        ).fit(task["X"][:2])
        Z, Z_test = emb.transform(task["X"]), emb.transform(task["X_test"])
        return dict(
            Z=Z, Z_test=Z_test, s_per_image=(time.perf_counter() - t0) / (len(Z) + len(Z_test))
        )

    key = ["pool", task["name"], name, res, args.pool, args.n_test, *_zoo_key(args)]
    return _cached(key, compute)


def finetune(task, idx, name, module, res, args, draw):
    """Test accuracy after fine-tuning on the images ``idx`` of the pool (cached)."""

    def compute():
        t0 = time.perf_counter()
        clf = FineTuneClassifier(
            module,
            lr=args.lr,
            max_steps=args.steps,
            batch_size=32,
            schedule="constant",
            device=args.device,
            random_state=0,
            **_image_params(res),
        )
        acc = clf.fit(task["X"][idx], task["y"][idx]).score(task["X_test"], task["y_test"])
        return dict(ft_acc=acc, ft_s=time.perf_counter() - t0)

    key = [
        "ft",
        task["name"],
        name,
        res,
        args.pool,
        args.n_test,
        len(idx),
        draw,
        args.steps,
        args.lr,
        "constant",
        *_zoo_key(args),
    ]
    return _cached(key, compute)


def linear_probe(Z, y, Z_test, y_test):
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return probe.fit(Z, y).score(Z_test, y_test)


def timed_scores(Z, y):
    out = {}
    for score_name, fn in SCORES.items():
        t0 = time.perf_counter()
        value = fn(Z, y)
        out[score_name] = (value, time.perf_counter() - t0)
    return out


def run_task(task, zoo, args):
    """{(size, draw): rows}, rows = {candidate: dict(ft, lp, scores)}; FT only where asked."""
    pools = {}
    for name, (module, res) in zoo.items():
        pools[name], hit = embed_pool(task, name, module, res, args)
        print(f"  [{task['name']}] {name}: pool embedded{' (cached)' if hit else ''}", flush=True)
    ft_size = args.ft_size[task["name"]]
    out = {}
    for size in _sizes(task, args):
        for draw in args.seeds:
            idx = _per_class(task["y"], np.arange(len(task["y"])), size, draw)
            y = task["y"][idx]
            rows = {}
            for name, (module, res) in zoo.items():
                Z = pools[name]["Z"][idx]
                rows[name] = dict(
                    lp=linear_probe(Z, y, pools[name]["Z_test"], task["y_test"]),
                    scores=timed_scores(Z, y),
                    ft=np.nan,
                )
                if size == ft_size and draw in args.ft_draws:
                    m, hit = finetune(task, idx, name, module, res, args, draw)
                    rows[name]["ft"] = float(m["ft_acc"])
                    print(
                        f"  [{task['name']} {size}/class draw {draw}] {name}: fine-tuned "
                        f"{rows[name]['ft']:.3f}{' (cached)' if hit else ''}",
                        flush=True,
                    )
            out[size, draw] = rows
    return out


def _sizes(task, args):
    per_class = np.bincount(task["y"]).min()
    sizes = [s for s in args.sizes if s <= per_class]
    if len(sizes) < len(args.sizes):
        print(
            f"  [{task['name']}] pool holds {per_class} images of its rarest class: sizes "
            f"{[s for s in args.sizes if s > per_class]} per class left out",
            flush=True,
        )
    return sizes


# --------------------------------------------------------------------------- report


def _aggregates(rows):
    """Rank-aggregate scores of every candidate, as ``TransferabilitySelector(scoring=[...])``."""
    names = list(rows)
    for label, members in AGGREGATES.items():
        table = np.array([[rows[n]["scores"][s][0] for n in names] for s in members])
        values = mean_rank_score(table)
        ms = sum(np.mean([rows[n]["scores"][s][1] for n in names]) for s in members)
        for n, v in zip(names, values):
            rows[n]["scores"][label] = (v, ms)
    return rows


def agreement(rows, truth):
    """{score: dict(tau, top-1 regret in points, ms per candidate)} against one ground truth."""
    names = list(rows)
    acc = np.array([rows[n][truth] for n in names])
    out = {}
    for s in rows[names[0]]["scores"]:
        values = np.array([rows[n]["scores"][s][0] for n in names])
        top = int(np.argmax(values))
        out[s] = dict(
            tau=kendalltau(values, acc).statistic,
            regret=100 * (acc.max() - acc[top]),
            ms=1e3 * np.mean([rows[n]["scores"][s][1] for n in names]),
            pick=names[top],
        )
    return out


def _mean_sd(values, fmt):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(values.std(ddof=1), '.2f')}"


def report(results, n_candidates, args):
    """Mean ± standard deviation over task x size x draw runs; per-setting tau; wins."""
    lp = [(k, agreement(rows, "lp")) for k, rows in results]
    ft = [
        (k, agreement(rows, "ft"))
        for k, rows in results
        if not np.isnan(rows[next(iter(rows))]["ft"])
    ]
    scores = list(lp[0][1])
    print(f"\n### Mean ± SD over runs, {n_candidates} candidates\n")
    print(
        f"{len(lp)} runs (task x size x draw) against the linear probe (LP), {len(ft)} "
        f"against fine-tuning (FT). Kendall's tau over the zoo; regret: accuracy points lost "
        f"by keeping only the score's top-1 candidate; ms per candidate (scoring only).\n"
    )
    rows = []
    for s in scores:
        rows.append(
            [
                s,
                _mean_sd([r[s]["tau"] for _, r in ft], "+.2f"),
                _mean_sd([r[s]["regret"] for _, r in ft], ".1f"),
                _mean_sd([r[s]["tau"] for _, r in lp], "+.2f"),
                _mean_sd([r[s]["regret"] for _, r in lp], ".1f"),
                f"{np.mean([r[s]['ms'] for _, r in lp]):.0f}",
            ]
        )
    print_table(rows, ["score", "tau FT", "regret FT", "tau LP", "regret LP", "ms / candidate"])
    settings = sorted({k[:2] for k, _ in lp}, key=lambda t: (t[0], t[1]))
    print("\n### Kendall tau against the linear probe, mean over draws, per task and size\n")
    table = [
        [s, *(f"{np.mean([r[s]['tau'] for k, r in lp if k[:2] == t]):+.2f}" for t in settings)]
        for s in scores
    ]
    print_table(table, ["score", *(f"{t} {n}/class" for t, n in settings)])
    best = np.array([[r[s]["tau"] for s in scores] for _, r in lp])
    wins = (best >= best.max(axis=1, keepdims=True) - 1e-12).sum(axis=0)
    print(
        "\nRuns in which a score has the best tau against LP (ties count for each): "
        + ", ".join(f"{s} {w}" for s, w in zip(scores, wins))
    )
    print("\n### Against fine-tuning, per run\n")
    table = [
        [
            f"{k[0]} {k[1]}/class draw {k[2]}",
            s,
            f"{r[s]['tau']:+.2f}",
            f"{r[s]['regret']:.1f}",
            r[s]["pick"],
        ]
        for k, r in ft
        for s in scores
    ]
    print_table(table, ["run", "score", "tau FT", "regret FT", "top-1 pick"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="about a minute: tiny sizes, 6 candidates"
    )
    parser.add_argument(
        "--tasks", nargs="+", default=["fashion", "digits"], choices=["fashion", "digits"]
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="label draws from the pool (default 0 1 2)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="labelled images per class (default 50 100 300; sizes a task's "
        "pool cannot hold are left out)",
    )
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default 40; 5 quick)")
    parser.add_argument("--lr", type=float, help="fine-tuning learning rate (default 0.01)")
    parser.add_argument(
        "--resolutions",
        type=int,
        nargs="+",
        help="EfficientNet input sizes (default 64 96; 32 quick)",
    )
    parser.add_argument(
        "--ft-draws",
        type=int,
        nargs="+",
        default=[0],
        help="draws fine-tuned at each task's reference size (default 0)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device of embedding and "
        "fine-tuning (default cpu; the small zoo is always trained on the CPU)",
    )
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    if args.quick:
        args.__dict__.update(
            pool=30,
            sizes=[10, 20],
            n_test=200,
            n_upstream=600,
            steps=5,
            lr=0.01,
            resolutions=[32],
            lites=[0],
            width=8,
            epochs_sup=1,
            epochs_ssl=1,
            ft_size={"fashion": 20, "digits": 20},
        )
    else:
        args.__dict__.update(
            pool=350,
            sizes=[50, 100, 300],
            n_test=500,
            n_upstream=3000,
            steps=40,
            lr=0.01,
            resolutions=[64, 96],
            lites=[0, 1, 2],
            width=16,
            epochs_sup=3,
            epochs_ssl=3,
            ft_size={"fashion": 100, "digits": 50},
        )
    args.__dict__.update(given)
    set_threads(1)
    start = time.perf_counter()
    print(f"machine: {machine_description()}")
    print(
        f"mode: {'--quick' if args.quick else 'default'}; draws {args.seeds}; sizes "
        f"{args.sizes} per class; fine-tuning {args.steps} steps x batch 32, constant lr "
        f"{args.lr}, at {args.ft_size} per class, draws {args.ft_draws}; EfficientNet "
        f"resolutions {args.resolutions}",
        flush=True,
    )
    fashion = fashion_task(args)
    zoo = build_zoo(fashion, args)
    print(f"zoo of {len(zoo)} candidates ready, {time.perf_counter() - start:.0f}s", flush=True)
    results = []
    for task_name in args.tasks:
        task = fashion if task_name == "fashion" else digits_task(args)
        for (size, draw), rows in run_task(task, zoo, args).items():
            results.append(((task_name, size, draw), _aggregates(rows)))
    report(results, len(zoo), args)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    run_and_record(main, "bench_transferability")
