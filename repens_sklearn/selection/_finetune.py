"""FineTuneClassifier: a backbone plus a new linear head, fine-tuned end to end (skorch)."""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch import nn

from .._base import (
    BACKBONE_CONSTRAINTS,
    PARAMETER_CONSTRAINTS,
    TorchEstimatorMixin,
    fill_parameter_docs,
    seeded_init,
)
from .._compat import Interval, StrOptions, _fit_context
from .._composition import check_named_list
from .._compute import fast_inference, make_generator, run_in
from .._distributed import data_parallel, draw_shard
from .._inputs import (
    InputsDataset,
    InputsLoader,
    check_classification_y,
    keep_batch,
    make_loader,
    to_float,
)
from .._preprocess import preprocessing_or_identity
from ..exceptions import NonFiniteLossError, NonFiniteOutputError


class PaperSchedule:
    """Learning-rate factor of appendix A.1.1: linear warm-up for the first 20 % of
    the steps, full rate for the next 20 %, then x0.1 at 40 %, 60 % and 80 %.

    A picklable ``lr_lambda`` for ``torch.optim.lr_scheduler.LambdaLR`` stepped
    once per batch.
    """

    def __init__(self, total_steps):
        self.total_steps = int(total_steps)

    def __call__(self, step):
        interval = max(1.0, 0.2 * self.total_steps)
        if step < interval:
            return (step + 1) / interval
        return 0.1 ** int((step - interval) // interval)


class _Constant:
    def __call__(self, step):
        return 1.0


class _FineTuneModule(nn.Module):
    """Preprocessing -> backbone -> linear head, on the batch's device.

    Train-time augmentation is drawn on [0, 1] images at the backbone's
    resolution, between the pretrained preprocessing's resize and its
    standardization (an identity without ``pretrained_cfg``).
    """

    # (offset, total) in data-parallel training: the batch holds rows offset.. of a global
    # batch of total, and draws the augmentations they get in one process
    shard = None

    def __init__(
        self,
        backbone,
        embedding_dim,
        n_classes,
        policy=None,
        seed=0,
        preprocessor=None,
        head_init="default",
    ):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(embedding_dim, n_classes)
        if head_init == "zeros":  # BiT: a zero head starts every class at the same logit
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.policy = policy
        self.seed = seed
        self.preprocessor = preprocessing_or_identity(preprocessor)
        self._generator = None

    def forward(self, x):
        x = self.preprocessor.prepare(to_float(x))
        if self.training and self.policy is not None:
            if self._generator is None or self._generator.device != x.device:
                self._generator = make_generator(self.seed, x.device)
            x = draw_shard(self.policy, x, self._generator, self.shard)
        return self.head(self.backbone(self.preprocessor.standardize(x)).flatten(1))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_generator"] = None  # generators do not pickle; a fresh one is seeded on use
        return state


class _FiniteLossNet(NeuralNetClassifier):
    """skorch's classifier, stopped with ``NonFiniteLossError`` as soon as the loss diverges.

    The training loss is checked before ``backward``, so no NaN gradient reaches the
    weights; the message names the step and the learning rate (as EnSiam's does).
    ``total_steps`` (set by ``FineTuneClassifier.fit``) completes the step count.
    """

    total_steps = None
    inference_dtype = None  # set by FineTuneClassifier.predict_proba (its precision)
    # a repens_sklearn._distributed.DataParallel in data-parallel training (set by fit);
    # batch_size is then the global batch, iterator_train__batch_size this rank's share
    data_parallel = None
    ddp_forward_ = None

    def initialize(self):
        super().initialize()
        dp = self.data_parallel
        self.ddp_forward_ = None if dp is None else dp.wrap(self.module_)
        return self

    def release_data_parallel(self):
        """Drop the process group's objects (DDP does not pickle): a plain fitted net."""
        self.data_parallel = self.ddp_forward_ = None
        self.module_.shard = None

    def infer(self, x, **fit_params):
        if self.ddp_forward_ is None or not self.module_.training:
            return super().infer(x, **fit_params)
        return self.ddp_forward_(to_tensor(x, device=self.device), **fit_params)

    def train_step_single(self, batch, **fit_params):
        """skorch's step; data-parallel, the loss is the global batch's (checked and
        recorded on every rank) and the gradients, averaged by DDP, are those of it."""
        dp = self.data_parallel
        if dp is None:
            return super().train_step_single(batch, **fit_params)
        self.module_.train()
        self.criterion_.train()
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        reported, weight = dp.global_mean(loss, len(yi), self.batch_size)
        self._check_finite_loss(reported)
        (loss * weight).backward()
        return {"loss": reported, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        dtype = self.inference_dtype
        if training or dtype is None or dtype == torch.float32:
            return super().evaluation_step(batch, training=training)
        step = super().evaluation_step  # float32 logits: skorch's numpy has no bf16
        return run_in(dtype, self.device, lambda: step(batch, training=training))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and self.data_parallel is None:  # else: the global loss, every rank
            self._check_finite_loss(loss)
        return loss

    def _check_finite_loss(self, loss):
        if not torch.isfinite(loss):
            of = "" if self.total_steps is None else f" of {self.total_steps}"
            raise NonFiniteLossError(
                f"FineTuneClassifier: the training loss became {loss.item()} at step "
                f"{_steps_done(self.history)}{of} with learning rate "
                f"{self.optimizer_.param_groups[0]['lr']:g} at that step (lr={self.lr:g}); "
                "the training diverged: lower lr or momentum, or scale the inputs"
            )


def _steps_done(history):
    """Optimiser steps begun so far (the current one included)."""
    return sum(len(row["batches"]) for row in history)


@fill_parameter_docs
class FineTuneClassifier(TorchEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fine-tune a backbone with a new linear head (cross-entropy, SGD with momentum).

    Step 2 of the paper's algorithm (section 2.3 and appendix A.1.1): a new
    dense layer with one unit per class is added to the backbone's final
    representation and the whole model is trained by minimising the
    categorical cross-entropy with SGD and momentum. The default schedule is
    the paper's: linear warm-up over the first 20 % of the steps, then decay by
    x0.1 at each further 20 % interval (full rate in 20-40 %, then 0.1, 0.01,
    0.001). The paper's default sweep is learning rates {0.1, 0.01} x
    {2,500, 10,000} steps at batch size 512 and momentum 0.99; see
    :func:`make_finetune_sweep`.

    Training runs through a skorch ``NeuralNetClassifier`` built in ``fit``
    (``net_``) with a ``LambdaLR`` stepped every batch by skorch's
    ``LRScheduler`` callback.

    Cost: ``max_steps * batch_size`` forward and backward passes. The defaults
    (the paper's 2,500 steps of 512 images: 1.28 million passes) are meant for a
    GPU: on one CPU core EfficientNet-Lite0 takes about 0.14 s per image at 224 px
    (some 50 hours for the defaults) and 18 ms at 64 px (some 6 hours), measured
    on a shared x86_64 core in December 2026. On a CPU, start with a few hundred
    steps of 32 images and ``img_size=64``; ``verbose=1`` shows the ETA.

    Parameters
    ----------
    {backbone}
    {backbone_params}
    {lr}
        It is the peak of the ``schedule`` (paper sweep: 0.1 and 0.01).
    max_steps : int, default=2500
        Optimiser steps (paper sweep: 2,500 and 10,000).
    {batch_size}
        Samples per optimiser step (paper: 512).
    schedule : {"paper", "constant"} or callable, default="paper"
        Learning-rate factor per step; a callable ``f(step) -> factor`` is
        used as the ``lr_lambda`` of ``LambdaLR`` (it must pickle to pickle
        the model).
    {momentum}
        The paper used 0.99 at batch size 512, as :func:`make_finetune_sweep`
        does.
    {weight_decay}
    recalibrate_bn : bool, default=True
        After training, re-estimate the BatchNorm running statistics with one
        pass over the (un-augmented) training data
        (``torch.optim.swa_utils.update_bn``). Short fine-tuning runs move the
        weights far faster than running statistics with a small momentum
        follow (TF-ported networks such as EfficientNet-Lite use 0.01): on
        digits, EfficientNet-Lite0 fine-tuned 30 steps at lr 0.1 predicts at
        0.16 test accuracy with its stale statistics and 0.89 recalibrated.
        No effect on networks without BatchNorm.
    head_init : {"default", "zeros"}, default="default"
        Initialisation of the new head: PyTorch's ``nn.Linear`` default, or
        zeros as in BiT ("Big Transfer (BiT): General Visual Representation
        Learning", sec. 3.3), which :func:`make_finetune_sweep` uses.
    {policy}
        Train-time augmentation of every batch; None trains on the inputs as
        they are.
    {policy_params}
    {preprocess}
    {img_size}
    {crop_pct}
    {input_shape}
    {num_workers}
    {device}
    {precision}
        It applies to predictions (``predict_proba``), checked on the
        fine-tuned network; training runs in float32
        (bf16 fine-tuning is not validated).
    {random_state}
        It seeds the head, a backbone built from a name, the batch order and the
        augmentations.
    {verbose}
        1 (or True): a progress bar over the ``max_steps`` steps with the loss
        and an ETA (a plain line every 30 s where stderr is not a terminal);
        2 and more: also skorch's epoch table.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (any labels, e.g. strings).
    net_ : skorch.NeuralNetClassifier
        The trained network (module ``net_.module_``: backbone + head).
    embedding_dim_ : int
        Width of the backbone's embedding.
    n_features_in_ : int
        Number of features seen during fit.
    input_shape_ : tuple
        Shape of one sample seen during fit.
    precision_ : {"float32", "bfloat16", "float16"}
        The arithmetic of ``predict / predict_proba`` (``precision`` resolved at fit).
    precision_agreement_ : float
        Least cosine of the network's bf16 to its float32 outputs on the check
        batch of ``precision="auto"``; NaN where no check ran.

    See Also
    --------
    make_finetune_sweep : the paper's 2 x 2 sweep for several backbones.
    GreedyEnsembleClassifier : ensembles the fine-tuned models.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from repens_sklearn import FineTuneClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = FineTuneClassifier("mlp", lr=0.1, max_steps=100, batch_size=32,
    ...                          random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        **BACKBONE_CONSTRAINTS,
        "lr": PARAMETER_CONSTRAINTS["lr"],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "schedule": [StrOptions({"paper", "constant"}), callable],
        "momentum": PARAMETER_CONSTRAINTS["momentum"],
        "weight_decay": PARAMETER_CONSTRAINTS["weight_decay"],
        "policy": [*PARAMETER_CONSTRAINTS["policy"], None],  # None: no augmentation
        "head_init": [StrOptions({"default", "zeros"})],
        "recalibrate_bn": ["boolean"],
    }

    def __init__(
        self,
        backbone,
        *,
        backbone_params=None,
        lr=0.01,
        max_steps=2500,
        batch_size=512,
        schedule="paper",
        momentum=0.9,
        weight_decay=0.0,
        recalibrate_bn=True,
        head_init="default",
        policy=None,
        policy_params=None,
        preprocess=True,
        img_size=None,
        crop_pct=None,
        input_shape=None,
        num_workers=0,
        device="auto",
        precision="auto",
        random_state=None,
        verbose=False,
    ):
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.lr = lr
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.schedule = schedule
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.recalibrate_bn = recalibrate_bn
        self.head_init = head_init
        self.policy = policy
        self.policy_params = policy_params
        self.preprocess = preprocess
        self.img_size = img_size
        self.crop_pct = crop_pct
        self.input_shape = input_shape
        self.num_workers = num_workers
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fine-tune the backbone and a new head on ``(X, y)`` for ``max_steps`` steps.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : FineTuneClassifier

        Raises
        ------
        repens_sklearn.exceptions.NonFiniteLossError
            When the training diverges: the loss becomes NaN or infinite (the
            message names the step and the learning rate), or the weights do
            after the last step. The estimator is then left unfitted.
        """
        dp = data_parallel()  # torchrun: this process's share of each batch
        seed = self._seed() if dp is None else dp.broadcast_object(self._seed())
        try:
            self._fit(X, y, seed, dp)
        except NonFiniteLossError:
            self._forget_fit()  # a diverged model must not look fitted (NaN predictions)
            raise
        return self

    def _fit(self, X, y, seed, dp=None):
        inputs, backbone = self._fit_backbone(X, seed=seed)
        y_idx = self._encode_y(y, inputs.n_samples)
        policy = self._resolve_policy(allow_none=True)
        if policy is not None:
            self._check_policy_keeps_shape(policy, self._prepare(inputs.example()))
        with seeded_init(seed + 1):  # the head's draws must not repeat the backbone's
            module = _FineTuneModule(
                backbone,
                self.embedding_dim_,
                len(self.classes_),
                policy,
                seed,
                self.preprocessor_,
                self.head_init,
            )
        device = self._resolved_device()
        net = _FiniteLossNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.SGD,
            optimizer__momentum=self.momentum,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=1,
            batch_size=self.batch_size,
            iterator_train=InputsLoader,  # workers start inside joblib workers too
            iterator_valid=InputsLoader,
            iterator_train__shuffle=False,  # the step order is drawn in _step_order
            iterator_train__collate_fn=keep_batch,
            iterator_valid__collate_fn=keep_batch,
            iterator_train__num_workers=self.num_workers,
            iterator_valid__num_workers=self.num_workers,
            train_split=None,
            classes=list(range(len(self.classes_))),
            callbacks=self._callbacks(),
            device=str(device),
            verbose=int(self.verbose >= 2),  # skorch's epoch table; the bar is ours
        )
        net.total_steps = self.max_steps
        order = _step_order(inputs.n_samples, self.max_steps * self.batch_size, seed)
        if dp is not None:
            order = self._share_steps(order, net, dp)
        with seeded_init(seed):  # dropout etc. reproducible without touching global state
            net.fit(InputsDataset(inputs, y_idx, order), None)
        self.net_ = net
        if dp is not None:
            net.release_data_parallel()
        if self.recalibrate_bn:
            self._recalibrate_batchnorm(inputs, device)
        if dp is not None:  # every rank returns rank 0's model and history
            dp.broadcast_module(net.module_)
            net.history = dp.broadcast_object(net.history)
        self._check_finite_state()
        self._choose_precision(net.module_, inputs, device, lambda x: x, logits=True)

    def _share_steps(self, order, net, dp):
        """This rank's rows of every step's global batch of ``batch_size`` samples."""
        dp.check_batches([self.batch_size], "FineTuneClassifier")
        offset, size = dp.share(self.batch_size)
        net.data_parallel = dp
        net.set_params(
            iterator_train__batch_size=size,
            callbacks=dp.rank_callbacks(net.callbacks),  # rank 0 alone prints
            verbose=net.verbose if dp.is_main else 0,
        )
        net.module.shard = (offset, self.batch_size)
        return order.reshape(self.max_steps, self.batch_size)[:, offset : offset + size].ravel()

    def _check_finite_state(self):
        """The last step (or the BatchNorm pass) can overflow the weights with a finite loss."""
        module = self.net_.module_
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteLossError(
                    f"FineTuneClassifier: the network's {name!r} is not finite after step "
                    f"{self.max_steps} of {self.max_steps} (lr={self.lr:g}); the training "
                    "diverged: lower lr or momentum, or scale the inputs"
                )

    def _forget_fit(self):
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    @torch.no_grad()
    def _recalibrate_batchnorm(self, inputs, device):
        """BatchNorm running statistics re-estimated on the plain training data."""
        from torch.optim.swa_utils import update_bn

        module = self.net_.module_
        policy, module.policy = module.policy, None  # statistics of the plain inputs
        try:
            loader = make_loader(
                InputsDataset(inputs), self.batch_size, num_workers=self.num_workers, device=device
            )
            update_bn(loader, module, device=device)
        finally:
            module.policy = policy
            module.eval()

    def _encode_y(self, y, n_samples):
        _, self.classes_, y_idx = check_classification_y(self, y, n_samples)
        return y_idx

    def _callbacks(self):
        from skorch.callbacks import LRScheduler

        from .._progress import StepProgress

        if callable(self.schedule):
            factor = self.schedule
        else:
            factor = PaperSchedule(self.max_steps) if self.schedule == "paper" else _Constant()
        callbacks = [
            (
                "lr_schedule",
                LRScheduler(
                    policy=torch.optim.lr_scheduler.LambdaLR, lr_lambda=factor, step_every="batch"
                ),
            )
        ]
        if self.verbose:  # one bar over every step (skorch's restarts each epoch)
            callbacks.append(("progress", StepProgress(self.max_steps, "FineTuneClassifier")))
        return callbacks

    def predict_proba(self, X):
        """Softmax class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image sources
            Inputs shaped like the training inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.

        Raises
        ------
        repens_sklearn.exceptions.NonFiniteOutputError
            When the network's logits overflow (NaN / infinite probabilities).
        """
        check_is_fitted(self)
        inputs = self._transform_inputs(X)
        no_labels = np.zeros(inputs.n_samples, dtype=np.int64)  # skorch's datasets yield (X, y)
        device = torch.device(self.net_.device)
        dtype, channels_last = self._inference_settings(self.net_.module_, device)
        self.net_.inference_dtype = dtype
        with fast_inference(self.net_.module_, device, dtype, channels_last=channels_last):
            proba = np.asarray(
                self.net_.predict_proba(InputsDataset(inputs, no_labels)), dtype=np.float64
            )
        bad = ~np.isfinite(proba).all(axis=1)
        if bad.any():  # argmax of a NaN row would silently say classes_[0]
            raise NonFiniteOutputError(
                f"FineTuneClassifier: the network's outputs are not finite for "
                f"{int(bad.sum())} of {len(proba)} samples (first: sample "
                f"{int(np.argmax(bad))}): its logits overflow, because its training "
                f"diverged (lr={self.lr:g}) or these inputs are far larger than the training data"
            )
        return proba / proba.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 +- 1e-7

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image sources
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def as_backbone(self):
        """A copy of the fine-tuned backbone (eval mode, CPU), e.g. for an embedder.

        Its ``pretrained_cfg`` describes the preprocessing it was fine-tuned with.
        """
        check_is_fitted(self)
        return self._export_backbone(self.net_.module_.backbone)


def _step_order(n_samples, n_draws, seed):
    rng = np.random.default_rng(seed)
    n_perms = math.ceil(n_draws / n_samples)
    return np.concatenate([rng.permutation(n_samples) for _ in range(n_perms)])[:n_draws]


# "Deep Ensembles for Low-Data Transfer Learning", appendix A.1.1: SGD with momentum 0.99,
# a new zero-initialised head (BiT), BiT-HyperRule train-time augmentation: resize to
# 512, random 480 crop (93.75 % of each side), random horizontal flip.
PAPER_RECIPE = {
    "momentum": 0.99,
    "head_init": "zeros",
    "policy": "crop_flip",
    "policy_params": {"scale": ((480 / 512) ** 2,) * 2, "ratio": (1.0, 1.0), "flip_p": 0.5},
}


def make_finetune_sweep(backbones, lrs=(0.1, 0.01), steps=(2500, 10000), *, augment=True, **params):
    """The paper's default fine-tuning sweep for several backbones (appendix A.1.1).

    Every backbone is fine-tuned with every learning rate and schedule length
    (paper: {0.1, 0.01} x {2,500, 10,000} steps, i.e. L = 4K models for K
    backbones); the result feeds :class:`GreedyEnsembleClassifier`. Each model
    follows the paper's recipe ("Deep Ensembles for Low-Data Transfer
    Learning", appendix A.1.1): SGD with momentum 0.99, a new head
    initialised to zeros as in BiT, and BiT-HyperRule's train-time random
    crop (480 of 512 pixels) and horizontal flip (:data:`PAPER_RECIPE`).

    Parameters
    ----------
    backbones : list, or fitted TransferabilitySelector
        Backbones as names / modules / fitted embedders (named after themselves
        or ``backbone0``, ``backbone1``, ...), ``(name, backbone)`` pairs, or a
        fitted :class:`TransferabilitySelector` whose selected candidates are used.
    lrs : sequence of float, default=(0.1, 0.01)
        Learning rates.
    steps : sequence of int, default=(2500, 10000)
        Schedule lengths in optimiser steps.
    augment : bool, default=True
        BiT-HyperRule's crop and flip during training (image data only); False
        trains on the inputs as they are (vector data, or to turn it off).
    **params
        Other :class:`FineTuneClassifier` parameters, shared by all; they
        override the paper's recipe (e.g. ``momentum=0.9``).

    Returns
    -------
    estimators : list of (str, FineTuneClassifier)
        Named ``"<backbone>-lr<lr>-steps<steps>"``.

    Examples
    --------
    >>> from repens_sklearn import make_finetune_sweep
    >>> sweep = make_finetune_sweep(["mlp"], steps=(100, 400), augment=False)
    >>> [name for name, _ in sweep]
    ['mlp-lr0.1-steps100', 'mlp-lr0.1-steps400', 'mlp-lr0.01-steps100', 'mlp-lr0.01-steps400']
    >>> sweep[0][1].momentum, sweep[0][1].head_init
    (0.99, 'zeros')
    """
    recipe = dict(PAPER_RECIPE)
    if not augment:
        recipe.update(policy=None, policy_params=None)
    named = _named_backbones(backbones)
    sweep = []
    for name, backbone in named:
        extra = {}
        if isinstance(backbone, _FromCandidate):
            backbone, extra = backbone.backbone, backbone.params
        for lr in lrs:
            for n in steps:
                est = FineTuneClassifier(
                    backbone, lr=lr, max_steps=n, **{**recipe, **extra, **params}
                )
                sweep.append((f"{name}-lr{lr:g}-steps{n}", est))
    return sweep


def _named_backbones(backbones):
    if hasattr(backbones, "selected_candidates_"):
        return [(name, _candidate_backbone(c)) for name, c in backbones.selected_candidates_]
    if isinstance(backbones, (str, nn.Module)) or not hasattr(backbones, "__iter__"):
        backbones = [backbones]
    named = [_named_backbone(i, item) for i, item in enumerate(backbones)]
    return check_named_list(named, "backbones", "backbone")


def _named_backbone(i, item):
    """A ``(name, backbone)`` pair as it is; a bare backbone named after itself or its place."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item
    return (item if isinstance(item, str) else f"backbone{i}", item)


class _FromCandidate:
    """A selected candidate's backbone and the parameters it was embedded with."""

    def __init__(self, backbone, params):
        self.backbone, self.params = backbone, params


def _candidate_backbone(candidate):
    """A selected candidate as a backbone: what it embeds with (name or module), or its module."""
    backbone = getattr(candidate, "backbone", None)
    if isinstance(backbone, (str, nn.Module)):
        params = {}
        for key in ("backbone_params", "input_shape", "preprocess", "img_size", "crop_pct"):
            if getattr(candidate, key, None) is not None:
                params[key] = getattr(candidate, key)
        return _FromCandidate(backbone, params)
    if callable(getattr(candidate, "as_backbone", None)):
        # The module itself, not the fitted estimator: clone() (GridSearchCV,
        # GreedyEnsembleClassifier) would reset a fitted estimator parameter.
        return candidate.as_backbone()
    raise TypeError(
        f"selected candidate {type(candidate).__name__} cannot be fine-tuned: it neither "
        "embeds with a backbone name / nn.Module nor has as_backbone()"
    )
