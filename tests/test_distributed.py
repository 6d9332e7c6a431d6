"""Data-parallel training (issue #25): 2 CPU processes (gloo, launched with torchrun) against one.

Tolerances: the 2-process runs sum the same float32 numbers in another order (each
process's mean loss and gradient, then an all-reduce; BatchNorm statistics from
per-process sums), so a loss agrees with the 1-process one to about 1e-7 relative per
step; over a few SGD steps that grows to ~1e-6. The tests allow ``rtol=1e-4``
(losses) and ``atol=1e-4`` (embeddings); a sharding or seeding mistake moves the first
loss by 1e-2 or more.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repens_sklearn import EnSiamPretrainer, FineTuneClassifier
from repens_sklearn._distributed import (
    DataParallel,
    convert_sync_batchnorm,
    draw_shard,
    revert_sync_batchnorm,
)
from repens_sklearn._plugins import create_augmentation_policy
from repens_sklearn.pretrain import _modules

RTOL, ATOL = 1e-4, 1e-4

FINETUNE = {
    "backbone": "mlp",
    "lr": 0.1,
    "max_steps": 6,
    "batch_size": 15,
    "policy": "gaussian_noise",
    "random_state": 0,
}
ENSIAM = {
    "backbone": "mlp",
    "policy": "gaussian_noise",
    "max_epochs": 3,
    "batch_size": 16,
    "projector_dim": 32,
    "predictor_hidden_dim": 8,
    "base_lr": 0.5,
    "random_state": 0,
}
N_SAMPLES = 45  # EnSiam batches of 16, 16 and 13 samples: shares of 8/8, 8/8 and 7/6

WORKER = textwrap.dedent(
    '''
    import json, os, pickle, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from skorch.callbacks import Callback
    from repens_sklearn import EnSiamPretrainer, FineTuneClassifier, init_distributed

    class Stall(Callback):
        """Rank 0 says when the checkpoint of epoch `after` is written, then hangs (killed)."""
        def __init__(self, after, marker):
            self.after, self.marker = after, marker
        def on_epoch_begin(self, net, **kwargs):
            if len(net.history) == self.after + 1 and int(os.environ["RANK"]) == 0:
                open(self.marker, "w").close()
                time.sleep(600)

    cases, out = json.loads(sys.argv[1]), sys.argv[2]
    dp = init_distributed("gloo")
    X = np.random.default_rng(0).normal(size=(%d, 10)).astype("float32")
    y = np.arange(len(X)) %% 3
    results = {}
    for name, (kind, params) in cases.items():
        stall = params.pop("stall", None)
        if stall:
            params["callbacks"] = [Stall(*stall)]
        est = (FineTuneClassifier if kind == "finetune" else EnSiamPretrainer)(**params)
        est.fit(X, y)
        est.set_params(callbacks=None) if stall else None
        out_X = est.predict_proba(X) if kind == "finetune" else est.transform(X)
        results[name] = {"loss": [b["train_loss"] for row in est.net_.history
                                  for b in row["batches"]],
                         "epoch_loss": [row["train_loss"] for row in est.net_.history],
                         "output": out_X, "model": pickle.dumps(est)}
    with open(os.path.join(out, "rank%%s.pkl" %% dp.rank), "wb") as f:
        pickle.dump(results, f)
'''
    % N_SAMPLES
)


def _data():
    X = np.random.default_rng(0).normal(size=(N_SAMPLES, 10)).astype("float32")
    return X, np.arange(len(X)) % 3


def _torchrun(tmp_path, cases, nproc=2, wait=True):
    """Run WORKER on ``nproc`` gloo processes (torchrun's own free port: --standalone)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(script),
        json.dumps(cases),
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )  # its own process group, to SIGKILL it
    if not wait:
        return proc
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    return [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(nproc)]


def _one_process(kind, params):
    X, y = _data()
    est = (FineTuneClassifier if kind == "finetune" else EnSiamPretrainer)(**params).fit(X, y)
    return est, [b["train_loss"] for row in est.net_.history for b in row["batches"]]


class _SharesBatchNorm(nn.BatchNorm1d):
    """BatchNorm over each of 2 processes' shares of the K x B views (what SyncBN off does
    in 2 processes), for the 1-process reference. Running statistics are not needed: the
    training loss uses batch statistics."""

    n_views = 4

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        views = x.reshape(self.n_views, -1, x.shape[-1])
        parts = []
        for rank in range(2):
            offset, size = DataParallel(rank, 2).share(views.shape[1])
            part = views[:, offset : offset + size].reshape(-1, x.shape[-1])
            parts.append(
                F.batch_norm(part, None, None, self.weight, self.bias, True, 0.0, self.eps).reshape(
                    self.n_views, size, -1
                )
            )
        return torch.cat(parts, dim=1).reshape(x.shape)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """One torchrun launch, 2 processes: FineTune and EnSiam with SyncBN on and off."""
    cases = {
        "finetune": ["finetune", FINETUNE],
        "ensiam_sync": ["ensiam", ENSIAM],
        "ensiam_nosync": ["ensiam", {**ENSIAM, "sync_batchnorm": False}],
    }
    return _torchrun(tmp_path_factory.mktemp("dist"), cases)


# ------------------------------------------------------------------ 2 x B/2 == 1 x B


def test_finetune_two_processes_equal_one(two_process_runs):
    rank0, rank1 = two_process_runs
    est, loss = _one_process("finetune", FINETUNE)
    assert len(rank0["finetune"]["loss"]) == FINETUNE["max_steps"]
    np.testing.assert_allclose(rank0["finetune"]["loss"], loss, rtol=RTOL)
    np.testing.assert_allclose(
        rank0["finetune"]["output"], est.predict_proba(_data()[0]), atol=ATOL
    )
    assert rank1["finetune"]["loss"] == rank0["finetune"]["loss"]  # every rank logs the global


def test_ensiam_syncbn_two_processes_equal_one(two_process_runs):
    rank0, _ = two_process_runs
    est, loss = _one_process("ensiam", ENSIAM)
    assert len(loss) == 9  # 3 epochs of 3 batches, the last one uneven across processes
    np.testing.assert_allclose(rank0["ensiam_sync"]["loss"], loss, rtol=RTOL)
    np.testing.assert_allclose(
        rank0["ensiam_sync"]["epoch_loss"], [row["train_loss"] for row in est.history_], rtol=RTOL
    )
    np.testing.assert_allclose(rank0["ensiam_sync"]["output"], est.transform(_data()[0]), atol=ATOL)


def test_ensiam_without_syncbn_normalizes_each_share(two_process_runs, monkeypatch):
    """SyncBN off: 2 processes equal 1 process whose BatchNorm normalizes each process's
    share separately - and differ from the global BatchNorm of SyncBN on."""
    rank0, _ = two_process_runs
    proxy = type("nn", (), {k: getattr(nn, k) for k in ("Linear", "ReLU", "Sequential")})
    proxy.BatchNorm1d = _SharesBatchNorm
    monkeypatch.setattr(_modules, "nn", proxy)
    _, loss = _one_process("ensiam", {**ENSIAM, "sync_batchnorm": False})
    np.testing.assert_allclose(rank0["ensiam_nosync"]["loss"], loss, rtol=RTOL)
    gap = np.abs(np.subtract(rank0["ensiam_nosync"]["loss"], rank0["ensiam_sync"]["loss"]))
    assert gap[0] > 1e-3  # the two BatchNorm semantics are told apart at step 1


def test_two_process_model_transforms_alike_in_one_plain_process(two_process_runs):
    rank0, rank1 = two_process_runs
    est = pickle.loads(rank0["ensiam_sync"]["model"])
    assert not any("Sync" in type(m).__name__ for m in est.net_.module_.modules())
    assert est.net_.data_parallel is None
    out = est.transform(_data()[0])
    np.testing.assert_array_equal(out, rank0["ensiam_sync"]["output"])
    np.testing.assert_array_equal(out, rank1["ensiam_sync"]["output"])  # same model on rank 1
    assert (
        pickle.loads(rank1["ensiam_sync"]["model"]).history_[-1, "train_loss"]
        == est.history_[-1, "train_loss"]
    )


# ------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_the_same_result(tmp_path):
    params = {**ENSIAM, "max_epochs": 4, "checkpoint_dir": str(tmp_path / "ckpt")}
    (tmp_path / "full").mkdir()
    full = _torchrun(
        tmp_path / "full", {"run": ["ensiam", {**params, "checkpoint_dir": str(tmp_path / "c0")}]}
    )
    marker = tmp_path / "epoch2.done"
    proc = _torchrun(
        tmp_path, {"run": ["ensiam", {**params, "stall": [2, str(marker)]}]}, wait=False
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, mid-epoch 3
    proc.wait()
    history = json.loads((tmp_path / "ckpt" / "history.json").read_text())
    assert len(history) == 2
    resumed = _torchrun(tmp_path, {"run": ["ensiam", params]})
    np.testing.assert_allclose(resumed[0]["run"]["loss"], full[0]["run"]["loss"], rtol=RTOL)
    np.testing.assert_allclose(resumed[0]["run"]["output"], full[0]["run"]["output"], atol=ATOL)


# --------------------------------------------------------------- in-process pieces


def test_share_cuts_like_array_split():
    for total in (1, 7, 8, 13, 16):
        cuts = np.array_split(np.arange(total), 3)
        for rank in range(3):
            offset, size = DataParallel(rank, 3).share(total)
            assert list(range(offset, offset + size)) == cuts[rank].tolist()


@pytest.mark.parametrize("name", ["gaussian_noise", "unseeded"])
def test_draw_shard_gives_each_row_its_one_process_draw(name):
    def unseeded(x, generator):
        return x + torch.rand(x.shape, generator=generator)

    policy = unseeded if name == "unseeded" else create_augmentation_policy(name)
    x = torch.randn(7, 5)
    whole = policy(x, torch.Generator().manual_seed(3))
    for rank in range(2):
        offset, size = DataParallel(rank, 2).share(7)
        generator = torch.Generator().manual_seed(3)
        part = draw_shard(policy, x[offset : offset + size], generator, (offset, 7))
        torch.testing.assert_close(part, whole[offset : offset + size], rtol=0, atol=0)
        assert generator.get_state().equal(
            (lambda g: (policy(x, g), g)[1])(torch.Generator().manual_seed(3)).get_state()
        )


def test_sync_batchnorm_round_trip_keeps_tensors_and_keys():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm2d(2)))
    params = [id(p) for p in net.parameters()]
    keys = list(net.state_dict())
    convert_sync_batchnorm(net)
    assert (
        type(net[1]).__name__ == "_CPUSyncBatchNorm"
        and type(net[2][0]).__name__ == "_CPUSyncBatchNorm"
    )
    assert [id(p) for p in net.parameters()] == params and list(net.state_dict()) == keys
    revert_sync_batchnorm(net)
    assert (type(net[1]), type(net[2][0])) == (nn.BatchNorm1d, nn.BatchNorm2d)
    assert [id(p) for p in net.parameters()] == params


def test_batches_smaller_than_the_processes_are_refused():
    with pytest.raises(
        ValueError,
        match=r"^EnSiamPretrainer: training on 4 processes splits "
        r"every batch between them, but a batch of 3 sample\(s\) leaves a "
        r"process without one; choose batch_size \(and, for the last batch of "
        r"an epoch, n_samples % batch_size\) of at least 4, or use fewer "
        r"processes$",
    ):
        DataParallel(0, 4).check_batches([16, 3], "EnSiamPretrainer")


@pytest.mark.slow
def test_module_entry_pretrains_a_folder_on_two_processes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i:02d}.png"
        )
    out = tmp_path / "encoder.joblib"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "repens_sklearn.pretrain",
        str(tmp_path / "images"),
        "-o",
        str(out),
        "--backbone",
        "convnet_small",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--policy",
        "crop_flip",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("pretrained 2 epochs on 20 images with 2 process(es)") == 1
    import joblib

    est = joblib.load(out)
    assert est.n_epochs_ == 2 and est.transform(
        [str(p) for p in sorted((tmp_path / "images").iterdir())]
    ).shape == (20, 128)
