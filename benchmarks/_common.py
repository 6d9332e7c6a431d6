"""What the benchmark scripts share: data splits, threads, timing, peak memory, tables,
a cached zoo of small backbones trained with the library's own estimators, and the
record of each benchmark's latest figures in ``docs/benchmarks.md``.

Run the scripts as modules from the repository root, e.g.
``python -m benchmarks.bench_selection``; they import this module as
``benchmarks._common``. Trained backbones are cached under ``benchmarks/.cache``
(keyed by their full configuration), so scripts that need the same zoo train it
once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from repens_sklearn import (
    EnSiamPretrainer,
    FineTuneClassifier,
    MeanTTAEmbedder,
    create_backbone,
    load_fashion_mnist,
)

CACHE = Path(__file__).resolve().parent / ".cache"
DOCS_BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

__all__ = [
    "CACHE",
    "DOCS_BENCHMARKS",
    "OneCycle",
    "PeakRSS",
    "benchmark_key",
    "embed",
    "ensiam_backbone",
    "fashion_pools",
    "fashion_subset",
    "machine_description",
    "print_table",
    "run_and_record",
    "set_threads",
    "timed",
    "train_backbone",
    "write_benchmark_section",
]


# ----------------------------------------------------------------------------- machine


def set_threads(n=1):
    """Use ``n`` threads in torch and in numpy / scikit-learn's BLAS and OpenMP pools.

    On a shared, oversubscribed CPU one thread is usually fastest: spin-waiting
    BLAS threads made one logistic regression take 29 s instead of 0.2 s here.
    """
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)
    return n


def machine_description():
    """One line naming the machine, its load and the thread setting, for benchmark tables."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores (load average {load}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )


def print_table(rows, headers):
    """Print a Markdown table."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    print(fmt.format(*headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(fmt.format(*row))


# ------------------------------------------------------------------- docs/benchmarks.md

# One block per benchmark key; the markers let a re-run find and replace its own block.
_BLOCK = re.compile(r"<!-- benchmark: (?P<key>.+?) -->\n.*?<!-- /benchmark: (?P=key) -->\n", re.S)
_HEADING = re.compile(r"#+ ")


def benchmark_key(name, argv=(), variant_flags=()):
    """``name`` plus the flags of ``argv`` that select another measurement, values sorted.

    A run with, say, ``--skip metta selection`` measures less than the default run,
    so it keeps a block of its own instead of replacing the full one.
    """
    parts, argv, i = [name], list(argv), 0
    while i < len(argv):
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        if argv[i] in variant_flags:
            parts += [argv[i], *sorted(argv[i + 1 : j])]
        i = j
    return " ".join(parts)


def _report_markdown(text):
    """A printed report as Markdown: indented progress lines left out, headings from level 3."""
    lines = [line.rstrip() for line in text.splitlines() if not line[:1].isspace()]
    levels = [len(line.split(" ", 1)[0]) for line in lines if _HEADING.match(line)]
    shift = max(0, 3 - min(levels, default=3))
    out = []
    for line in lines:
        starts_block = _HEADING.match(line) or (
            line.startswith("|") and out and not out[-1].startswith("|")
        )
        if starts_block and out and out[-1]:  # Markdown needs a blank line before these
            out.append("")
        out.append("#" * shift + line if _HEADING.match(line) else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def write_benchmark_section(key, report, command, *, title=None, date=None, path=DOCS_BENCHMARKS):
    """Put one benchmark's dated report in ``docs/benchmarks.md`` under its own heading.

    The block of ``key`` (between ``<!-- benchmark: key -->`` markers) is replaced
    where it was; a new key is appended. The other blocks and the hand-written text
    stay as they are, so the page holds each benchmark's latest figures, never a
    history of re-runs.

    Parameters
    ----------
    key : str
        The benchmark's block, e.g. ``"bench_metta"`` (see :func:`benchmark_key`).
    report : str
        Markdown: tables and the lines that explain them.
    command : str
        The command that measured it.
    title : str, optional
        One line saying what the benchmark measures.
    date : str, optional
        ``YYYY-MM-DD`` of the measurement, default today.
    path : path-like, default=DOCS_BENCHMARKS

    Returns
    -------
    block : str
        The block as written.
    """
    date = date or time.strftime("%Y-%m-%d")
    intro = f"{title}\n\n" if title else ""
    block = (
        f"<!-- benchmark: {key} -->\n## {key}\n\n{intro}Measured {date} with "
        f"`{command}`.\n\n{report.strip()}\n<!-- /benchmark: {key} -->\n"
    )
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    found = [m for m in _BLOCK.finditer(text) if m["key"] == key]
    for m in reversed(found[1:]):  # a duplicate left by hand goes
        text = text[: m.start()] + text[m.end() :].lstrip("\n")
    if found:
        text = text[: found[0].start()] + block + text[found[0].end() :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return block


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return self.stream.isatty()

    def fileno(self):
        return self.stream.fileno()


def run_and_record(main, name, argv=None, *, variant_flags=(), path=DOCS_BENCHMARKS):
    """Run a benchmark's ``main``, then record what it printed in ``docs/benchmarks.md``.

    The printed report (indented progress lines left out) replaces the block of
    :func:`benchmark_key` through :func:`write_benchmark_section`, dated today, with
    the command and the script's one-line summary. Nothing is recorded for
    ``--quick`` smoke runs, when ``main`` raises or returns a nonzero status, or
    with ``REPENS_BENCH_RECORD=0`` in the environment.

    Parameters
    ----------
    main : callable
        ``main()`` (reading ``sys.argv``) or, when ``argv`` is given, ``main(argv)``.
    name : str
        The script's module name, e.g. ``"bench_metta"``.
    argv : list of str, optional
        The arguments, default ``sys.argv[1:]``.
    variant_flags : tuple of str
        Flags that select another measurement (a block of its own).
    path : path-like, default=DOCS_BENCHMARKS

    Returns
    -------
    status
        What ``main`` returned, for ``sys.exit``.
    """
    args, path = sys.argv[1:] if argv is None else list(argv), Path(path)
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        status = main() if argv is None else main(argv)
    if status or "--quick" in args or os.environ.get("REPENS_BENCH_RECORD") == "0":
        print(f"\n(not recorded in {path.name}: --quick, a failed run or REPENS_BENCH_RECORD=0)")
        return status
    doc = (sys.modules[main.__module__].__doc__ or "").strip()
    key = benchmark_key(name, args, variant_flags)
    write_benchmark_section(
        key,
        _report_markdown(tee.copy.getvalue()),
        " ".join(["python -m benchmarks." + name, *args]),
        title=doc.splitlines()[0] if doc else None,
        path=path,
    )
    print(f"\nrecorded as '{key}' in {path}")
    return status


# ------------------------------------------------------------------------------ timing


def timed(fn, repeat=1):
    """``(best wall seconds over repeat calls, result of the last call)``."""
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


class PeakRSS:
    """Peak resident memory growth of this process while the block runs (sampled every 5 ms).

    ``with PeakRSS() as mem: ...`` then ``mem.mib``.
    """

    def __enter__(self):
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mib = (self.peak - self.start) / 2**20


# -------------------------------------------------------------------------------- data


def fashion_pools(sizes, n_test, seed=0):
    """Disjoint random pools of the Fashion-MNIST training split and a test subset.

    ``sizes`` maps pool names to sizes, taken in order from one permutation of
    the 60,000 training images; ``"test"`` is ``n_test`` images of the test split.
    Returns ``{name: (X uint8 (N, 1, 28, 28), y)}``. The first pool is the same
    for any later pools, so scripts sharing it share the zoo cache.
    """
    X, y = load_fashion_mnist(split="train", return_X_y=True)
    X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    pools, start = {}, 0
    for name, n in sizes.items():
        idx = perm[start : start + n]
        pools[name] = (X[idx], y[idx])
        start += n
    te = rng.permutation(len(X_te))[:n_test]
    pools["test"] = (X_te[te], y_te[te])
    return pools


def fashion_subset(n_train=5000, n_test=2000, seed=0):
    """Random subsets of Fashion-MNIST: ``X_train, y_train, X_test, y_test`` (uint8 images)."""
    pools = fashion_pools({"train": n_train}, n_test, seed)
    return (*pools["train"], *pools["test"])


# ------------------------------------------------------------------------------- models


class OneCycle:
    """Learning-rate factor of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing).

    A ``schedule=`` for :class:`repens_sklearn.FineTuneClassifier`: from
    ``1 / div`` up to 1 over the first ``pct_start`` of the steps, then down to
    ``1 / (div * final_div)``.
    """

    def __init__(self, total_steps, pct_start=0.3, div=25.0, final_div=1e4):
        self.total_steps, self.pct_start = int(total_steps), pct_start
        self.div, self.final_div = div, final_div

    def __call__(self, step):
        low, top = 1.0 / self.div, 1.0
        peak = max(1.0, self.pct_start * self.total_steps - 1)
        if step <= peak:
            start, end, frac = low, top, step / peak
        else:
            start, end = top, low / self.final_div
            frac = min(1.0, (step - peak) / max(1.0, self.total_steps - 1 - peak))
        return end + (start - end) / 2 * (1 + math.cos(math.pi * frac))


def _data_key(X):
    return hashlib.sha1(np.ascontiguousarray(X[:64]).tobytes()).hexdigest()[:12]


def _cache_path(prefix, config):
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / f"{prefix}-{key}.pt"


def _load_or_build(path, arch, in_chans, arch_params, build):
    """The backbone saved at ``path``, or ``build()`` saved there."""
    if path.exists():
        backbone = create_backbone(arch, in_chans=in_chans, **(arch_params or {}))
        backbone.load_state_dict(torch.load(path, weights_only=True))
        return backbone.eval()
    backbone = build()
    CACHE.mkdir(exist_ok=True)
    torch.save(backbone.state_dict(), path)
    return backbone.eval()


def train_backbone(
    X,
    y,
    *,
    arch="convnet_small",
    arch_params=None,
    epochs=3,
    lr=0.05,
    batch_size=128,
    seed=0,
    classes=None,
    policy=None,
    policy_params=None,
    name=None,
    verbose=True,
):
    """``arch`` + a linear head trained with cross-entropy by ``FineTuneClassifier``; the backbone.

    SGD (momentum 0.9, weight decay 5e-4) with a one-cycle schedule for
    ``epochs`` passes over the data, then ``FineTuneClassifier.as_backbone()``
    (eval mode, CPU). ``classes`` restricts training to those labels (a
    'different data' model); ``epochs=0`` returns the random initialisation
    seeded by ``seed``. Results are cached on disk.
    """
    config = dict(
        trainer="FineTuneClassifier+OneCycle",
        arch=arch,
        arch_params=arch_params or {},
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        classes=list(classes or []),
        policy=policy,
        policy_params=policy_params or {},
        n=len(X),
        data=_data_key(X),
    )
    label = name or arch

    def build():
        if epochs == 0:  # the library's seeded build, no training
            return (
                MeanTTAEmbedder(
                    arch,
                    backbone_params=arch_params,
                    n_augmentations=0,
                    device="cpu",
                    random_state=seed,
                )
                .fit(X[:2])
                .as_backbone()
            )
        Xb, yb = (X, y) if classes is None else (X[np.isin(y, classes)], y[np.isin(y, classes)])
        steps = max(1, epochs * -(-len(Xb) // batch_size))
        clf = FineTuneClassifier(
            arch,
            backbone_params=arch_params,
            lr=lr,
            max_steps=steps,
            batch_size=batch_size,
            schedule=OneCycle(steps),
            momentum=0.9,
            weight_decay=5e-4,
            policy=policy,
            policy_params=policy_params,
            device="auto",
            random_state=seed,
        )
        start = time.perf_counter()
        clf.fit(Xb, yb)
        if verbose:
            print(
                f"  [{label}] {epochs} epoch(s), {steps} steps, last-batch loss "
                f"{clf.net_.history[-1, 'train_loss']:.3f} ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
        return clf.as_backbone()

    return _load_or_build(_cache_path(label, config), arch, X.shape[1], arch_params, build)


def ensiam_backbone(X, *, epochs, seed=0, name="ensiam-encoder", verbose=True, **params):
    """A convnet_small pretrained by ``EnSiamPretrainer`` on X (labels unused); its encoder.

    Defaults: K=2 views, ``simsiam`` policy, projector 256, predictor 64, batch
    128, base lr 0.05, no warm-up; ``params`` override them. Cached on disk.
    """
    params = {
        **dict(
            backbone="convnet_small",
            n_views=2,
            policy="simsiam",
            projector_dim=256,
            predictor_hidden_dim=64,
            batch_size=128,
            base_lr=0.05,
            warmup_epochs=0,
            device="auto",
        ),
        **params,
        "max_epochs": epochs,
        "random_state": seed,
    }
    config = {**params, "n": len(X), "data": _data_key(X)}

    def build():
        start = time.perf_counter()
        encoder = EnSiamPretrainer(**params).fit(X).as_backbone()
        if verbose:
            print(f"  [{name}] EnSiam pretraining {time.perf_counter() - start:.0f}s", flush=True)
        return encoder

    return _load_or_build(
        _cache_path(name, config),
        params["backbone"],
        X.shape[1],
        params.get("backbone_params"),
        build,
    )


def embed(backbone, X, **params):
    """Plain (centre) embeddings of X by ``backbone`` through ``MeanTTAEmbedder``."""
    params = {"n_augmentations": 0, "device": "auto", **params}
    return MeanTTAEmbedder(backbone, **params).fit(X[:2]).transform(X)
