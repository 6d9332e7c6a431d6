"""Data-parallel training across processes with PyTorch's own engine (``torch.distributed``).

``EnSiamPretrainer`` and ``FineTuneClassifier`` train data-parallel whenever
they are fitted in processes that share an initialised default process group
of more than one process - a script launched with ``torchrun`` that calls
:func:`init_distributed` first. Nothing else changes: the estimators keep
their parameters, ``batch_size`` stays the *global* batch, and every process
returns the same fitted estimator. What this module provides, for both:

- :func:`init_distributed`: the process group from torchrun's environment
  (NCCL on CUDA, gloo on CPU);
- :class:`DataParallel`: the run's place in the group - which rows of each
  global batch this process trains on (:meth:`DataParallel.share`, seeded and
  identical on every process), DDP around the training forward, the global
  mean loss, broadcasting the fitted state from rank 0;
- :func:`draw_shard`: augmentations drawn as for the whole global batch, so a
  sample gets the same views on any number of processes;
- :func:`convert_sync_batchnorm` / :func:`revert_sync_batchnorm`: BatchNorm
  statistics over the global batch while training (torch's ``SyncBatchNorm``
  on GPUs; the same computation with differentiable gloo collectives on CPU),
  plain BatchNorm layers in the fitted estimator.

Only rank 0 writes checkpoints and logs and runs monitors; all ranks read a
checkpoint from a shared directory when resuming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from skorch.callbacks import Callback
from torch import nn

# The estimators' callbacks with side effects only rank 0 has: files, monitors, printing.
MAIN_RANK_CALLBACKS = ("checkpoint", "knn", "progress")

__all__ = [
    "DataParallel",
    "convert_sync_batchnorm",
    "data_parallel",
    "draw_shard",
    "init_distributed",
    "revert_sync_batchnorm",
]


def _dist():
    import torch.distributed as dist

    return dist


def init_distributed(backend=None):
    """Initialise the default process group from the environment ``torchrun`` sets.

    Call it at the top of a script launched with ``torchrun --nproc_per_node N
    script.py`` (or ``accelerate launch``, which sets the same variables); the
    estimators fitted afterwards train data-parallel across the N processes.
    Outside such a launch (no ``WORLD_SIZE`` above 1) it does nothing, so the
    same script runs in one plain process.

    Parameters
    ----------
    backend : {"nccl", "gloo"} or None, default=None
        None picks NCCL when CUDA is available, else gloo (CPU). With NCCL the
        process's GPU is ``cuda:LOCAL_RANK``, so ``device="auto"`` uses it.

    Returns
    -------
    dp : DataParallel or None
        This process's place in the group; None in a single process.
    """
    dist = _dist()
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return data_parallel()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return data_parallel()


def data_parallel():
    """The data-parallel run a fit belongs to: None unless a group of >= 2 processes is set up."""
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DataParallel(dist.get_rank(), dist.get_world_size())


@dataclass(frozen=True)
class DataParallel:
    """One process of a data-parallel fit (the default process group)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs and runs monitors."""
        return self.rank == 0

    def share(self, total):
        """``(offset, size)`` of this rank's rows in a global batch of ``total`` rows.

        Contiguous, as ``numpy.array_split`` cuts: the first ``total % world_size``
        ranks get one row more.
        """
        base, extra = divmod(int(total), self.world_size)
        return self.rank * base + min(self.rank, extra), base + (self.rank < extra)

    def check_batches(self, sizes, estimator):
        """Every global batch must give each process at least one sample."""
        small = [s for s in sizes if s < self.world_size]
        if small:
            raise ValueError(
                f"{estimator}: training on {self.world_size} processes splits every batch "
                f"between them, but a batch of {small[0]} sample(s) leaves a process without "
                "one; choose batch_size (and, for the last batch of an epoch, n_samples % "
                f"batch_size) of at least {self.world_size}, or use fewer processes"
            )

    def rank_callbacks(self, callbacks):
        """This rank's skorch callbacks (``(name, callback)`` pairs): rank 0's side effects
        (:data:`MAIN_RANK_CALLBACKS`) on rank 0 only; on every rank the global batch size
        in the history (the weights of the epoch's ``train_loss``)."""
        if not self.is_main:
            callbacks = [
                item
                for item in callbacks
                if not (isinstance(item, tuple) and item[0] in MAIN_RANK_CALLBACKS)
            ]
        return [("global_batch_size", GlobalBatchSize()), *callbacks]

    def wrap(self, module):
        """``module``'s forward through torch's ``DistributedDataParallel`` (gradients
        averaged over ranks), as a plain callable: skorch registers any ``nn.Module``
        attribute of a net as one of its components."""
        return _DDPForward(module)

    def global_mean(self, loss, size, total):
        """The global batch's mean loss from this rank's mean over its ``size`` of ``total``
        rows, and the factor that makes DDP's averaged gradient that of the global mean."""
        value = loss.detach().float() * (size / total)
        _dist().all_reduce(value)
        return value, size * self.world_size / total

    def sum(self, tensor):
        """``tensor`` summed over ranks (a copy)."""
        tensor = tensor.detach().clone()
        _dist().all_reduce(tensor)
        return tensor

    def agree(self, value, what):
        """Check that every rank holds the same ``value`` (picklable); raise otherwise."""
        values = [None] * self.world_size
        _dist().all_gather_object(values, value)
        if any(v != values[0] for v in values):
            raise RuntimeError(f"the processes disagree on {what}: {values} (rank by rank)")
        return value

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        _dist().broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module):
        """Rank 0's parameters and buffers copied into ``module`` on every rank (in place)."""
        with torch.no_grad():
            for tensor in module.state_dict().values():
                _dist().broadcast(tensor, src=0)
        return module

    def barrier(self):
        _dist().barrier()


class _DDPForward:
    def __init__(self, module):
        from torch.nn.parallel import DistributedDataParallel

        self.ddp = DistributedDataParallel(module)

    def __call__(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)


def draw_shard(policy, x, generator, shard):
    """``policy`` applied to this rank's rows ``x`` as if to the whole global batch.

    ``shard`` is ``(offset, total)``: ``x`` holds rows ``offset ..`` of a global
    batch of ``total``. The generator advances exactly as ``policy`` on the whole
    batch would advance it, and every row gets the draw it gets in one process,
    so views - and the loss trajectory - do not depend on the number of
    processes. Seeded policies draw the global seeds and use this rank's;
    others run on a global-batch-shaped tensor holding these rows (zeros
    elsewhere: the policy contract makes each row's draw independent of the rest).
    """
    if shard is None:
        return policy(x, generator)
    from .augment._contract import SeededPolicy
    from .augment._seeds import seeds_from_generator

    offset, total = shard
    rows = slice(offset, offset + len(x))
    if isinstance(policy, SeededPolicy) and type(policy).__call__ is SeededPolicy.__call__:
        return policy.seeded(x, seeds_from_generator(generator, total)[rows])
    full = x.new_zeros((total, *x.shape[1:]))
    full[rows] = x
    return policy(full, generator)[rows]


class ShardBatchSampler(torch.utils.data.Sampler):
    """This rank's share of every global batch that ``batch_sampler`` yields.

    Every rank iterates the same seeded ``batch_sampler`` (its generator
    advancing as in one process), so the global batches are those of a
    single-process run.
    """

    def __init__(self, batch_sampler, dp):
        self.batch_sampler = batch_sampler
        self.dp = dp

    def __iter__(self):
        for batch in self.batch_sampler:
            offset, size = self.dp.share(len(batch))
            yield batch[offset : offset + size]

    def __len__(self):
        return len(self.batch_sampler)


class GlobalBatchSize(Callback):
    """Records the global batch size (the weight of each batch's loss in the epoch's
    ``train_loss``) instead of this rank's share; the step reports it."""

    def on_batch_end(self, net, training=False, global_batch_size=None, **kwargs):
        if training and global_batch_size is not None:
            net.history.record_batch("train_batch_size", int(global_batch_size))


# ---------------------------------------------------------------------------- BatchNorm


class _CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of gloo processes on CPU, where torch's
    ``SyncBatchNorm`` refuses to run (and DDP refuses it): the global mean and variance
    come from two differentiable all-reduces, so the gradient flows across processes as
    in torch's CUDA kernel. In one process, or in
    eval mode, it is a plain BatchNorm.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input):
        if not self.training or data_parallel() is None:
            return super().forward(input)
        self._check_input_dim(input)
        return self._cpu_sync_forward(input)

    def _cpu_sync_forward(self, x):
        all_reduce = _AllReduceSum.apply
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = _dist_sum_scalar(x.numel() // x.shape[1])
        mean = all_reduce(x.sum(dims)) / count
        centered = x - mean.reshape(shape)
        var = all_reduce((centered * centered).sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / max(count - 1, 1))
        out = centered * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean, unbiased_var):
        self.num_batches_tracked.add_(1)
        factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (each rank's output
    depends on every rank's input), as ``torch.distributed.nn.functional.all_reduce``,
    which torch deprecates without a public successor."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        _dist().all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        _dist().all_reduce(grad)
        return grad


def _dist_sum_scalar(value):
    tensor = torch.tensor(float(value))
    _dist().all_reduce(tensor)
    return tensor.item()


def _swap_children(module, swap):
    for name, child in module.named_children():
        new = swap(child)
        if new is child:
            _swap_children(child, swap)
        else:
            setattr(module, name, new)
    return module


def _move_state(old, new):
    """``new`` takes ``old``'s parameter and buffer objects (the optimizer keeps its refs)."""
    for name, param in old.named_parameters(recurse=False):
        setattr(new, name, param)
    for name, buffer in old.named_buffers(recurse=False):
        setattr(new, name, buffer)
    new.train(old.training)
    return new


def _is_synced(module):
    return isinstance(module, (nn.SyncBatchNorm, _CPUSyncBatchNorm))


def _to_sync(child, device):
    if not isinstance(child, nn.modules.batchnorm._BatchNorm) or _is_synced(child):
        return child
    synced = _CPUSyncBatchNorm if torch.device(device).type == "cpu" else nn.SyncBatchNorm
    new = synced(
        child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
    )
    new.replaced = type(child)
    return _move_state(child, new)


def _from_sync(child):
    if not (_is_synced(child) and hasattr(child, "replaced")):
        return child
    new = child.replaced(
        child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
    )
    return _move_state(child, new)


def convert_sync_batchnorm(module, device="cpu"):
    """Every BatchNorm layer of ``module`` synchronised across processes (in place).

    On CUDA torch's ``SyncBatchNorm``; on ``device="cpu"`` the same computation with gloo
    (torch's refuses CPU tensors).

    The synchronised layers share the original parameters and buffers, so an
    optimizer built before or after, and checkpoints, see the same tensors and
    keys. SimSiam ("Exploring Simple Siamese Representation Learning",
    sec. 4 / appendix A) uses SyncBN in multi-GPU training.
    """
    return _swap_children(module, lambda child: _to_sync(child, device))


def revert_sync_batchnorm(module):
    """The layers :func:`convert_sync_batchnorm` replaced, back as their own class (in place)."""
    return _swap_children(module, _from_sync)
