"""The skorch side of EnSiamPretrainer: the NeuralNet subclass, its data set and callbacks."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback

from .._device import autocast, embed_inputs, make_generator
from .._inputs import make_loader, to_float
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

    def __init__(self, *args, policy, n_views, seed=0, num_workers=0, bn_per_view=False,
                 autocast_dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
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
        return self

    def get_iterator(self, dataset, training=False):
        if not training:
            return super().get_iterator(dataset, training=False)
        return make_loader(dataset, self.batch_size, shuffle=True,
                           generator=self.shuffle_generator_, num_workers=self.num_workers,
                           device=self.device)

    def make_views(self, x):
        """The K augmented views of a batch, concatenated view by view: ``(K * B, ...)``.

        With a pretrained backbone the views are drawn on [0, 1] images at its
        resolution and normalised afterwards.
        """
        preprocess = self.module_.preprocess
        x = preprocess.prepare(x)
        views = torch.cat([self.policy(x, self.augment_generator_) for _ in range(self.n_views)])
        return preprocess.normalize(views)

    def forward_views(self, views):
        """``(z, p)`` of the K views: one pass over all of them (BatchNorm statistics over
        every view of the batch), or one pass per view as SimSiam's reference code does."""
        if not self.bn_per_view:
            return self.module_(views)
        outputs = [self.module_(view) for view in views.chunk(self.n_views)]
        return tuple(torch.cat(parts) for parts in zip(*outputs))

    def train_step_single(self, batch, **fit_params):
        self.module_.train()  # the net's torch modules (skorch's train_step_single does so too)
        self.criterion_.train()
        x = to_float(batch.to(self.device, non_blocking=True))
        with autocast(self.device, self.autocast_dtype):
            z, p = self.forward_views(self.make_views(x))
        loss = self.criterion_(z.float(), p.float())
        if not torch.isfinite(loss):
            epoch = len(self.history)
            batch_idx = len(self.history[-1, "batches"])
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at epoch {epoch} (batch {batch_idx + 1})"
            )
        loss.backward()
        self.history.record_batch("collapse_std", collapse_std(z[: len(x)]).item())
        return {"loss": loss, "y_pred": z}


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
                f"L2-normalised projection is {value:.2e}, healthy is about "
                f"1/sqrt({dim}) = {1 / math.sqrt(dim):.2e}; try a lower base_lr or stronger "
                "augmentations",
                CollapseWarning,
            )


class KNNMonitor(Callback):
    """Records ``knn_acc``: weighted cosine kNN accuracy of the encoder on labelled data.

    Leave-one-out on ``(inputs, y)``, with the encoder in eval mode (normalisation
    layers use their running statistics), after every ``every`` epochs.
    """

    def __init__(self, inputs, y, k=200, temperature=0.1, every=1, batch_size=256,
                 preprocess=None, dtype=None):
        self.inputs = inputs
        self.dtype = dtype
        self.preprocess = preprocess
        self.y = y
        self.k = k
        self.temperature = temperature
        self.every = every
        self.batch_size = batch_size

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) % self.every:
            return
        emb = embed_inputs(net.module_.encoder, self.inputs, batch_size=self.batch_size,
                           device=net.device, preprocess=self.preprocess, dtype=self.dtype)
        acc = weighted_knn_accuracy(emb, self.y, k=self.k, temperature=self.temperature)
        net.history.record("knn_acc", acc)
