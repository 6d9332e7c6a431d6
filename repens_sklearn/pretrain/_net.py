"""The skorch side of EnSiamPretrainer: the NeuralNet subclass, its data set and callbacks."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback

from .._compute import autocast, embed_inputs, make_generator
from .._distributed import ShardBatchSampler, draw_shard
from .._inputs import InputsLoader, keep_batch, make_loader, to_float
from .._warnings import warn
from ..exceptions import CollapseWarning, NonFiniteLossError
from ._knn import weighted_knn_accuracy
from ._losses import collapse_std


class _GeneratorStates:
    """The random state of a run (augmentation + shuffling), saved with each checkpoint so
    that a resumed run draws the same views and batches as an uninterrupted one."""

    def __init__(self, augment, shuffle):
        self.augment, self.shuffle = augment, shuffle

    def state_dict(self):
        return {"augment": self.augment.get_state(), "shuffle": self.shuffle.get_state()}

    def load_state_dict(self, state):
        self.augment.set_state(state["augment"].cpu())
        self.shuffle.set_state(state["shuffle"].cpu())


class SiameseNet(NeuralNet):
    """skorch ``NeuralNet`` that trains a :class:`SiameseNetwork` on K views per sample.

    Every training step draws the K views of the batch with ``policy`` on the
    device and sends all of them through the network in one forward pass.
    """

    def __init__(
        self,
        *args,
        policy,
        n_views,
        seed=0,
        num_workers=0,
        bn_per_view=False,
        autocast_dtype=None,
        data_parallel=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # a repens_sklearn._distributed.DataParallel: this rank's share of every batch
        self.data_parallel = data_parallel
        self.autocast_dtype = autocast_dtype  # None: bf16 on CUDA, float32 on CPU
        self.policy = policy
        self.n_views = n_views
        self.seed = seed
        self.num_workers = num_workers
        self.bn_per_view = bn_per_view

    def initialize(self):
        super().initialize()
        self.augment_generator_ = make_generator(self.seed, self.device)
        self.shuffle_generator_ = make_generator(self.seed + 1, "cpu")
        self.rng_ = _GeneratorStates(self.augment_generator_, self.shuffle_generator_)
        self.ddp_forward_ = None
        if self.data_parallel is not None:  # DDP around the forward of all K views
            self.ddp_forward_ = self.data_parallel.wrap(
                _ViewsForward(self.module_, self.n_views, self.bn_per_view)
            )
        return self

    def release_data_parallel(self):
        """Drop the process group's objects (DDP does not pickle): a plain fitted net."""
        self.data_parallel = self.ddp_forward_ = None

    def get_iterator(self, dataset, training=False):
        if not training:
            return super().get_iterator(dataset, training=False)
        if self.data_parallel is None:
            return make_loader(
                dataset,
                self.batch_size,
                shuffle=True,
                generator=self.shuffle_generator_,
                num_workers=self.num_workers,
                device=self.device,
            )
        self.n_train_ = len(dataset)
        return self._sharded_loader(dataset)

    def _sharded_loader(self, dataset):
        """This rank's share of the batches of a one-process run (same seeded shuffling)."""
        sampler = torch.utils.data.RandomSampler(dataset, generator=self.shuffle_generator_)
        batches = torch.utils.data.BatchSampler(sampler, self.batch_size, drop_last=False)
        workers = {"persistent_workers": False, "prefetch_factor": 2} if self.num_workers else {}
        # generator too: each epoch's iterator draws its workers' base seed from it, as in
        # one process
        return InputsLoader(
            dataset,
            batch_sampler=ShardBatchSampler(batches, self.data_parallel),
            generator=self.shuffle_generator_,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            pin_memory=torch.device(self.device).type == "cuda",
            **workers,
        )

    def global_batch(self):
        """``(offset, total)``: this rank's first row in the current global batch, its size."""
        index = len(self.history[-1, "batches"]) - 1  # skorch opened the batch's row
        total = min(self.batch_size, self.n_train_ - index * self.batch_size)
        return self.data_parallel.share(total)[0], total

    def make_views(self, x, shard=None):
        """The K augmented views of a batch, concatenated view by view: ``(K * B, ...)``.

        With a pretrained backbone the views are drawn on [0, 1] images at its
        resolution and standardized afterwards. ``shard=(offset, total)``: ``x`` is
        this rank's part of a global batch, and its rows get the views they get
        in one process (:func:`~repens_sklearn._distributed.draw_shard`).
        """
        preprocessor = self.module_.preprocessor
        x = preprocessor.prepare(x)
        views = torch.cat(
            [
                draw_shard(self.policy, x, self.augment_generator_, shard)
                for _ in range(self.n_views)
            ]
        )
        return preprocessor.standardize(views)

    def forward_views(self, views):
        """``(z, p)`` of the K views: one pass over all of them (BatchNorm statistics over
        every view of the batch), or one pass per view as SimSiam's reference code does."""
        if self.ddp_forward_ is not None:
            return self.ddp_forward_(views)
        return _forward_views(self.module_, views, self.n_views, self.bn_per_view)

    def train_step_single(self, batch, **fit_params):
        self.module_.train()  # the net's torch modules (skorch's train_step_single does so too)
        self.criterion_.train()
        x = to_float(batch.to(self.device, non_blocking=True))
        dp = self.data_parallel
        shard = None if dp is None else self.global_batch()
        with autocast(self.device, self.autocast_dtype):
            z, p = self.forward_views(self.make_views(x, shard))
        loss = reported = self.criterion_(z.float(), p.float())
        if dp is not None:  # every rank checks and records the global batch's mean loss
            reported, weight = dp.global_mean(loss, len(x), shard[1])
            loss = loss * weight  # DDP averages gradients over ranks: those of the global mean
        if not torch.isfinite(reported):
            epoch = len(self.history)
            batch_idx = len(self.history[-1, "batches"])
            raise NonFiniteLossError(
                f"the training loss became {reported.item()} at epoch {epoch} "
                f"(batch {batch_idx + 1})"
            )
        loss.backward()
        self.history.record_batch("collapse_std", _collapse_std(z[: len(x)], dp))
        return {
            "loss": reported,
            "y_pred": z,
            "global_batch_size": None if shard is None else shard[1],
        }


def _forward_views(module, views, n_views, per_view):
    if not per_view:
        return module(views)
    outputs = [module(view) for view in views.chunk(n_views)]
    return tuple(torch.cat(parts) for parts in zip(*outputs))


class _ViewsForward(torch.nn.Module):
    """The K views' forward as one module call: what DDP wraps (one forward per backward)."""

    def __init__(self, network, n_views, per_view):
        super().__init__()
        self.network, self.n_views, self.per_view = network, n_views, per_view

    def forward(self, views):
        return _forward_views(self.network, views, self.n_views, self.per_view)


def _collapse_std(z, dp):
    """:func:`collapse_std` of the global batch's first views (from per-rank sums)."""
    if dp is None:
        return collapse_std(z).item()
    z = torch.nn.functional.normalize(z.detach().float(), dim=1)
    count = torch.tensor([len(z)], dtype=z.dtype, device=z.device)
    n, total, squares = dp.sum(torch.cat([count, z.sum(0), (z * z).sum(0)])).split(
        [1, z.shape[1], z.shape[1]]
    )
    var = (squares - total * total / n) / (n - 1)
    return var.clamp_min(0).sqrt().mean().item()


class WarmupCosineLR(Callback):
    """Per-batch learning rate: linear warm-up then cosine decay to 0 (EnSiam paper sec. 4.1).

    Stateless: the step is recovered from the history, so a run resumed from a
    checkpoint follows exactly the schedule of an uninterrupted one.
    """

    def __init__(self, lr, total_steps, warmup_steps=0):
        self.lr = lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def lr_at(self, step):
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_train_begin(self, net, **kwargs):
        self.step_ = sum(row.get("train_batch_count", len(row["batches"])) for row in net.history)

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        lr = self.lr_at(self.step_)
        for group in net.optimizer_.param_groups:  # SimSiam's fix_pred_lr: a constant rate
            group["lr"] = self.lr if group.get("fix_lr") else lr
        net.history.record_batch("lr", lr)
        self.step_ += 1


class CollapseMonitor(Callback):
    """Logs ``collapse_std`` (epoch mean of the per-batch indicator) and warns once when it
    falls below ``ratio / sqrt(D)`` (SimSiam sec. 4.1 reads ~1/sqrt(D) as healthy)."""

    def __init__(self, ratio=0.05):
        self.ratio = ratio

    def on_train_begin(self, net, **kwargs):
        self.warned_ = False

    def on_epoch_end(self, net, **kwargs):
        values = [b["collapse_std"] for b in net.history[-1, "batches"] if "collapse_std" in b]
        if not values:
            return
        value = float(np.mean(values))
        net.history.record("collapse_std", value)
        dim = net.module_.projector[-1].num_features
        if value < self.ratio / math.sqrt(dim) and not self.warned_:
            self.warned_ = True
            warn(
                f"the projections are collapsing at epoch {len(net.history)}: std of the "
                f"L2-normalized projection is {value:.2e}, healthy is about "
                f"1/sqrt({dim}) = {1 / math.sqrt(dim):.2e}; try a lower base_lr or stronger "
                "augmentations",
                CollapseWarning,
            )


class KNNMonitor(Callback):
    """Records ``knn_acc``: weighted cosine kNN accuracy of the encoder on labelled data.

    Leave-one-out on ``(inputs, y)``, with the encoder in eval mode (normalization
    layers use their running statistics), after every ``every`` epochs.
    """

    def __init__(
        self,
        inputs,
        y,
        k=200,
        temperature=0.1,
        every=1,
        batch_size=256,
        preprocessor=None,
        dtype=None,
    ):
        self.inputs = inputs
        self.dtype = dtype
        self.preprocessor = preprocessor
        self.y = y
        self.k = k
        self.temperature = temperature
        self.every = every
        self.batch_size = batch_size

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) % self.every:
            return
        emb = embed_inputs(
            net.module_.encoder,
            self.inputs,
            batch_size=self.batch_size,
            device=net.device,
            preprocessor=self.preprocessor,
            dtype=self.dtype,
        )
        acc = weighted_knn_accuracy(emb, self.y, k=self.k, temperature=self.temperature)
        net.history.record("knn_acc", acc)
