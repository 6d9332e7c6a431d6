"""Shared benchmark helpers: Fashion-MNIST subsets and a cached zoo of small trained backbones.

Trained backbones are cached under ``benchmarks/.cache`` (keyed by their full
configuration), so benchmark scripts that need the same zoo train it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repens_sklearn import create_augmentation_policy, create_backbone, load_fashion_mnist

CACHE = Path(__file__).resolve().parent / ".cache"


def fashion_subset(n_train=5000, n_test=2000, seed=0):
    """Stratified-ish random subsets of Fashion-MNIST: uint8 (N, 1, 28, 28) and labels."""
    rng = np.random.default_rng(seed)
    X_tr, y_tr = load_fashion_mnist(split="train", return_X_y=True)
    X_te, y_te = load_fashion_mnist(split="test", return_X_y=True)
    i_tr = rng.permutation(len(X_tr))[:n_train]
    i_te = rng.permutation(len(X_te))[:n_test]
    return X_tr[i_tr], y_tr[i_tr], X_te[i_te], y_te[i_te]


class _Classifier(nn.Module):
    def __init__(self, backbone, n_classes, policy=None, seed=0):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embedding_dim, n_classes)
        self.policy = policy
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        if self.training and self.policy is not None:
            x = self.policy(x, self.generator)
        return self.head(self.backbone(x))


def train_backbone(X, y, *, arch="convnet_small", arch_params=None, epochs=3, lr=0.05,
                   batch_size=128, seed=0, classes=None, policy=None, policy_params=None,
                   name=None, verbose=True):
    """Train ``arch`` + linear head with cross-entropy; return the backbone (eval mode).

    ``classes`` restricts training to those labels (a 'different data' model);
    ``epochs=0`` returns the random initialisation. Results are cached on disk.
    """
    config = dict(arch=arch, arch_params=arch_params or {}, epochs=epochs, lr=lr,
                  batch_size=batch_size, seed=seed, classes=list(classes or []),
                  policy=policy, policy_params=policy_params or {}, n=len(X),
                  data=hashlib.sha1(np.ascontiguousarray(X[:64]).tobytes()).hexdigest()[:12])
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    torch.manual_seed(seed)
    backbone = create_backbone(arch, in_chans=X.shape[1], **(arch_params or {}))
    path = CACHE / f"{name or arch}-{key}.pt"
    if path.exists():
        backbone.load_state_dict(torch.load(path, weights_only=True))
        return backbone.eval()
    if classes is not None:
        keep = np.isin(y, classes)
        X, y = X[keep], y[keep]
    labels, y_idx = np.unique(y, return_inverse=True)
    pol = create_augmentation_policy(policy, **(policy_params or {})) if policy else None
    model = _Classifier(backbone, len(labels), pol, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = max(1, epochs * -(-len(X) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    Xt = torch.from_numpy(X.astype(np.float32) / (255.0 if X.dtype == np.uint8 else 1.0))
    yt = torch.from_numpy(y_idx.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if verbose:
            print(f"  [{name or arch}] epoch {epoch + 1}/{epochs} loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
    CACHE.mkdir(exist_ok=True)
    torch.save(backbone.state_dict(), path)
    return backbone.eval()


def machine_description():
    """One line naming the machine, for benchmark tables."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")


def print_table(rows, headers):
    """Print a Markdown table."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    print(fmt.format(*headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(fmt.format(*row))
