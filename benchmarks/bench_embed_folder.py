"""Embedding a folder of JPEG files: throughput, memory and resume of ``repens embed``.

A folder of JPEG files is written from Fashion-MNIST (``load_fashion_mnist``,
Debian package ``dataset-fashion-mnist``): 10 class folders, every image
upscaled to a random square size between 96 and 128 pixels, so decoding and
resizing cost what they cost on real photos of that size. The model is the same
everywhere: ``convnet_small`` (random weights, seed 0) at 1 x 112 x 112.

1. Images/s, each in a fresh process, timing the embedding only (imports and
   model building excluded):
   - ``embed_files`` (what ``repens embed`` runs) with ``num_workers`` decoding
     processes, chunk by chunk to a ``.npy`` file;
   - the same with ``num_workers=0`` (sequential decoding);
   - ``MeanTTAEmbedder.transform`` on the whole list at once (no chunks, no file);
   - the loop a user writes by hand: ``torchvision.datasets.ImageFolder`` +
     ``DataLoader(num_workers=2)`` + the same module, embeddings in a list;
   - for scale, the decoding and resizing alone (PIL, one process, no model).
2. Peak resident memory of the embedding process for 1,000 and for all images
   (flat: within 10 %), with the peak of one decoding worker beside it.
3. ``repens embed`` as a command (``--chunk-size 250``): a full run, a run
   killed when half of its chunks are saved, and the ``--resume`` that
   completes it (checked byte for byte against the full run).

Every process runs torch with one intra-op thread (``--threads``), the decoding
workers beside it. The load average before and after is printed: the machine
may be shared.

    python -m benchmarks.bench_embed_folder [--quick] [--n-images 5000] [--workdir DIR]

``--quick`` uses 600 images (memory at 200 vs 600): about two minutes on a busy
2-core machine, most of it starting processes that import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INPUT_SHAPE = (1, 112, 112)
BACKBONE = "convnet_small"
BATCH_SIZE = 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 images, a couple of minutes")
    parser.add_argument("--n-images", type=int, default=5000, help="images in the folder")
    parser.add_argument(
        "--n-small", type=int, default=1000, help="the smaller run of the memory comparison"
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="decoding processes of the parallel runs (default: 2)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1024,
        help="embed_files chunk size in part 1 and 2 (default: 1024)",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="where the JPEG folder and outputs go (default: a temporary folder)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_images, args.n_small = 600, 200
    return args


# ---------------------------------------------------------------- the folder
def write_folder(root: Path, n_images: int, seed=0):
    """``root/<k>_<class>/<i>.jpg`` from Fashion-MNIST, each upscaled to 96-128 px."""
    from PIL import Image

    from repens_sklearn import load_fashion_mnist

    images, labels = load_fashion_mnist(split="train", return_X_y=True)
    data = load_fashion_mnist(split="test")  # class names only
    names = [
        f"{k}_{n.replace('/', '-').replace(' ', '_')}" for k, n in enumerate(data.target_names)
    ]
    rng = np.random.default_rng(seed)
    sizes = rng.integers(96, 129, size=n_images)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        size = (int(sizes[i]),) * 2
        image = Image.fromarray(images[i, 0]).resize(size, Image.Resampling.BICUBIC)
        image.save(root / names[labels[i]] / f"{i:05d}.jpg", quality=90)
    return root


def folder_files(root: Path):
    from repens_sklearn._images import iter_image_files

    return list(iter_image_files(root))  # what `repens embed FOLDER` embeds, in that order


# ------------------------------------------------------------ child processes
def _embedder(num_workers):
    from repens_sklearn import MeanTTAEmbedder

    return MeanTTAEmbedder(
        BACKBONE,
        n_augmentations=0,
        input_shape=INPUT_SHAPE,
        batch_size=BATCH_SIZE,
        num_workers=num_workers,
        device="cpu",
        random_state=0,
    )


def _hand_loop(root: Path, paths, num_workers):
    """The loop a user writes: ImageFolder + DataLoader + the module, outputs in a list."""
    import torch
    import torchvision
    from torchvision import transforms

    model = _embedder(0).fit(paths[:1]).backbone_.eval()
    transform = transforms.Compose(
        [transforms.Grayscale(1), transforms.Resize(INPUT_SHAPE[1:]), transforms.ToTensor()]
    )
    dataset = torchvision.datasets.ImageFolder(str(root), transform=transform)
    dataset = torch.utils.data.Subset(dataset, range(len(paths)))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH_SIZE, num_workers=num_workers, shuffle=False
    )
    start = time.perf_counter()
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(model(x).numpy())
    return time.perf_counter() - start, np.concatenate(out)


def run_child(args):
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from repens_sklearn import embed_files

    root = Path(args.workdir) / "images"
    paths = folder_files(root)[: args.limit]
    out = Path(args.workdir) / "out" / f"{args.child}-{len(paths)}.npy"
    for stale in out.parent.glob(out.name + "*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    kind, _, workers = args.child.partition(":")
    workers = int(workers)
    if kind == "embed_files":
        embedder = _embedder(workers).fit(paths[:1])
        start = time.perf_counter()
        embed_files(embedder, paths, out, chunk_size=args.chunk_size)
        elapsed = time.perf_counter() - start
        values = np.load(out)
    elif kind == "transform":
        embedder = _embedder(workers).fit(paths[:1])
        start = time.perf_counter()
        values = embedder.transform(paths)
        elapsed = time.perf_counter() - start
    elif kind == "hand":
        elapsed, values = _hand_loop(root, paths, workers)
    elif kind == "decode":  # the decoding work alone, in this process: no model
        from PIL import Image

        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as image:
                np.asarray(image.convert("L").resize(INPUT_SHAPE[:0:-1], Image.Resampling.BILINEAR))
        elapsed = time.perf_counter() - start
        values = np.zeros((len(paths), 0), dtype=np.float32)
    else:
        raise SystemExit(f"unknown child {args.child!r}")
    np.save(Path(args.workdir) / "out" / f"values-{kind}-{len(paths)}.npy", values)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "n": len(paths),
                "peak_mb": peak,
                "worker_peak_mb": worker_peak,
                "threads": torch.get_num_threads(),
            }
        )
    )


def child(args, name, limit=None):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--workdir",
        args.workdir,
        "--threads",
        str(args.threads),
        "--chunk-size",
        str(args.chunk_size),
    ]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the command
def cli(args, output, *extra, kill_at=None):
    """`repens embed` on the folder; with kill_at, SIGKILL it once that many chunks are saved."""
    cmd = [
        sys.executable,
        "-m",
        "repens_sklearn.cli",
        "embed",
        str(Path(args.workdir) / "images"),
        "--backbone",
        BACKBONE,
        "--input-shape",
        ",".join(map(str, INPUT_SHAPE)),
        "--batch-size",
        str(BATCH_SIZE),
        "--num-workers",
        str(args.num_workers),
        "--device",
        "cpu",
        "--chunk-size",
        str(args.cli_chunk),
        "-q",
        "-o",
        str(output),
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if kill_at is not None:
        parts = output.with_name(output.name + ".parts")
        while proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("part-*.npz"))) >= kill_at:
                proc.kill()
                break
            time.sleep(0.02)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if kill_at is None and proc.returncode != 0:
        raise SystemExit(f"repens embed failed: {err[-2000:]}")
    return elapsed, out


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    import torch

    from benchmarks._common import machine_description, print_table

    torch.set_num_threads(args.threads)
    owned = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench_embed_folder_")
    work = Path(args.workdir)
    load_before = os.getloadavg()
    try:
        root = work / "images"
        if not root.is_dir() or len(folder_files(root)) != args.n_images:
            shutil.rmtree(root, ignore_errors=True)
            start = time.perf_counter()
            write_folder(root, args.n_images)
            print(
                f"wrote {args.n_images} JPEG files (96-128 px) in "
                f"{time.perf_counter() - start:.1f} s to {root}",
                flush=True,
            )
        (work / "out").mkdir(exist_ok=True)
        n, w = args.n_images, args.num_workers
        print(
            f"machine: {machine_description()}; torch threads per process: {args.threads}; "
            f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}",
            flush=True,
        )

        # 1. throughput
        runs = [
            (f"embed_files (repens embed), num_workers={w}", f"embed_files:{w}"),
            ("embed_files, num_workers=0 (sequential decoding)", "embed_files:0"),
            (f"MeanTTAEmbedder.transform, whole list, num_workers={w}", f"transform:{w}"),
            ("by hand: ImageFolder + DataLoader(num_workers=2)", "hand:2"),
            ("decoding + resizing alone (PIL, one process, no model)", "decode:0"),
        ]
        rows, results = [], {}
        for label, name in runs:
            results[name] = res = child(args, name)
            rows.append(
                [
                    label,
                    f"{res['n'] / res['elapsed']:.1f}",
                    f"{res['elapsed']:.1f}",
                    f"{res['peak_mb']:.0f}",
                ]
            )
            print(f"  {label}: {res['n'] / res['elapsed']:.1f} images/s", flush=True)
        ours = np.load(work / "out" / f"values-embed_files-{n}.npy")
        hand = np.load(work / "out" / f"values-hand-{n}.npy")
        print(f"\n### Throughput: {n} JPEG files, {BACKBONE} at {INPUT_SHAPE}, CPU\n")
        print_table(rows, ["pipeline", "images/s", "seconds", "peak RSS (MB)"])
        print(
            f"\nsame model, same numbers: max |embed_files - hand loop| = "
            f"{np.abs(ours - hand).max():.2e}"
        )

        # 2. memory
        small = child(args, f"embed_files:{w}", limit=args.n_small)
        large = results[f"embed_files:{w}"]
        growth = large["peak_mb"] / small["peak_mb"] - 1
        print(f"\n### Peak memory of embed_files (num_workers={w}, chunk_size={args.chunk_size})\n")
        print_table(
            [
                [f"{m}", f"{r['peak_mb']:.0f}", f"{r['worker_peak_mb']:.0f}"]
                for m, r in ((args.n_small, small), (n, large))
            ],
            ["images", "main process peak RSS (MB)", "one decoding worker peak (MB)"],
        )
        print(
            f"\ngrowth {args.n_small} -> {n} images: {100 * growth:+.1f} % "
            f"({'flat' if abs(growth) <= 0.10 else 'NOT flat'}: within 10 %)"
        )

        # 3. resume after a kill half-way
        args.cli_chunk = max(1, n // 20)
        n_chunks = -(-n // args.cli_chunk)
        full_out, resumed_out = work / "out" / "full.npy", work / "out" / "resumed.npy"
        for pattern in ("full.npy*", "resumed.npy*"):
            for stale in (work / "out").glob(pattern):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        full_time, _ = cli(args, full_out)
        killed_time, _ = cli(args, resumed_out, kill_at=n_chunks // 2)
        parts = resumed_out.with_name(resumed_out.name + ".parts")
        n_saved = len(list(parts.glob("part-*.npz")))
        resume_time, resume_msg = cli(args, resumed_out, "--resume")
        same = resumed_out.read_bytes() == full_out.read_bytes()
        print(
            f"\n### repens embed killed half-way, then --resume ({n} files, "
            f"--chunk-size {args.cli_chunk}, --num-workers {w})\n"
        )
        print_table(
            [
                ["full run", f"{full_time:.1f}", f"{n_chunks} of {n_chunks}"],
                [
                    "run killed (SIGKILL) half-way",
                    f"{killed_time:.1f}",
                    f"{n_saved} of {n_chunks} saved",
                ],
                [
                    "--resume of the killed run",
                    f"{resume_time:.1f}",
                    f"{n_chunks - n_saved} of {n_chunks}",
                ],
            ],
            ["command", "seconds (process start included)", "chunks embedded"],
        )
        print(
            f"\nresume / full rerun: {resume_time / full_time:.2f}; resumed output identical "
            f"to the full run byte for byte: {same}"
        )
        print(f"({resume_msg.strip()})")
        load_after = os.getloadavg()
        print(
            f"\nload average after: {' '.join(f'{v:.2f}' for v in load_after)} "
            f"({os.cpu_count()} cores)"
        )
        if not same:
            return 1
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    # a --child process measures one pipeline for its parent; the parent records
    sys.exit(main() if "--child" in sys.argv else run_and_record(main, "bench_embed_folder"))
