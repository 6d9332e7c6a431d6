"""EnSiam data-parallel: 2 processes vs 1 process on this machine, same global batch.

    python -m benchmarks.bench_distributed [--quick] [--n 2048] [--epochs 2] [--batch-size 128]

Each configuration is launched with ``torchrun --standalone --nproc_per_node N`` on the
gloo backend (CPU), one torch thread per process (the issue's setting), and fits the
same ``EnSiamPretrainer`` (convnet_small on Fashion-MNIST 28 px, K=4 views,
``crop_flip``) with the same seed and global ``batch_size``: 2 processes each train on
half of every batch. The fit's wall time is measured inside the workers (from a barrier
before ``fit`` to one after it), so the launch and imports (listed separately) are
left out. The last column checks that both runs reach the same loss (float tolerance).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_WORKER = "REPENS_BENCH_DISTRIBUTED_WORKER"  # the worker's settings, for torchrun's processes


def _fit_params(args):
    return dict(
        backbone="convnet_small",
        backbone_params={"width": 16},
        policy="crop_flip",
        n_views=4,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        projector_dim=256,
        predictor_hidden_dim=64,
        base_lr=0.1,
        device="cpu",
        random_state=0,
    )


def _data(n):
    from benchmarks._common import fashion_subset

    try:
        return fashion_subset(n_train=n, n_test=10)[0]
    except (OSError, FileNotFoundError):  # no Fashion-MNIST here: images of noise
        return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def worker(spec):
    """One process of a launch: fit, time it between barriers, rank 0 writes the figures."""
    from benchmarks._common import set_threads
    from repens_sklearn import EnSiamPretrainer, init_distributed

    args = argparse.Namespace(**json.loads(spec))
    set_threads(1)
    dp = init_distributed("gloo")
    X = _data(args.n)
    est = EnSiamPretrainer(**_fit_params(args))
    barrier = (lambda: None) if dp is None else dp.barrier
    barrier()
    start = time.perf_counter()
    est.fit(X)
    barrier()
    seconds = time.perf_counter() - start
    if dp is None or dp.is_main:
        with open(args.out, "w") as f:
            json.dump({"fit_s": seconds, "loss": [row["train_loss"] for row in est.history_]}, f)
    return 0


def _launch(nproc, args, out):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "benchmarks.bench_distributed",
    ]
    spec = {"out": out, "n": args.n, "epochs": args.epochs, "batch_size": args.batch_size}
    env = {**os.environ, "OMP_NUM_THREADS": "1", _WORKER: json.dumps(spec)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    total = time.perf_counter() - start
    with open(out) as f:
        return {**json.load(f), "total_s": total}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--quick", action="store_true", help="smoke run (256 images, 1 epoch)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.batch_size = 256, 1, 64
    from benchmarks._common import machine_description, print_table, set_threads

    set_threads(1)
    print(f"machine: {machine_description()}; 1 torch thread per process, gloo")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            print(f"  launching {nproc} process(es)", flush=True)
            runs[nproc] = _launch(nproc, args, os.path.join(tmp, f"{nproc}.json"))
    one, two = runs[1], runs[2]
    gap = float(np.max(np.abs(np.subtract(two["loss"], one["loss"]))))
    print(
        f"\nEnSiam, convnet_small (width 16), {args.n} Fashion-MNIST images, K=4, "
        f"{args.epochs} epoch(s), global batch {args.batch_size}\n"
    )
    rows = [
        (
            f"{n} x batch {args.batch_size // n}",
            f"{r['fit_s']:.1f}",
            f"{r['total_s']:.1f}",
            f"{r['loss'][-1]:.5f}",
        )
        for n, r in runs.items()
    ]
    print_table(rows, ["processes", "fit wall s", "launch + fit wall s", "last epoch loss"])
    print(
        f"\nspeed-up of 2 processes over 1 (fit wall time): {one['fit_s'] / two['fit_s']:.2f}x;"
        f" largest epoch-loss difference {gap:.1e}"
    )
    return 0


if __name__ == "__main__":
    if _WORKER in os.environ:  # a process that torchrun started
        raise SystemExit(worker(os.environ[_WORKER]))
    from benchmarks._common import run_and_record

    raise SystemExit(run_and_record(main, "bench_distributed"))
