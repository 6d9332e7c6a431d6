"""Every CUDA path of the library in one run; exits 0 with a note when there is no CUDA.

    python -m benchmarks.gpu_check [--n 4096] [--size 96]

Checks (each prints PASS/FAIL and a figure):
1. ``device="auto"`` resolves to CUDA and the fitted backbone lives there;
2. bf16 autocast: embeddings on CUDA agree with the CPU ones (cosine > 0.99);
3. an estimator fitted on the GPU pickles and loads on a CPU-only process;
4. FineTuneClassifier and EnSiamPretrainer train on CUDA (one short fit each);
5. throughput: MeTTA (S views, preprocessing on) vs a plain bf16 forward of
   the same number of already-prepared views, images/s;
6. ``precision="auto"`` resolves to bf16 on a GPU that computes it natively, and
   the peers table of ``benchmarks.bench_peers`` (timm hand loop, ttach, repens in
   each precision; embetter runs on CPU only) re-measured on CUDA;
7. with 2 or more GPUs: ``torchrun`` 2 processes on NCCL train FineTuneClassifier and
   EnSiamPretrainer (SyncBN) to the per-batch losses of one GPU (skipped below 2 GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from repens_sklearn import EnSiamPretrainer, FineTuneClassifier, MeanTTAEmbedder


class _Pretrained(nn.Module):
    """A ResNet-18 declaring a pretrained_cfg, so preprocessing runs on the GPU too."""

    pretrained_cfg = {
        "input_size": (3, 96, 96),
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
    }

    def __init__(self):
        super().__init__()
        import torchvision

        self.net = torchvision.models.resnet18(weights=None)
        self.net.fc = nn.Identity()
        self.embedding_dim = 512

    def forward(self, x):
        return self.net(x)


def _report(name, ok, figure=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name:<48} {figure}")
    return ok


def _cosine(a, b):
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def _throughput(n, views, size):
    X = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    emb = MeanTTAEmbedder(
        _Pretrained(),
        policy="crop_flip",
        n_augmentations=views,
        img_size=size,
        batch_size=512,
        device="auto",
        random_state=0,
    ).fit(X[:8])
    emb.transform(X[:512])  # warm-up (cuDNN autotuning, kornia pipelines)
    torch.cuda.synchronize()
    start = time.perf_counter()
    emb.transform(X)
    torch.cuda.synchronize()
    metta = n / (time.perf_counter() - start)
    prepared = torch.rand(512, 3, size, size, device="cuda")
    module = emb.backbone_
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(n * views // 512):
            module(prepared)
    torch.cuda.synchronize()
    plain = n / (time.perf_counter() - start)
    return metta, plain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="images for the throughput check")
    parser.add_argument("--size", type=int, default=96, help="resolution fed to the backbone")
    parser.add_argument("--views", type=int, default=10, help="MeTTA views S")
    parser.add_argument("--peers-n", type=int, default=256, help="images for the peers table")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; nothing to check (skipped).")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    y = np.arange(64) % 4
    ok = True
    gpu = MeanTTAEmbedder(_Pretrained(), n_augmentations=0, device="auto").fit(X)
    on_cuda = next(gpu.backbone_.parameters()).device.type == "cuda"
    ok &= _report("device='auto' -> CUDA", on_cuda, str(next(gpu.backbone_.parameters()).device))
    cpu = MeanTTAEmbedder(_Pretrained(), n_augmentations=0, device="cpu", precision="float32").fit(
        X
    )
    cpu.backbone_.load_state_dict(gpu.backbone_.state_dict())
    cos = _cosine(gpu.transform(X), cpu.transform(X))
    ok &= _report("bf16 autocast vs float32 CPU (cosine)", cos > 0.99, f"{cos:.5f}")
    blob = pickle.dumps(gpu)
    code = (
        "import pickle,sys,torch; e=pickle.loads(sys.stdin.buffer.read()); "
        "e.set_params(device='cpu'); import numpy as np; "
        "print(e.transform(np.zeros((2,28,28),np.uint8)).shape)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        input=blob,
        capture_output=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""},
    )
    ok &= _report(
        "GPU-fitted pickle loads on a CPU-only process",
        run.returncode == 0,
        run.stdout.decode().strip() or run.stderr.decode()[-200:],
    )
    clf = FineTuneClassifier(
        _Pretrained(), max_steps=5, batch_size=16, device="auto", random_state=0
    ).fit(X, y)
    ok &= _report("FineTuneClassifier trains on CUDA", clf.predict(X).shape == (64,))
    pre = EnSiamPretrainer(
        _Pretrained(),
        policy="crop_flip",
        max_epochs=1,
        batch_size=32,
        projector_dim=64,
        predictor_hidden_dim=16,
        device="auto",
        random_state=0,
    ).fit(X)
    ok &= _report("EnSiamPretrainer trains on CUDA", np.isfinite(pre.history_[-1, "train_loss"]))
    metta, plain = _throughput(args.n, args.views, args.size)
    _report(
        f"MeTTA S={args.views} at {args.size}px, images/s",
        True,
        f"{metta:,.0f} vs plain bf16 forward of the same views {plain:,.0f} "
        f"(ratio {metta / plain:.2f})",
    )
    ok &= _check_precision_and_peers(args)
    ok &= _check_nccl_data_parallel()
    return 0 if ok else 1


def _check_precision_and_peers(args):
    """``precision="auto"`` on this GPU, then the peers comparison on CUDA."""
    from repens_sklearn._compute import resolve_precision

    native = torch.cuda.is_bf16_supported(including_emulation=False)
    auto = resolve_precision("auto", "cuda")
    ok = _report(
        "precision='auto' on CUDA -> bf16 where native",
        auto == (torch.bfloat16 if native else torch.float32),
        str(auto),
    )
    try:
        from benchmarks._common import print_table
        from benchmarks.bench_peers import make_module, parse_args, speed_table
    except ImportError as exc:  # timm missing: the peers need it
        print(f"SKIP  peers comparison on CUDA: {exc}")
        return ok
    emb = MeanTTAEmbedder(make_module(), n_augmentations=0, device="cuda")
    emb.fit(torch.rand(16, 3, 64, 64).numpy())
    checked = not np.isnan(emb.precision_agreement_)
    ok &= _report(
        "precision='auto' after fit: the bf16 check ran on CUDA",
        emb.precision_ in ("bfloat16", "float32") and checked == native,
        f"{emb.precision_} (agreement {emb.precision_agreement_:.5f})",
    )
    table = speed_table(
        parse_args(["--device", "cuda", "--n", str(args.peers_n), "--repeat", "3", "--no-accuracy"])
    )
    print_table(table, ["pipeline", "images/s", "views/s", "vs hand loop", "cosine to float32"])
    return ok


_NCCL_WORKER = "REPENS_GPU_CHECK_NCCL_WORKER"  # set for the processes torchrun starts
# small models, float32 so that 2 GPUs and 1 GPU agree to float tolerance
_NCCL_CASES = {
    "FineTuneClassifier": dict(
        backbone="mlp", lr=0.1, max_steps=6, batch_size=16, policy="gaussian_noise"
    ),
    "EnSiamPretrainer (SyncBN)": dict(
        backbone="mlp",
        policy="gaussian_noise",
        max_epochs=3,
        batch_size=16,
        projector_dim=32,
        predictor_hidden_dim=8,
    ),
}


def _nccl_fit(name, params):
    """The per-batch losses of one case (2 processes: the global ones, on every rank)."""
    X = np.random.default_rng(0).normal(size=(45, 10)).astype("float32")
    cls = FineTuneClassifier if name.startswith("FineTune") else EnSiamPretrainer
    est = cls(**params, device="auto", precision="float32", random_state=0)
    est.fit(X, np.arange(len(X)) % 3)
    return [b["train_loss"] for row in est.net_.history for b in row["batches"]]


def _nccl_worker(out):
    from repens_sklearn import init_distributed

    dp = init_distributed()  # NCCL, one GPU per process (LOCAL_RANK)
    losses = {name: _nccl_fit(name, params) for name, params in _NCCL_CASES.items()}
    if dp.is_main:
        with open(out, "w") as f:
            json.dump({"backend": torch.distributed.get_backend(), "losses": losses}, f)
    return 0


def _check_nccl_data_parallel():
    """2 processes on 2 GPUs (NCCL, torchrun) train as 1 process does; skipped below 2 GPUs."""
    if torch.cuda.device_count() < 2:
        print(
            f"SKIP  data-parallel training on NCCL: needs 2 GPUs, {torch.cuda.device_count()} here"
        )
        return True
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "nccl.json")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "benchmarks.gpu_check",
        ]
        run = subprocess.run(cmd, env={**os.environ, _NCCL_WORKER: out}, capture_output=True)
        if run.returncode:
            return _report(
                "data-parallel training on 2 GPUs (NCCL)", False, run.stderr.decode()[-300:]
            )
        with open(out) as f:
            two = json.load(f)
    ok = _report("torchrun 2 processes -> NCCL backend", two["backend"] == "nccl", two["backend"])
    for name, params in _NCCL_CASES.items():
        one = _nccl_fit(name, params)
        gap = float(np.max(np.abs(np.subtract(two["losses"][name], one))))
        ok &= _report(f"{name}: 2 GPUs x B/2 = 1 GPU x B (loss)", gap < 1e-3, f"max {gap:.1e}")
    return ok


if __name__ == "__main__":
    if _NCCL_WORKER in os.environ:
        sys.exit(_nccl_worker(os.environ[_NCCL_WORKER]))
    sys.exit(main())
