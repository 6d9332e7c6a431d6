"""EnSiamPretrainer: self-supervised pretraining with ensemble targets.

Han & Lee, "EnSiam: Self-Supervised Learning With Ensemble Representations".
"""

from __future__ import annotations

import json
import os
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._base import (
    BACKBONE_CONSTRAINTS,
    PARAMETER_CONSTRAINTS,
    TRAINING_CONSTRAINTS,
    TorchEstimatorMixin,
    fill_parameter_docs,
    module_on,
    seeded_init,
)
from .._compat import Interval, StrOptions, _fit_context
from .._distributed import convert_sync_batchnorm, data_parallel, revert_sync_batchnorm
from .._fingerprint import fingerprint, run_differences, run_identity
from .._inputs import InputsDataset
from .._warnings import warn
from ._losses import TARGETS, SiameseLoss
from ._modules import SiameseNetwork
from ._net import (
    CollapseMonitor,
    KNNMonitor,
    NonFiniteLossError,
    SiameseNet,
    WarmupCosineLR,
)

# EnSiam paper sec. 4.1: 10 warm-up epochs of 200, i.e. 1/20 of the run.
_PAPER_WARMUP_FRACTION = 10 / 200
_CONFIG_FILE = "ensiam_config.json"
# The files of a checkpoint (skorch Checkpoint's f_* arguments), named here so that resuming
# needs no private skorch API to list them.
_CHECKPOINT_FILES = {
    "f_params": "params.pt",
    "f_optimizer": "optimizer.pt",
    "f_criterion": None,
    "f_history": "history.json",
    "f_rng": "rng.pt",
}


@fill_parameter_docs
class EnSiamPretrainer(
    TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Self-supervised pretraining of a backbone with EnSiam or SimSiam K-aug.

    Each sample gets ``n_views`` (K) augmented views; they pass through the
    encoder, a projection MLP (``f``) and a prediction MLP (``g``). With
    ``target="ensemble"`` (EnSiam paper eq. 4-5) every view's prediction
    is pulled towards the stop-gradient *mean* projection of the K views:
    ``L = (1/K) sum_k D(g_k, sg(mean_k f_k))``, ``D`` the negative cosine.
    With ``target="pair"`` (SimSiam K-aug, eq. 2) view ``k`` predicts the
    projection of its partner (1<->2, 3<->4, ...); ``n_views=2,
    target="pair"`` is SimSiam. After ``fit``, :meth:`transform` returns the
    encoder's embeddings and :meth:`as_backbone` hands the trained encoder to
    other estimators (``MeanTTAEmbedder(backbone=pretrainer)``).

    Cost: ``max_epochs * n_views`` forward and backward passes per sample. The
    paper's defaults (ResNet-18, K=4, 200 epochs) are meant for a GPU: on one
    CPU core ResNet-18 (CIFAR) takes about 34 ms per 32 px view (measured on a
    shared x86_64 core in December 2026), so 200 epochs of CIFAR-10's 50,000
    images would take some 15 days. On a CPU, start with a small backbone
    (``"convnet_small"``) and a few epochs; ``verbose=1`` shows the ETA.

    Parameters
    ----------
    {backbone}
        It is the encoder. The EnSiam paper (sec. 4.1) uses ResNet-18 with a 3x3
        stride-1 stem and no max-pool for small images (the default).
    {backbone_params}
    n_views : int, default=4
        K, the augmented views per sample (>= 2; even for ``target="pair"``).
        The paper's default is 4 (sec. 4.1).
    target : {"ensemble", "pair"}, default="ensemble"
        ``"ensemble"``: EnSiam; ``"pair"``: SimSiam K-aug.
    {policy}
        It draws the K views of every sample.
    {policy_params}
    projector_layers : int, default=2
        Layers of the projection MLP: 2 for small data, 3 for ImageNet (sec. 4.1).
    projector_dim : int, default=2048
        Width of the projection MLP's layers and of the projections (sec. 4.1).
    predictor_hidden_dim : int, default=512
        Bottleneck width of the 2-layer prediction MLP (sec. 4.1).
    {max_epochs}
        The paper pretrains 200 (sec. 4.1).
    {batch_size}
        Samples per step (each gives K views); capped at the number of samples.
    base_lr : float, default=0.1
        SGD learning rate is ``base_lr * batch_size / 256`` (sec. 4.1).
    {momentum}
        0.9 in the paper (sec. 4.1).
    {weight_decay}
        SGD's, 1e-4 in the paper (sec. 4.1).
    warmup_epochs : float, default=10
        Linear warm-up before the cosine schedule (sec. 4.1: 10 of 200 epochs).
        Short runs scale it down to the paper's ratio:
        ``min(warmup_epochs, max_epochs / 20)``.
    fix_predictor_lr : bool, default=False
        Keep the predictor's learning rate at the peak ``lr_`` instead of
        following the warm-up + cosine schedule (SimSiam's ``fix_pred_lr``,
        "Exploring Simple Siamese Representation Learning" sec. 4.2 / its
        reference code).
    bn_per_view : bool, default=False
        Forward each of the K views through the network on its own, so
        BatchNorm normalizes each view's batch separately, as SimSiam's
        reference code does; False forwards all K x B views in one pass
        (BatchNorm statistics over every view; faster).
    sync_batchnorm : bool, default=True
        In data-parallel training (``torchrun``, see :func:`~repens_sklearn.init_distributed`)
        BatchNorm normalizes over the global batch of all processes, as SimSiam
        does on several GPUs ("Exploring Simple Siamese Representation Learning",
        appendix A: SyncBN); False normalizes each process's share. No effect in
        one process.
    {preprocess}
    {img_size}
    {crop_pct}
    {input_shape}
    {num_workers}
    {device}
    {precision}
        Training: ``"auto"`` is bfloat16 autocast on CUDA GPUs that compute it
        natively and float32 elsewhere (bf16 training on CPUs is not
        validated); ``"float32"`` and ``"bfloat16"`` force it, ``"float16"``
        trains in float32 (fp16 gradients need loss scaling). ``transform``
        follows the rule above, checked on the trained encoder; the kNN
        monitor, run during ``fit``, the training rule.
    {random_state}
        It seeds the initialisation, the views and the batch order.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks for the skorch net (``(name, callback)`` pairs or callbacks).
    checkpoint_dir : str or path-like, default=None
        Directory for a checkpoint after every epoch (weights, optimizer,
        history and random state). ``fit`` resumes from a checkpoint found
        there and trains only the remaining epochs, reaching the same weights
        as an uninterrupted run with the same seed. A checkpoint is resumed only
        for the same run: all of X (image files by path, size and modification
        time), the weights of a module or fitted backbone, a weights file's
        content and every other parameter (the runtime ones - ``device``,
        ``verbose``, ``num_workers``, ``callbacks``, ``checkpoint_dir`` - aside, also
        in a fitted backbone: the rule of a resumed ``embed_files``); another run's
        is refused, naming what differs.
    {verbose}
        0: silent; 1: a progress bar over every step of the run with the loss
        and an ETA (a plain line every 30 s where stderr is not a terminal);
        2: also skorch's per-epoch table and a bar while embedding.

    Attributes
    ----------
    net_ : SiameseNet
        The fitted skorch net (``net_.module_`` holds encoder, projector, predictor).
    history_ : skorch.History
        Per-epoch ``train_loss``, ``collapse_std``, ``knn_acc`` (with ``X_val``),
        and per-batch ``lr``.
    n_epochs_ : int
        Completed epochs (fewer than ``max_epochs`` after Ctrl-C).
    embedding_dim_ : int
        Width of the encoder's embeddings, the output of :meth:`transform`.
    effective_batch_size_ : int
        ``min(batch_size, n_samples)``.
    lr_ : float
        Peak learning rate ``base_lr * effective_batch_size_ / 256``.
    n_features_in_ : int
        Number of features (pixels) of a sample seen in ``fit``.
    input_shape_ : tuple
        Shape of one sample seen in ``fit``.
    precision_ : {"float32", "bfloat16", "float16"}
        The arithmetic of ``transform`` (``precision`` resolved at fit).
    precision_agreement_ : float
        Least cosine of the encoder's bf16 to its float32 outputs on the check
        batch of ``precision="auto"``; NaN where no check ran.

    See Also
    --------
    repens_sklearn.MeanTTAEmbedder : embeds with test-time augmentation; takes a
        fitted pretrainer as its backbone.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn import EnSiamPretrainer
    >>> X = np.random.default_rng(0).normal(size=(64, 10)).astype("float32")
    >>> pre = EnSiamPretrainer("mlp", policy="gaussian_noise", max_epochs=2,
    ...                        projector_dim=32, predictor_hidden_dim=8, random_state=0)
    >>> pre.fit_transform(X).shape
    (64, 64)
    """

    _parameter_constraints = {
        **BACKBONE_CONSTRAINTS,
        **TRAINING_CONSTRAINTS,
        "n_views": [Interval(Integral, 2, None, closed="left")],
        "target": [StrOptions(set(TARGETS))],
        "projector_layers": [Interval(Integral, 1, None, closed="left")],
        "projector_dim": [Interval(Integral, 1, None, closed="left")],
        "predictor_hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "base_lr": [Interval(Real, 0, None, closed="left")],
        "weight_decay": PARAMETER_CONSTRAINTS["weight_decay"],
        "warmup_epochs": [Interval(Real, 0, None, closed="left")],
        "fix_predictor_lr": ["boolean"],
        "bn_per_view": ["boolean"],
        "sync_batchnorm": ["boolean"],
        "callbacks": [list, None],
        "checkpoint_dir": [str, os.PathLike, None],
    }

    def __init__(
        self,
        backbone="resnet18_cifar",
        *,
        backbone_params=None,
        n_views=4,
        target="ensemble",
        policy="simsiam",
        policy_params=None,
        projector_layers=2,
        projector_dim=2048,
        predictor_hidden_dim=512,
        max_epochs=200,
        batch_size=256,
        base_lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        warmup_epochs=10,
        fix_predictor_lr=False,
        bn_per_view=False,
        sync_batchnorm=True,
        preprocess=True,
        img_size=None,
        crop_pct=None,
        input_shape=None,
        num_workers=0,
        device="auto",
        precision="auto",
        random_state=None,
        callbacks=None,
        checkpoint_dir=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.n_views = n_views
        self.target = target
        self.policy = policy
        self.policy_params = policy_params
        self.projector_layers = projector_layers
        self.projector_dim = projector_dim
        self.predictor_hidden_dim = predictor_hidden_dim
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.base_lr = base_lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.fix_predictor_lr = fix_predictor_lr
        self.bn_per_view = bn_per_view
        self.sync_batchnorm = sync_batchnorm
        self.preprocess = preprocess
        self.img_size = img_size
        self.crop_pct = crop_pct
        self.input_shape = input_shape
        self.num_workers = num_workers
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, X_val=None, y_val=None):
        """Pretrain the encoder on X (labels are not used).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or image array / list
            Training samples (vectors, images, or image files).
        y : None
            Ignored; present for API consistency.
        X_val, y_val : array-like, default=None
            Labelled held-out data: if given, the weighted cosine kNN accuracy
            (leave-one-out, k=200) of the encoder is recorded as ``knn_acc``
            in ``history_`` after every epoch.

        Returns
        -------
        self : EnSiamPretrainer
        """
        self._check_views()
        dp = data_parallel()  # torchrun: this process's share of each batch
        seed = self._run_seed() if dp is None else dp.broadcast_object(self._run_seed())
        inputs, encoder = self._fit_backbone(X, seed=seed)
        if inputs.n_samples < 2:
            raise ValueError(
                f"EnSiamPretrainer needs at least 2 samples to train (BatchNorm in the projector "
                f"normalizes over a batch); got {inputs.n_samples} sample"
            )
        policy = self._resolve_policy()
        self._check_policy_keeps_shape(policy, self._prepare(inputs.example()))
        checkpoint = self._checkpoint()
        module = self._build_module(encoder, seed)
        if dp is not None and self.sync_batchnorm:
            convert_sync_batchnorm(module, self._resolved_device())
        self.net_ = self._build_net(
            module, policy, inputs.n_samples, X_val, y_val, checkpoint, seed, dp
        )
        done = self._resume(checkpoint, X, inputs, seed, dp)
        self._train(InputsDataset(inputs), done, checkpoint)
        self._end_data_parallel(dp)
        self._record_run()
        self._choose_precision(self.net_.module_.encoder, inputs, self._resolved_device())
        return self

    def _check_views(self):
        if self.target == "pair" and self.n_views % 2:
            raise ValueError(
                f"target='pair' (SimSiam K-aug) pairs views 1<->2, 3<->4, ...: n_views must "
                f"be even, got n_views={self.n_views}"
            )

    def _build_module(self, encoder, seed):
        """The SimSiam network around ``encoder``: projector and predictor."""
        with seeded_init(seed + 1):  # projector/predictor draws must not repeat the encoder's
            return SiameseNetwork(
                encoder,
                self.embedding_dim_,
                self.projector_dim,
                self.projector_layers,
                self.predictor_hidden_dim,
                self.preprocessor_,
            )

    def _build_net(self, module, policy, n_samples, X_val, y_val, checkpoint, seed, dp=None):
        """The initialised skorch net (sets ``effective_batch_size_`` and ``lr_``)."""
        self.effective_batch_size_ = int(min(self.batch_size, n_samples))
        self.lr_ = self.base_lr * self.effective_batch_size_ / 256  # sec. 4.1
        callbacks = self._callbacks(n_samples, X_val, y_val, checkpoint)
        verbose = int(self.verbose >= 2)  # skorch's epoch table; the bar is ours
        if dp is not None:
            dp.check_batches(
                [
                    self.effective_batch_size_,
                    n_samples % self.effective_batch_size_ or self.effective_batch_size_,
                ],
                "EnSiamPretrainer",
            )
            callbacks, verbose = dp.rank_callbacks(callbacks), verbose if dp.is_main else 0
        net = SiameseNet(
            module,
            criterion=SiameseLoss,
            criterion__n_views=self.n_views,
            criterion__target=self.target,
            optimizer=torch.optim.SGD,
            lr=self.lr_,
            optimizer__momentum=self.momentum,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=self.effective_batch_size_,
            train_split=None,
            callbacks__print_log=None,
            device=str(self._resolved_device()),
            callbacks=callbacks,
            data_parallel=dp,
            verbose=verbose,
            policy=policy,
            n_views=self.n_views,
            seed=seed,
            num_workers=self.num_workers,
            bn_per_view=self.bn_per_view,
            autocast_dtype=self._precision_dtype(self._resolved_device(), training=True),
            **self._predictor_lr_groups(),
        )
        return net.initialize()

    def _train(self, dataset, done, checkpoint):
        """The epochs left after ``done``; a diverged run leaves no usable-looking model."""
        try:
            if done < self.max_epochs:
                self.net_.partial_fit(dataset, None, epochs=self.max_epochs - done)
        except NonFiniteLossError as exc:
            kept = (
                f"; the last good checkpoint (epoch {done_epochs(self.net_.history)}) is "
                f"kept in {os.fspath(self.checkpoint_dir)!r}"
                if checkpoint
                else ""
            )
            for fitted in [name for name in vars(self) if name.endswith("_")]:
                delattr(self, fitted)  # the weights are not finite
            raise NonFiniteLossError(
                f"EnSiamPretrainer stopped: {exc}{kept}. Check the inputs and backbone, or "
                "lower base_lr (in a new checkpoint_dir: a checkpoint resumes only with the same "
                "settings)"
            ) from exc

    def _end_data_parallel(self, dp):
        """Every rank holds rank 0's weights and history, with plain BatchNorm layers."""
        if dp is None:
            return
        self.net_.release_data_parallel()
        revert_sync_batchnorm(self.net_.module_)
        dp.broadcast_module(self.net_.module_)
        self.net_.history = dp.broadcast_object(self.net_.history)

    def _record_run(self):
        """``history_`` and ``n_epochs_``; a warning when Ctrl-C cut the run short."""
        self.history_ = self.net_.history
        self.n_epochs_ = done_epochs(self.history_)
        if self.n_epochs_ < self.max_epochs:
            warn(
                f"EnSiamPretrainer.fit was interrupted after {self.n_epochs_} of "
                f"{self.max_epochs} epochs; the estimator holds the weights reached so far",
                UserWarning,
            )
        self.net_.module_.eval()

    def _callbacks(self, n_samples, X_val, y_val, checkpoint):
        from skorch.callbacks import PrintLog

        from .._progress import StepProgress

        steps_per_epoch = -(-n_samples // self.effective_batch_size_)
        warmup = min(self.warmup_epochs, self.max_epochs * _PAPER_WARMUP_FRACTION)
        callbacks = [
            (
                "lr_schedule",
                WarmupCosineLR(
                    self.lr_, self.max_epochs * steps_per_epoch, round(warmup * steps_per_epoch)
                ),
            ),
            ("collapse", CollapseMonitor()),
            *self._knn_callbacks(X_val, y_val),
            *self._user_callbacks(),
        ]
        if checkpoint is not None:
            callbacks.append(("checkpoint", checkpoint))
        if self.verbose:  # one bar over the whole run (skorch's restarts each epoch)
            callbacks.append(
                ("progress", StepProgress(self.max_epochs * steps_per_epoch, "EnSiamPretrainer"))
            )
        # last, so that the printed table holds every column recorded above
        return [*callbacks, ("log", PrintLog())]

    def _predictor_lr_groups(self):
        if not self.fix_predictor_lr:
            return {}
        return {"optimizer__param_groups": [("predictor.*", {"fix_lr": True})]}

    def _user_callbacks(self):
        from skorch.callbacks import Callback

        user = list(self.callbacks or [])
        for i, item in enumerate(user):
            callback = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            if not (
                isinstance(callback, Callback)
                or (isinstance(callback, type) and issubclass(callback, Callback))
            ):
                raise ValueError(
                    f"callbacks[{i}] must be a skorch Callback or a (name, Callback) pair, "
                    f"got {item!r}"
                )
        return user

    def _knn_callbacks(self, X_val, y_val):
        if X_val is None and y_val is None:
            return []
        if X_val is None or y_val is None:
            raise ValueError("the kNN monitor needs both X_val and y_val; got only one of them")
        inputs = self._transform_inputs(X_val)
        y_val = column_or_1d(y_val)
        if len(y_val) != inputs.n_samples:
            raise ValueError(
                f"y_val has {len(y_val)} labels but X_val has {inputs.n_samples} samples"
            )
        if inputs.n_samples < 2:
            raise ValueError("the kNN monitor needs at least 2 samples in X_val")
        dtype = self._precision_dtype(self._resolved_device())
        return [("knn", KNNMonitor(inputs, y_val, preprocessor=self.preprocessor_, dtype=dtype))]

    def _checkpoint(self):
        if self.checkpoint_dir is None:
            return None
        from skorch.callbacks import Checkpoint

        return Checkpoint(monitor=None, dirname=os.fspath(self.checkpoint_dir), **_CHECKPOINT_FILES)

    def _run_seed(self):
        """The run's seed; with ``random_state=None`` a checkpointed run keeps its own (resumes)."""
        if self.random_state is None and self.checkpoint_dir is not None:
            config_path = os.path.join(os.fspath(self.checkpoint_dir), _CONFIG_FILE)
            try:
                with open(config_path) as f:
                    saved = json.load(f)["seed"]["value"]
            except (OSError, ValueError, LookupError, TypeError):  # none or unreadable: _resume
                saved = None
            if isinstance(saved, int):
                return saved
        return self._seed()

    def _resume(self, checkpoint, X, inputs, seed, dp=None):
        """Load the checkpoint in ``checkpoint_dir`` if there is one; return the epochs done.

        A checkpoint is only resumed for the same settings and data (recorded in
        ``ensiam_config.json``), so a reused directory never silently returns
        another model. In data-parallel training every process reads it (a
        directory they share) and only rank 0 writes.
        """
        if checkpoint is None:
            return 0
        if dp is None:
            return self._load_checkpoint(checkpoint, X, inputs, seed)
        done = self._load_checkpoint(checkpoint, X, inputs, seed, write=False)
        dp.barrier()  # every rank has looked before rank 0 writes a new run's config
        if done is None and dp.is_main:
            self._load_checkpoint(checkpoint, X, inputs, seed)
        return dp.agree(
            done or 0,
            f"the epochs done in the checkpoint in checkpoint_dir="
            f"{os.fspath(self.checkpoint_dir)!r} (it must be a directory every "
            "process sees)",
        )

    def _load_checkpoint(self, checkpoint, X, inputs, seed, write=True):
        """The epochs done in a checkpoint of this run (loaded); a new run's config is written
        when there is none (None without ``write``)."""
        config = self._run_config(X, inputs, seed)
        config_path = os.path.join(checkpoint.dirname, _CONFIG_FILE)
        files = {
            key: os.path.join(checkpoint.dirname, name)
            for key, name in _CHECKPOINT_FILES.items()
            if name is not None
        }
        if not all(os.path.exists(f) for f in [config_path, *files.values()]):
            if not write:
                return None
            os.makedirs(checkpoint.dirname, exist_ok=True)
            with open(config_path, "w") as f:
                json.dump(config, f, indent=1)
            return 0
        with open(config_path) as f:
            saved = json.load(f)
        differences = run_differences(saved, config)
        if differences:
            raise ValueError(
                f"checkpoint_dir={os.fspath(self.checkpoint_dir)!r} holds a checkpoint of another "
                f"run: {differences}; remove it or use another directory"
            )
        try:
            self.net_.load_params(**files)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"checkpoint_dir={os.fspath(self.checkpoint_dir)!r} holds a checkpoint that does "
                f"not fit this estimator's settings (remove it or use another directory): {exc}"
            ) from exc
        return done_epochs(self.net_.history)

    def _run_config(self, X, inputs, seed):
        """What must match for a checkpoint to be resumed: settings, seed and data.

        :func:`~repens_sklearn._fingerprint.run_identity`, the rule of every resumed
        run: each parameter but the runtime ones by its fingerprint (a module or
        fitted backbone by its weights, a weights file by its content), the data
        by a fingerprint of all of X (image files by path, size and modification time).
        """
        return run_identity(
            self,
            seed=seed,
            n_samples=inputs.n_samples,
            sample_shape=list(inputs.sample_shape),
            data=fingerprint(X),
        )

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Encoder embeddings of X (eval mode, batched).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or image array / list
            Samples of the kind seen in ``fit`` (vectors, images, or image files).

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim_)
            The encoder's embeddings, float32.
        """
        check_is_fitted(self, "net_")
        inputs = self._transform_inputs(X)
        device = self._resolved_device()
        encoder = module_on(self.net_.module_.encoder, device)
        return self._embed(
            encoder, inputs, device, desc="EnSiam embedding", verbose=self.verbose >= 2
        )

    def as_backbone(self):
        """A deep copy of the trained encoder (eval mode, CPU) with ``.embedding_dim``."""
        check_is_fitted(self, "net_")
        return self._export_backbone(self.net_.module_.encoder)

    @property
    def _n_features_out(self):
        return self.embedding_dim_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.allow_nan = False
        return tags


def done_epochs(history):
    """Epochs that ran to the end (an interrupted epoch has no ``train_loss``)."""
    return int(sum("train_loss" in row for row in history))
