"""Benchmark: transferability scores against fine-tuned and linear-probe accuracy.

Which score ranks a zoo of backbones the way fine-tuning would? For every
target task and every candidate backbone this measures

  * the scores of ``repens_sklearn.selection`` on the candidate's embeddings of
    the labelled training images: leave-one-out 1-NN accuracy (``knn_loo``, the
    paper's), LogME, the H-score with Ledoit-Wolf shrinkage (``hscore``) and
    with the plain pseudo-inverse (``hscore_pinv``, Bao et al.'s definition),
    and the 5-fold logistic-regression accuracy (``linear_cv``), each timed;
  * the ground truths: (a) test accuracy after fine-tuning the whole backbone
    with a new head (``FineTuneClassifier``: 40 SGD steps of 32 images at a
    constant learning rate of 0.01, between the best rates of a pilot on
    EfficientNet-Lite0 at 64 pixels, 0.005 on Fashion-MNIST and 0.02 on
    digits; the paper's warm-up and decay schedule needs far more steps;
    BatchNorm statistics recalibrated after training, the estimator's
    default), (b) test accuracy of a linear probe (standardised logistic
    regression on the frozen training embeddings);

and reports Kendall's tau and Spearman's rho between each score and each
ground truth over the zoo, the regret of fine-tuning only the score's top-1
candidate (best fine-tuned accuracy of the zoo minus that of the pick; same
for the probe) and the scoring time per candidate.

Tasks
  * Fashion-MNIST low-data: 1,000 labelled training images drawn from the
    training split (outside the 3,000 "upstream" images the small zoo networks
    are pre-trained on), 500 test images;
  * digits (scikit-learn's 8x8 images): 500 training and 500 test images
    (stratified).

Zoo (10 candidates)
  * ImageNet-pretrained EfficientNet-Lite0/1/2 (the repens-efficientnet-lite
    plugin's ``efficientnet_lite{0,1,2}``), each fed at two resolutions
    (``img_size``; 64 and 96 pixels instead of the native 224-260, for the CPU),
    with the whole image kept (``crop_pct=1``);
  * EfficientNet-Lite0 with random weights (same preprocessing);
  * small convnets pre-trained on the 3,000 upstream Fashion-MNIST images:
    supervised (cross-entropy) and self-supervised (EnSiam, no labels), plus
    one left at its random initialisation. They carry a ``pretrained_cfg``
    with input size 1x28x28, so digits are resized to 28x28 for them.

Everything runs on the CPU with ``torch.set_num_threads(1)`` (set below; the
shared 2-core machine is faster with one thread per process). Embeddings and
fine-tuned accuracies are cached under ``benchmarks/.cache`` (keyed by the
whole configuration); scores are always recomputed and timed.

Run ``python -m benchmarks.bench_transferability`` (default: one draw of the
labelled images, 11-14 minutes on 2 busy cores; every run ends with the mean
table, ``--seeds 0 1`` adds a second draw) or ``--quick`` (under a minute: 200
training images, 5 fine-tuning steps, 6 candidates; a smoke test, its
fine-tuned accuracies are near chance). ``--steps``, ``--lr`` and
``--resolutions`` override the fine-tuning budget and the EfficientNet input
sizes (e.g. ``--steps 1000 --resolutions 160 224 --device cuda`` where there is
a GPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from functools import partial

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks._common import (
    CACHE,
    machine_description,
    print_table,
    run_and_record,
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
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
)

torch.set_num_threads(1)

SCORES = {
    "knn_loo": knn_loo_score,
    # the paper ranks with Euclidean kNN and suspects cosine may help (appendix C.7)
    "knn_loo_euclidean": partial(knn_loo_score, metric="euclidean"),
    "logme": logme_score,
    "hscore": hscore,
    "hscore_pinv": partial(hscore, shrinkage=0),
    "linear_cv": linear_cv_score,
}


# --------------------------------------------------------------------------- tasks


def fashion_task(args, seed):
    """Fashion-MNIST: upstream images for the small zoo, labelled low-data split, test set."""
    X, y = load_fashion_mnist(split="train", return_X_y=True)
    X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
    order = np.random.default_rng(1234).permutation(len(X))
    up, rest = order[: args.n_upstream], order[args.n_upstream:]
    tr = np.random.default_rng(seed).choice(rest, size=args.n_train, replace=False)
    te = np.random.default_rng(99).permutation(len(X_te))[: args.n_test]  # one test set
    return dict(name="fashion", seed=seed, X=X[tr], y=y[tr], X_test=X_te[te], y_test=y_te[te],
                X_up=X[up], y_up=y[up])


def digits_task(args, seed):
    X, y = load_digits_images(return_X_y=True)
    size = min(args.n_train, args.n_test)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, train_size=size, test_size=args.n_test,
                                              stratify=y, random_state=seed)
    return dict(name="digits", seed=seed, X=X_tr, y=y_tr, X_test=X_te, y_test=y_te)


# --------------------------------------------------------------------------- zoo


def _lite(name, pretrained):
    """EfficientNet-Lite from the repens-efficientnet-lite plugin.

    Random weights get the pretrained preprocessing too (same resize and
    normalisation), so only the weights differ.
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
    module.pretrained_cfg = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,),
                                 interpolation="bilinear", crop_pct=1.0)
    return module


def _ensiam(X_up, args):
    """EnSiam-pretrained convnet on the upstream images (no labels), cached on disk."""
    params = dict(backbone="convnet_small", backbone_params={"width": args.width}, n_views=4,
                  policy="simsiam", max_epochs=args.epochs_ssl, batch_size=128, base_lr=0.05,
                  projector_dim=128, predictor_hidden_dim=32, device="cpu", random_state=0)
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
    small = dict(arch="convnet_small", arch_params={"width": args.width}, epochs=args.epochs_sup,
                 lr=0.05, batch_size=128, seed=0, verbose=False)
    zoo["cnn-supervised"] = (_small_cfg(train_backbone(
        fashion["X_up"], fashion["y_up"], name="transfer-sup", **small)), None)
    zoo["cnn-ensiam"] = (_small_cfg(_ensiam(fashion["X_up"], args)), None)
    torch.manual_seed(1)
    zoo["cnn-random"] = (_small_cfg(create_backbone("convnet_small", in_chans=1,
                                                    width=args.width)), None)
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


def measure(task, name, module, res, args):
    """Embeddings (train, test), embed time, fine-tuned test accuracy and time (cached)."""

    def compute():
        t0 = time.perf_counter()
        emb = MeanTTAEmbedder(module, n_augmentations=0, device=args.device, batch_size=128,
                              random_state=0, **_image_params(res)).fit(task["X"])
        Z, Z_test = emb.transform(task["X"]), emb.transform(task["X_test"])
        t1 = time.perf_counter()
        clf = FineTuneClassifier(module, lr=args.lr, max_steps=args.steps, batch_size=32,
                                 schedule="constant", device=args.device, random_state=0,
                                 **_image_params(res))
        ft_acc = clf.fit(task["X"], task["y"]).score(task["X_test"], task["y_test"])
        return dict(Z=Z, Z_test=Z_test, embed_s=t1 - t0, ft_acc=ft_acc,
                    ft_s=time.perf_counter() - t1)

    key = [task["name"], name, res, args.n_train, args.n_test, task["seed"], args.steps, args.lr,
           "constant", args.device,
           args.width, args.epochs_sup, args.epochs_ssl, args.n_upstream]
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
    rows = {}
    for name, (module, res) in zoo.items():
        m, hit = measure(task, name, module, res, args)
        lp = linear_probe(m["Z"], task["y"], m["Z_test"], task["y_test"])
        rows[name] = dict(width=m["Z"].shape[1], ft=float(m["ft_acc"]), lp=lp,
                          embed_s=float(m["embed_s"]), ft_s=float(m["ft_s"]),
                          scores=timed_scores(m["Z"], task["y"]), cached=hit)
        print(f"  [{task['name']} seed {task['seed']}] {name}: fine-tuned {rows[name]['ft']:.3f},"
              f" probe {lp:.3f}{' (cached)' if hit else ''} embed {rows[name]['embed_s']:.0f}s"
              f" fine-tune {rows[name]['ft_s']:.0f}s", flush=True)
    return rows


# --------------------------------------------------------------------------- report


def candidate_table(task, rows):
    headers = ["candidate", "width", *SCORES, "fine-tuned acc", "linear-probe acc"]
    table = [[name, r["width"], *(f"{r['scores'][s][0]:.3f}" for s in SCORES),
              f"{r['ft']:.3f}", f"{r['lp']:.3f}"] for name, r in rows.items()]
    print(f"\n#### {task['name']} (seed {task['seed']}): {len(task['y'])} training / "
          f"{len(task['y_test'])} test images, {len(np.unique(task['y']))} classes\n")
    print_table(table, headers)


def agreement(rows):
    """{score: dict(tau/rho with FT and LP, top-1 pick, regrets in points, ms per candidate)}."""
    names = list(rows)
    truth = {k: np.array([rows[n][k] for n in names]) for k in ("ft", "lp")}
    out = {}
    for s in SCORES:
        values = np.array([rows[n]["scores"][s][0] for n in names])
        top = int(np.argmax(values))
        out[s] = dict(pick=names[top], ms=1e3 * np.mean([rows[n]["scores"][s][1] for n in names]))
        for k, acc in truth.items():
            out[s][f"tau_{k}"] = kendalltau(values, acc).statistic
            out[s][f"rho_{k}"] = spearmanr(values, acc).statistic
            out[s][f"regret_{k}"] = 100 * (acc.max() - acc[top])
    return out


_METRICS = ["tau_ft", "rho_ft", "tau_lp", "rho_lp", "regret_ft", "regret_lp", "ms"]
_HEADERS = ["tau FT", "rho FT", "tau LP", "rho LP", "regret FT (pts)", "regret LP (pts)",
            "ms / candidate"]


def _fmt(metric, value):
    return f"{value:.1f}" if metric.startswith(("regret", "ms")) else f"{value:+.2f}"


def report(results, n_candidates):
    """Per task and seed, then the mean over them."""
    rows = [[label, s, *(_fmt(m, r[m]) for m in _METRICS), r["pick"]]
            for label, per_score in results for s, r in per_score.items()]
    print(f"\n### Transferability scores vs fine-tuned (FT) and linear-probe (LP) test "
          f"accuracy, {n_candidates} candidates\n")
    print_table(rows, ["task", "score", *_HEADERS, "top-1 pick"])
    mean = [[s, *(_fmt(m, np.mean([r[s][m] for _, r in results])) for m in _METRICS)]
            for s in SCORES]
    print(f"\n### Mean over {len(results)} task x seed runs\n")
    print_table(mean, ["score", *_HEADERS])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: tiny sizes, 6 candidates")
    parser.add_argument("--tasks", nargs="+", default=["fashion", "digits"],
                        choices=["fashion", "digits"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="draws of the labelled / test images (default 0; each seed "
                             "repeats the whole measurement)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default 40; 5 quick)")
    parser.add_argument("--lr", type=float, help="fine-tuning learning rate (default 0.01)")
    parser.add_argument("--resolutions", type=int, nargs=2,
                        help="EfficientNet input sizes (default 64 96; 32 48 quick)")
    parser.add_argument("--device", default="cpu", help="torch device of embedding and "
                        "fine-tuning (default cpu; the small zoo is always trained on the CPU)")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    if args.quick:
        args.__dict__.update(n_train=200, n_test=200, n_upstream=600, steps=5, lr=0.01,
                             resolutions=[32, 48], lites=[0], width=8, epochs_sup=1,
                             epochs_ssl=1)
    else:
        args.__dict__.update(n_train=1000, n_test=500, n_upstream=3000, steps=40, lr=0.01,
                             resolutions=[64, 96], lites=[0, 1, 2], width=16, epochs_sup=3,
                             epochs_ssl=3)
    args.__dict__.update(given)
    start = time.perf_counter()
    print(f"machine: {machine_description()} (torch.set_num_threads(1))")
    print(f"mode: {'--quick' if args.quick else 'default'}; seeds {args.seeds}; fine-tuning "
          f"{args.steps} steps x batch 32, constant lr {args.lr}; EfficientNet resolutions "
          f"{args.resolutions}", flush=True)
    zoo = build_zoo(fashion_task(args, 0), args)
    print(f"zoo of {len(zoo)} candidates ready, {time.perf_counter() - start:.0f}s", flush=True)
    makers = {"fashion": fashion_task, "digits": digits_task}
    results = []
    for seed in args.seeds:
        for task_name in args.tasks:
            task = makers[task_name](args, seed)
            rows = run_task(task, zoo, args)
            candidate_table(task, rows)
            results.append((f"{task_name} s{seed}", agreement(rows)))
    report(results, len(zoo))
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    run_and_record(main, "bench_transferability")
