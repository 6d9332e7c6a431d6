"""MeTTA benchmark: linear-evaluation quality and speed of MeanTTAEmbedder on Fashion-MNIST.

Quality: a small CNN (``convnet_small``) is trained with ``crop_flip`` augmentation
for a few epochs on CPU (one backbone per seed, cached by ``benchmarks._common.train_backbone``),
frozen, then a ``LogisticRegression`` is fitted on the centre embedding and on
MeTTA embeddings with S in {1, 4, 10, 32}, with and without the identity view,
for ``mean`` and ``gem``. Two training protocols, each one ``Pipeline``: the head
trained on the S-view means (``fit_output="mean"``) or, as in Ashukha et al.,
"Mean Embeddings with Test-Time Data Augmentation for Ensembling of
Representations" (sec. 2, eq. 5), on one augmented view per training image
(``fit_output="single_view"``), tested on the S-view mean either way; also the
head trained on plain embeddings. Mean and spread over seeds; gain = accuracy
gain in points over the centre embedding of the same seed.

Speed (same run): MeTTA with S views / (S x plain embedding time), the plain
embedding taken on the S x N views themselves and on the N originals; MeTTA
against the per-image loop a user writes by hand (PIL + torchvision transforms,
one image at a time), and the augmentation alone (the batched policy on batches of 256
against PIL view by view); peak extra memory (resident set growth during
``transform``, in a fresh process) for S=1 vs S=32.

Shrunk to fit about 10 minutes on a shared 2-core CPU: backbone width 16 (64-d
embeddings), 4,000 training images and 2 epochs, 250 + 250 images for linear
evaluation, 3 seeds, one torch thread (``--threads``). ``--quick`` runs in
seconds (1 seed, S in {1, 4}, 100 + 100 images, 1 epoch, no memory part).

    python -m benchmarks.bench_metta [--quick] [--crop-scales]

``--crop-scales`` runs only the sweep that chose ``crop_flip``'s default crop
area (``scale="auto"``): MeTTA on 8x8 digits and 28x28 Fashion-MNIST with crop
areas from 8% (the paper's, torchvision's) to 100%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks._common import (
    fashion_subset,
    machine_description,
    print_table,
    run_and_record,
    train_backbone,
)
from repens_sklearn import MeanTTAEmbedder  # noqa: E402

POLICY = "crop_flip"
POLICY_PARAMS = {"scale": (0.5, 1.0)}  # mild crops for 28x28 items, same at train and test time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 10, 32])
    parser.add_argument("--n-train-backbone", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-eval", type=int, default=250, help="linear-eval train and test size")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--crop-scales",
        action="store_true",
        help="only the crop-area sweep on 8x8 digits and 28x28 Fashion-MNIST",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.sizes, args.n_train_backbone = 1, [1, 4], 500
        args.epochs, args.n_eval = 1, 100
    return args


def linear_eval(embedder, X_train, y_train, X_test, y_test):
    """Top-1 % of ``embedder -> StandardScaler -> LogisticRegression`` fitted as one Pipeline.

    The head is trained on what ``embedder.fit_transform`` returns for the
    training rows (``fit_output``) and tested on ``transform`` (the S-view mean).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(embedder, StandardScaler(), LogisticRegression(max_iter=2000))
    return 100.0 * clf.fit(X_train, y_train).score(X_test, y_test)


# (label, S, include_identity, aggregation, fit_output)
def _configs(sizes):
    configs = [
        ("centre", 0, False, "mean", "mean"),
        ("centre", 0, False, "mean", "single_view"),
    ]  # the paper's central-crop column
    configs += [
        (f"S={s}", s, ident, agg, "mean")
        for agg in ("mean", "gem")
        for ident in (False, True)
        for s in sizes
    ]
    configs += [
        (f"S={s}", s, False, "mean", fit_output)
        for fit_output in ("single_view", "plain")
        for s in sizes
    ]
    return configs


_TRAINING_ROWS = {"mean": "S-view mean", "single_view": "one augmented view", "plain": "plain"}


def quality(args):
    configs = _configs(args.sizes)
    scores = {c: [] for c in configs}
    backbones = []
    for seed in range(args.seeds):
        X_tr, y_tr, X_te, y_te = fashion_subset(
            args.n_train_backbone + args.n_eval, args.n_eval, seed=seed
        )
        X_bb, y_bb = X_tr[: args.n_train_backbone], y_tr[: args.n_train_backbone]
        X_ev, y_ev = X_tr[args.n_train_backbone :], y_tr[args.n_train_backbone :]
        backbone = train_backbone(
            X_bb,
            y_bb,
            arch="convnet_small",
            arch_params={"width": args.width},
            epochs=args.epochs,
            seed=seed,
            policy=POLICY,
            policy_params=POLICY_PARAMS,
            name="metta",
        )
        backbones.append((backbone, X_ev))
        for config in configs:
            _, s, ident, agg, fit_output = config
            emb = MeanTTAEmbedder(
                backbone,
                policy=POLICY,
                policy_params=POLICY_PARAMS,
                n_augmentations=s,
                include_identity=ident,
                aggregation=agg,
                fit_output=fit_output,
                device="cpu",
                random_state=seed,
            )
            scores[config].append(linear_eval(emb, X_ev, y_ev, X_te, y_te))
        print(f"  seed {seed}: centre {scores[configs[0]][-1]:.2f}", flush=True)
    centre = np.array(scores[configs[0]])
    rows = []
    for config in configs:
        name, s, ident, agg, fit_output = config
        acc = np.array(scores[config])
        gain = acc - centre
        rows.append(
            [
                name if s else "centre (plain)",
                "yes" if ident else "no",
                agg if s else "-",
                _TRAINING_ROWS[fit_output] if (s or fit_output != "mean") else "plain",
                f"{acc.mean():.2f} ± {acc.std():.2f}",
                f"{gain.mean():+.2f} ± {gain.std():.2f}" if config != configs[0] else "baseline",
            ]
        )
    print("\n### Quality: linear evaluation on Fashion-MNIST (top-1 %, mean ± std over seeds)\n")
    print(
        "The head is fitted in one Pipeline on what `fit_transform` returns for the training "
        "rows (`fit_output`: the S-view mean, one augmented view as in the paper's eq. 5, or "
        "the plain embedding) and tested on the S-view mean.\n"
    )
    print_table(
        rows,
        [
            "views",
            "identity",
            "aggregation",
            "head trained on",
            "accuracy",
            "gain vs centre (points)",
        ],
    )
    return backbones[0]


def _timed(*fns, repeats=3):
    """Best-of-``repeats`` times of the functions, interleaved so machine load hits all alike."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _pil_transform(size):
    """The hand loop's per-view augmentation: torchvision transforms on a PIL image."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=POLICY_PARAMS["scale"]),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
        ]
    )


def _hand_augment(X, n_views):
    """The hand loop's augmentation alone, one view at a time."""
    from PIL import Image

    transform = _pil_transform(X.shape[-1])
    return [transform(Image.fromarray(image[0])) for image in X for _ in range(n_views)]


def _hand_loop(backbone, X, n_views):
    """What a user writes by hand: PIL image, torchvision transforms, one image at a time."""
    from PIL import Image

    transform = _pil_transform(X.shape[-1])
    out = []
    with torch.no_grad():
        for image in X:
            pil = Image.fromarray(image[0])
            views = torch.stack([transform(pil) for _ in range(n_views)])
            out.append(backbone(views).mean(0))
    return torch.stack(out).numpy()


def _time_once(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _views(policy, X, n_views, seed=0):
    """The S x N augmented views MeTTA feeds the backbone, as a float array in [0, 1]."""
    x = torch.from_numpy(np.repeat(X, n_views, axis=0)).float() / 255
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([policy(x[i : i + 256], generator) for i in range(0, len(x), 256)]).numpy()


def speed(args, backbone, X):
    """Two baselines for "S x plain": the plain embedding of the S x N views themselves
    (the same forward passes on the same data, so the ratio is our overhead: augmenting,
    batching, aggregating), and S times the plain embedding of the N originals (the
    literal reading). On a CPU they differ: a forward pass costs less on images with
    many exact zeros (Fashion-MNIST's black background), which resampled views lose.
    """
    n = min(len(X), 200 if not args.quick else 20)
    X = X[:n]
    plain = MeanTTAEmbedder(backbone, n_augmentations=0, device="cpu").fit(X)
    _hand_loop(backbone.eval(), X[:4], 2)  # warm-up: imports, first-call costs
    rows = []
    for s in (4, 32):
        emb = MeanTTAEmbedder(
            backbone,
            policy=POLICY,
            policy_params=POLICY_PARAMS,
            n_augmentations=s,
            device="cpu",
            random_state=0,
        ).fit(X)
        views = _views(emb.policy_, X, s)
        t_views, t_orig, t_metta = _timed(
            lambda: plain.transform(views), lambda: plain.transform(X), lambda: emb.transform(X)
        )
        n_hand = max(10, n // 5)
        t_hand = _time_once(lambda: _hand_loop(backbone.eval(), X[:n_hand], s)) * n / n_hand
        (t_policy,) = _timed(lambda: _views(emb.policy_, X, s))
        t_pil = _time_once(lambda: _hand_augment(X[:n_hand], s)) * n / n_hand
        rows.append(
            [
                s,
                f"{t_views * 1000:.0f}",
                f"{s * t_orig * 1000:.0f}",
                f"{t_metta * 1000:.0f}",
                f"{t_metta / t_views:.2f} / {t_metta / (s * t_orig):.2f}",
                f"{t_hand * 1000:.0f}",
                f"{t_hand / t_metta:.1f}x",
                f"{t_policy * 1000:.0f} / {t_pil * 1000:.0f} ({t_pil / t_policy:.1f}x)",
            ]
        )
    print(
        f"\n### Speed: {n} Fashion-MNIST images, convnet_small width {args.width}, "
        f"batch_size 256, {torch.get_num_threads()} thread(s), best of 3 interleaved\n"
    )
    print_table(
        rows,
        [
            "S",
            "plain on the S x N views ms",
            "S x plain on N ms",
            "MeTTA ms",
            "MeTTA / plain: on views / S x on N (target <= 1.15)",
            "hand loop ms (PIL + torchvision, extrapolated)",
            "MeTTA speed-up (target >= 3x)",
            "augmentation alone ms: batched policy / PIL per view",
        ],
    )


_MEMORY_SCRIPT = r"""
import json, os, sys, threading, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from repens_sklearn import MeanTTAEmbedder, create_backbone
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

X = np.load(sys.argv[1])
backbone = create_backbone("convnet_small", in_chans=1, width=int(sys.argv[4]))
emb = MeanTTAEmbedder(backbone, policy="crop_flip", n_augmentations=int(sys.argv[2]),
                      batch_size=256, device="cpu", random_state=0).fit(X)
emb.transform(X[:8])  # warm-up: kernels, caches, allocator
peak, done = [rss()], threading.Event()

def sample():
    while not done.is_set():
        peak.append(rss())
        time.sleep(0.002)

base = rss()
thread = threading.Thread(target=sample)
thread.start()
emb.transform(X)
done.set()
thread.join()
print(json.dumps({"base": base, "peak": max(peak)}))
"""


def memory(args, X, tmp="benchmarks/.cache/metta_mem.npy"):
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    np.save(tmp, X)
    rows, peak, growth = [], {}, {}
    for s in (1, 32):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, tmp, str(s), str(args.threads), str(args.width)],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        peak[s] = res["peak"] / 2**20
        growth[s] = (res["peak"] - res["base"]) / 2**20
        rows.append([s, f"{res['base'] / 2**20:.0f}", f"{peak[s]:.0f}", f"{growth[s]:.1f}"])
    os.remove(tmp)
    print(
        f"\n### Peak memory of transform on {len(X)} images "
        "(resident set sampled every 2 ms, fresh process, batch_size=256)\n"
    )
    print_table(rows, ["S", "RSS before transform (MiB)", "peak RSS during (MiB)", "growth (MiB)"])
    print(
        f"\npeak RSS S=32 / S=1: {peak[32] / peak[1]:.3f} (target: within 10%); growth during "
        f"transform S=32 - S=1: {growth[32] - growth[1]:+.1f} MiB (the views are summed as "
        "they come, so this does not scale with S)"
    )


CROP_MINIMA = (0.08, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)


def _digits_cnn(X, y, epochs, seed):
    """A small CNN trained on 8x8 digits with mild crops (``examples/metta.py``); its backbone."""
    from repens_sklearn import create_augmentation_policy, create_backbone

    torch.manual_seed(seed)
    backbone = create_backbone("convnet_small", in_chans=1)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.embedding_dim, 10))
    policy = create_augmentation_policy("crop_flip", scale=(0.6, 1.0))
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(Xt), generator=generator).split(64):
            loss = torch.nn.functional.cross_entropy(model(policy(Xt[idx], generator)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return backbone.eval()


def _digits_splits(seed):
    from sklearn.model_selection import train_test_split

    from repens_sklearn import load_digits_images

    X, y = load_digits_images(return_X_y=True)
    X_bb, X_rest, y_bb, y_rest = train_test_split(
        X, y, train_size=0.4, random_state=seed, stratify=y
    )
    X_tr, X_te, y_tr, y_te = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    return X_bb, y_bb, X_tr, y_tr, X_te, y_te


def crop_scales(args):
    """MeTTA (S=4, 10) with crop areas (min, 1) on small images: which minimum keeps them intact?

    8x8 digits: convnet_small at random initialisation and trained 8 epochs
    (40% of the images; linear evaluation on 30% + 30%). 28x28 Fashion-MNIST:
    the quality section's backbone. ``auto`` is ``crop_flip``'s default.
    """
    from repens_sklearn.augment import auto_crop_scale

    sizes = [4] if args.quick else [4, 10]
    minima = [*CROP_MINIMA, "auto"]
    scores = {}
    for seed in range(args.seeds):
        X_bb, y_bb, X_tr, y_tr, X_te, y_te = _digits_splits(seed)
        models = {
            "digits 8x8, random convnet_small": ("convnet_small", X_tr, y_tr, X_te, y_te),
            "digits 8x8, trained convnet_small": (
                _digits_cnn(X_bb, y_bb, 2 if args.quick else 8, seed),
                X_tr,
                y_tr,
                X_te,
                y_te,
            ),
        }
        Xf, yf, Xf_te, yf_te = fashion_subset(
            args.n_train_backbone + args.n_eval, args.n_eval, seed=seed
        )
        n = args.n_train_backbone
        models["fashion 28x28, trained convnet_small"] = (
            train_backbone(
                Xf[:n],
                yf[:n],
                arch="convnet_small",
                arch_params={"width": args.width},
                epochs=args.epochs,
                seed=seed,
                policy=POLICY,
                policy_params=POLICY_PARAMS,
                name="metta",
            ),
            Xf[n:],
            yf[n:],
            Xf_te,
            yf_te,
        )
        for data, (backbone, *split) in models.items():
            plain = MeanTTAEmbedder(backbone, n_augmentations=0, device="cpu", random_state=seed)
            scores.setdefault((data, 0, None), []).append(linear_eval(plain, *split))
            for s in sizes:
                for low in minima:
                    params = {"scale": low if low == "auto" else (low, 1.0)}
                    emb = MeanTTAEmbedder(
                        backbone,
                        policy="crop_flip",
                        policy_params=params,
                        n_augmentations=s,
                        device="cpu",
                        random_state=seed,
                    )
                    scores.setdefault((data, s, low), []).append(linear_eval(emb, *split))
        print(f"  seed {seed} done", flush=True)
    rows = []
    for (data, s, low), acc in scores.items():
        base = np.array(scores[(data, 0, None)])
        side = 8 if data.startswith("digits") else 28
        label = (
            "plain"
            if s == 0
            else f"auto ({auto_crop_scale(side, side)[0]:.2f})"
            if low == "auto"
            else f"{low:.2f}"
        )
        gain = np.array(acc) - base
        rows.append(
            [
                data,
                s or "-",
                label,
                f"{np.mean(acc):.1f} ± {np.std(acc):.1f}",
                "baseline" if s == 0 else f"{gain.mean():+.1f} ± {gain.std():.1f}",
            ]
        )
    print(
        "\n### Crop area on small images: MeTTA with crop_flip(scale=(min, 1)), "
        "linear evaluation (top-1 %, mean ± std over seeds)\n"
    )
    print_table(rows, ["data, backbone", "S", "min crop area", "accuracy", "gain vs plain"])


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"MeTTA benchmark on {machine_description()}")
    print(f"config: {vars(args)}", flush=True)
    if args.crop_scales:
        crop_scales(args)
        print(f"\ntotal time {time.perf_counter() - start:.0f}s")
        return
    backbone, X_ev = quality(args)
    speed(args, backbone, X_ev)
    if args.quick:
        print("\n(peak memory: skipped with --quick; it needs two fresh processes)")
    else:
        memory(args, fashion_subset(10, 2000, seed=0)[2])
    print(f"\ntotal time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    run_and_record(main, "bench_metta", variant_flags=("--crop-scales",))
