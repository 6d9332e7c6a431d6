"""Every CUDA path of the library in one run; exits 0 with a note when there is no CUDA.

    python -m benchmarks.gpu_check [--n 4096] [--size 96]

Checks (each prints PASS/FAIL and a figure):
1. ``device="auto"`` resolves to CUDA and the fitted backbone lives there;
2. bf16 autocast: embeddings on CUDA agree with the CPU ones (cosine > 0.99);
3. an estimator fitted on the GPU pickles and loads on a CPU-only process;
4. FineTuneClassifier and EnSiamPretrainer train on CUDA (one short fit each);
5. throughput: MeTTA (S views, preprocessing on) vs a plain bf16 forward of
   the same number of already-prepared views, images/s.
"""

from __future__ import annotations

import argparse
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

    pretrained_cfg = {"input_size": (3, 96, 96), "mean": (0.485, 0.456, 0.406),
                      "std": (0.229, 0.224, 0.225), "interpolation": "bilinear", "crop_pct": 1.0}

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
    emb = MeanTTAEmbedder(_Pretrained(), policy="crop_flip", n_augmentations=views,
                          img_size=size, batch_size=512, device="auto", random_state=0).fit(X[:8])
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
    cpu = MeanTTAEmbedder(_Pretrained(), n_augmentations=0, device="cpu").fit(X)
    cpu.backbone_.load_state_dict(gpu.backbone_.state_dict())
    cos = _cosine(gpu.transform(X), cpu.transform(X))
    ok &= _report("bf16 autocast vs float32 CPU (cosine)", cos > 0.99, f"{cos:.5f}")
    blob = pickle.dumps(gpu)
    code = ("import pickle,sys,torch; e=pickle.loads(sys.stdin.buffer.read()); "
            "e.set_params(device='cpu'); import numpy as np; "
            "print(e.transform(np.zeros((2,28,28),np.uint8)).shape)")
    run = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    ok &= _report("GPU-fitted pickle loads on a CPU-only process", run.returncode == 0,
                  run.stdout.decode().strip() or run.stderr.decode()[-200:])
    clf = FineTuneClassifier(_Pretrained(), max_steps=5, batch_size=16, device="auto",
                             random_state=0).fit(X, y)
    ok &= _report("FineTuneClassifier trains on CUDA", clf.predict(X).shape == (64,))
    pre = EnSiamPretrainer(_Pretrained(), policy="crop_flip", max_epochs=1, batch_size=32,
                           projector_dim=64, predictor_hidden_dim=16, device="auto",
                           random_state=0).fit(X)
    ok &= _report("EnSiamPretrainer trains on CUDA", np.isfinite(pre.history_[-1, "train_loss"]))
    metta, plain = _throughput(args.n, args.views, args.size)
    _report(f"MeTTA S={args.views} at {args.size}px, images/s", True,
            f"{metta:,.0f} vs plain bf16 forward of the same views {plain:,.0f} "
            f"(ratio {metta / plain:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
