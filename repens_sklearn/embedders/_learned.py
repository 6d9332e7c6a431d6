"""LearnedEnsembleEmbedder: representations learned by gradient descent from an ensemble."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import normalize as _l2_normalize
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from .._base import COMMON_CONSTRAINTS, PARAMETER_CONSTRAINTS, fill_parameter_docs, seeded_init
from .._compat import Interval, StrOptions, _fit_context
from .._composition import NamedMembers, check_embedding_members
from .._compute import make_generator, resolve_device, seed_from
from .._deprecation import DEPRECATED, deprecated_constraint, renamed_param
from .._inputs import check_member_inputs
from .._warnings import warn
from ._concat import ConcatEmbedder

_ACTIVATIONS = {"relu": nn.ReLU, "identity": nn.Identity}


class _RowAdam(torch.optim.Optimizer):
    """Adam whose step counter (and so bias correction) is kept per row of a 2-D tensor.

    Each row is updated exactly as :class:`torch.optim.Adam` would update a
    tensor holding that row alone, counting only the steps in which the row had
    a gradient. A sparse gradient (``nn.Embedding(sparse=True)``) updates the
    rows it holds and leaves the others, their moments and their counters,
    untouched; a dense gradient updates every row.

    The same optimiser runs on the memory bank in ``fit`` and on the new vectors
    in ``transform``, so a vector's k-th update is computed alike in both.
    (``torch.optim.SparseAdam`` corrects the bias with the tensor-wide step
    count: a row's first update in ``fit`` would be 0.58-0.93 times the first
    update of a new vector in ``transform`` with 4 batches per epoch, and later
    ones several times larger.)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param, group):
        beta1, beta2 = group["betas"]
        rows, grad = _rows_of(param.grad)
        state = self.state[param]
        if not state:
            # float64 counters: 1 - beta2 ** k loses digits in float32 (MPS has no float64)
            dtype = torch.float32 if param.device.type == "mps" else torch.float64
            state["step"] = torch.zeros(param.shape[0], dtype=dtype, device=param.device)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        step = state["step"][rows] + 1
        exp_avg = state["exp_avg"][rows].mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        state["step"][rows] = step
        state["exp_avg"][rows] = exp_avg
        state["exp_avg_sq"][rows] = exp_avg_sq
        # torch.optim.Adam's formula, with each row's own step count
        bias1 = (1 - beta1**step).to(param.dtype).unsqueeze(1)
        bias2_sqrt = (1 - beta2**step).sqrt().to(param.dtype).unsqueeze(1)
        denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(group["eps"])
        param[rows] = param[rows] - group["lr"] / bias1 * exp_avg / denom


def _rows_of(grad):
    """``(rows, values)``: the rows a gradient touches and its values there."""
    if grad.is_sparse:
        grad = grad.coalesce()  # a row listed twice in a batch gets the sum, once
        return grad.indices()[0], grad.values()
    return slice(None), grad


class _Recoverer(nn.Module):
    """A memory bank of one vector per sample and one MLP per backbone (paper Fig. 1)."""

    def __init__(self, init, widths, hidden_dim, depth, final_activation):
        super().__init__()
        # sparse gradients: only the rows of a batch get a gradient (see _RecoveryNet)
        self.bank = nn.Embedding.from_pretrained(torch.as_tensor(init), freeze=False, sparse=True)
        dim = init.shape[1]
        self.mlps = nn.ModuleList(
            _mlp(dim, hidden_dim, width, depth, final_activation) for width in widths
        )

    def forward(self, idx):
        return self.recover(self.bank(idx))

    def recover(self, vectors):
        """Each MLP's output for ``vectors``, side by side: ``(B, sum(widths))``."""
        return torch.cat([mlp(vectors) for mlp in self.mlps], dim=1)


def _mlp(dim, hidden_dim, width, depth, final_activation):
    """``depth`` linear layers with ReLU between them; the last one maps to ``width``."""
    layers, in_dim = [], dim
    for _ in range(depth - 1):
        layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
        in_dim = hidden_dim
    layers += [nn.Linear(in_dim, width), _ACTIVATIONS[final_activation or "identity"]()]
    return nn.Sequential(*layers)


def _block_cosines(pred, target, widths):
    """Cosine between MLP output and target per sample and block: ``(B, n_blocks)``."""
    pieces = zip(pred.split(widths, dim=1), target.split(widths, dim=1))
    return torch.stack([F.cosine_similarity(p, t, dim=1, eps=1e-8) for p, t in pieces], dim=1)


class _CosineRecoveryLoss(nn.Module):
    """``1 - cos`` between each MLP's output and its backbone's features, averaged (sec. 3)."""

    def __init__(self, widths):
        super().__init__()
        self.widths = list(widths)

    def forward(self, y_pred, y_true):
        return 1.0 - _block_cosines(y_pred, y_true, self.widths).mean()


class _RecoveryNet(NeuralNet):
    """Adam on the MLPs, a row-wise Adam (:class:`_RowAdam`) on the memory bank.

    With dense Adam on the bank, rows absent from a batch would keep moving on their
    momentum, so a training vector would get many updates per epoch where a new vector
    in ``transform`` gets one. The bank's optimiser updates (and keeps moments and a
    step count for) only the rows of the batch: every vector gets one Adam step per
    epoch, and its k-th step in ``fit`` is computed as the k-th step of a new vector
    in ``transform``, which runs the same optimiser.
    """

    def initialize_optimizer(self, *args, **kwargs):
        mlps = [(n, p) for n, p in self.get_all_learnable_params() if not n.startswith("bank.")]
        opt_args, opt_kwargs = self.get_params_for_optimizer("optimizer", mlps)
        self.optimizer_ = self.optimizer(*opt_args, **opt_kwargs)
        self.bank_optimizer_ = _RowAdam(self.module_.bank.parameters(), lr=self.lr)
        return self

    def train_step(self, batch, **fit_params):
        # one forward/backward for both optimizers (skorch would run the closure per optimizer)
        from skorch.utils import TeeGenerator

        optimizers = (self.optimizer_, self.bank_optimizer_)
        for optimizer in optimizers:
            optimizer.zero_grad()
        step = self.train_step_single(batch, **fit_params)
        self.notify(
            "on_grad_computed",
            batch=batch,
            training=True,
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
        )
        for optimizer in optimizers:
            optimizer.step()
        return step


def _callbacks(n_warmup, nonnegative, verbose):
    from skorch.callbacks import Freezer, ProgressBar, Unfreezer

    callbacks = [("cosine", _RecordCosine(n_warmup))]
    if n_warmup > 0:  # sec. 3.1: MLPs alone first, then MLPs and vectors together
        callbacks += [
            ("warmup", Freezer("bank.*", at=1)),
            ("unfreeze", Unfreezer("bank.*", at=n_warmup + 1)),
        ]
    if nonnegative:
        callbacks.append(("nonnegative", _ClampBank()))
    if verbose:
        callbacks.append(("progress", ProgressBar()))
    return callbacks


class _RecordCosine(Callback):
    """Write the epoch's mean cosine (1 - cosine loss) and phase into the history."""

    def __init__(self, n_warmup):
        self.n_warmup = n_warmup

    def on_epoch_end(self, net, **kwargs):
        net.history.record("train_cosine", 1.0 - net.history[-1, "train_loss"])
        net.history.record("phase", "warmup" if len(net.history) <= self.n_warmup else "joint")


class _ClampBank(Callback):
    """Project the vectors onto the non-negative orthant after each step (sec. 5.2)."""

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            with torch.no_grad():
                net.module_.bank.weight.clamp_(min=0)


@fill_parameter_docs
class LearnedEnsembleEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, NamedMembers):
    """One vector per sample, learned so that small MLPs recover every backbone's features.

    The method of "Learning Rich Nearest Neighbor Representations from
    Self-supervised Ensembles" (ICLR 2022 submission). For M frozen backbones
    with L2-normalized features ``z^(j)``, ``fit`` keeps a memory bank of one
    vector ``psi_i`` per training sample, initialised at the normalized average
    of the ``z_i^(j)``, and one MLP ``phi_j`` per backbone; both are trained with
    Adam to maximise ``cos(phi_j(psi_i), z_i^(j))`` (section 3). The first
    ``warmup_fraction`` of the epochs train the MLPs alone, the rest MLPs and
    vectors together (section 3.1). ``transform`` freezes the MLPs and optimises
    a new vector per sample from its normalized average, with the same loss
    (section 3, "Once training is completed ...").

    When the backbones' widths differ, each normalized block is zero-padded to
    the widest one before averaging: the bank has the widest width and the
    narrower blocks fill its leading coordinates. (The paper's backbones all
    give 2048 dimensions; the blocks are not aligned either way, the average is
    only a starting point.)

    Training runs through skorch (``net_``); the memory bank is frozen during
    warm-up with skorch's ``Freezer`` / ``Unfreezer``, so the MLPs train alone.
    Every vector, in ``fit`` as in ``transform``, gets one Adam step per epoch
    from an Adam that counts steps per vector: a vector's k-th update is
    computed alike in both (the MLPs get plain Adam). In ``transform``, each
    sample's vector is optimised on its own (the loss is a sum over samples and
    Adam acts per coordinate), all samples of a batch in parallel, so a
    sample's result does not depend on the other rows of X or on the batch size.

    Parameters
    ----------
    embedders : list of (str, embedder) or None, default=None
        The ensemble: each a transformer of this library or scikit-learn (an
        unfitted one, e.g. a :class:`MeanTTAEmbedder`, is cloned and fitted on
        X; a fitted one, e.g. a pretrained :class:`EnSiamPretrainer`, is used as
        it is, and kept so through ``clone`` when wrapped in
        ``sklearn.frozen.FrozenEstimator``), a registered backbone name or a
        ``torch.nn.Module`` (wrapped as ``MeanTTAEmbedder(backbone=...,
        n_augmentations=0)``, seeded from ``random_state``), ``"passthrough"``
        or ``"drop"``, as in :class:`ConcatEmbedder`. None: X already holds the
        features of the backbones side by side (widths in ``feature_groups``).
        ``get_params`` / ``set_params`` reach the members as ``name`` and
        ``name__param``.
    feature_groups : list of int or None, default=None
        With ``embedders=None``, the widths of the feature blocks in X's
        columns; they must sum to the number of columns. None: one block, the
        paper's single-model case (section 4.2).
    mlp_depth : int, default=2
        Linear layers per MLP (section 3: 2 layers, ReLU after both; deeper MLPs
        regularise the vectors more, section 5.1).
    hidden_dim : int, default=None
        Width of the hidden layers; None = the vector width (section 3: "both of
        output dimension the same as their input").
    {max_epochs}
        Section 3.1: 50 outside ImageNet, 20 on ImageNet; 0 keeps the initial
        normalized average.
    transform_epochs : int, default=None
        Optimisation steps per new vector in ``transform`` (each sample gets one
        step per epoch, as in training); None = ``max_epochs``.
    {lr}
        Adam's, for fit and transform (section 3.1).
    {batch_size}
        Samples per step in fit and per parallel chunk in transform (section 3.1).
    warmup_fraction : float in [0, 1), default=0.5
        Share of the epochs that train only the MLPs (section 3.1: half).
    {weight_decay}
        Adam's, on the MLPs (never the vectors); section 5.1 mentions 1e-6.
    final_activation : {"relu", "identity"} or None, default="relu"
        Activation after each MLP's last layer. ReLU (the paper) matches
        post-ReLU pooled features; use "identity" when features can be negative.
    nonnegative : bool, default=False
        Keep the learned vectors in the non-negative orthant (projection after
        each step; the constrained variant of section 5.2).
    {device}
    {random_state}
        It seeds the backbones built from registered names, MLP initialisation
        and batch order; ``transform`` itself draws nothing, so equal seeds give
        equal outputs.
    {memory}
        The members are the ``embedders``, cached through
        :class:`ConcatEmbedder`.
    {verbose}
        True shows skorch's epoch log and progress bar.
    backbones : list of (str, embedder) or None
        Deprecated alias of ``embedders`` (the name :class:`ConcatEmbedder` uses).

        .. deprecated:: 0.2
           ``backbones`` was renamed ``embedders`` in 0.2 and will be removed
           in 0.3.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained network (module: memory bank + MLPs).
    embedding_ : ndarray of shape (n_samples, n_components)
        The learned training vectors; ``fit_transform`` returns them.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``train_cosine`` (mean cosine between MLP
        outputs and targets, the paper's 0.97 -> 0.99 diagnostic) and ``phase``
        ("warmup" or "joint"). ``history_[:, "train_cosine"]`` lists them.
    feature_groups_ : list of int
        Width of each target block.
    targets_ : ConcatEmbedder or None
        The fitted backbones (as one normalizing ``ConcatEmbedder``), when
        ``embedders`` is given.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit``, when X was a DataFrame with string columns.
    input_shape_ : tuple
        Shape of one sample seen in ``fit`` (with ``embedders``).

    See Also
    --------
    ConcatEmbedder : concatenation and averaging, the paper's baselines.
    MeanTTAEmbedder : a backbone as a transformer.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn import LearnedEnsembleEmbedder
    >>> rng = np.random.default_rng(0)
    >>> X = np.abs(rng.normal(size=(100, 12))).astype("float32")  # two 6-d backbones
    >>> emb = LearnedEnsembleEmbedder(feature_groups=[6, 6], max_epochs=4, random_state=0)
    >>> emb.fit_transform(X).shape
    (100, 6)
    >>> emb.transform(X[:5]).shape
    (5, 6)
    """

    _members_param = "embedders"
    _parameter_constraints: dict = {
        "embedders": [list, None],
        "feature_groups": ["array-like", None],
        "mlp_depth": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "max_epochs": PARAMETER_CONSTRAINTS["max_epochs"],
        "transform_epochs": [Interval(Integral, 0, None, closed="left"), None],
        "lr": PARAMETER_CONSTRAINTS["lr"],
        "batch_size": COMMON_CONSTRAINTS["batch_size"],
        "warmup_fraction": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": PARAMETER_CONSTRAINTS["weight_decay"],
        "final_activation": [StrOptions({"relu", "identity"}), None],
        "nonnegative": ["boolean"],
        "device": COMMON_CONSTRAINTS["device"],
        "random_state": COMMON_CONSTRAINTS["random_state"],
        "memory": PARAMETER_CONSTRAINTS["memory"],
        "verbose": COMMON_CONSTRAINTS["verbose"],
        "backbones": deprecated_constraint(list, None),
    }

    def __init__(
        self,
        embedders=None,
        *,
        feature_groups=None,
        mlp_depth=2,
        hidden_dim=None,
        max_epochs=50,
        transform_epochs=None,
        lr=3e-4,
        batch_size=256,
        warmup_fraction=0.5,
        weight_decay=0.0,
        final_activation="relu",
        nonnegative=False,
        device="auto",
        random_state=None,
        memory=None,
        verbose=False,
        backbones=DEPRECATED,
    ):
        self.embedders = embedders
        self.feature_groups = feature_groups
        self.mlp_depth = mlp_depth
        self.hidden_dim = hidden_dim
        self.max_epochs = max_epochs
        self.transform_epochs = transform_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.warmup_fraction = warmup_fraction
        self.weight_decay = weight_decay
        self.final_activation = final_activation
        self.nonnegative = nonnegative
        self.device = device
        self.random_state = random_state
        self.memory = memory
        self.verbose = verbose
        self.backbones = backbones

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Learn the MLPs and the training vectors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or inputs of the backbones
            With ``embedders=None``, the backbones' features side by side (block
            widths in ``feature_groups``); otherwise whatever the backbones take
            (arrays, images, image paths).
        y : None
            Ignored; passed on to the backbones.

        Returns
        -------
        self : LearnedEnsembleEmbedder
            The fitted embedder.
        """
        self.fit_transform(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None):
        """Fit, then return the learned training vectors (``embedding_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or inputs of the backbones
            As in :meth:`fit`.
        y : None
            Ignored; passed on to the backbones.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), float32
            The learned vector of each training sample.
        """
        embedders = renamed_param(self, "backbones", "embedders")
        seed = seed_from(self.random_state)
        targets = self._fit_targets(X, y, seed, embedders)
        self._warn_if_relu_cannot_fit(targets)
        device = resolve_device(self.device)
        init = _average(targets, self.feature_groups_)
        self.net_ = self._train(init, targets, seed, device)
        self.history_ = self.net_.history
        self.embedding_ = self.net_.module_.bank.weight.detach().cpu().numpy().astype(np.float32)
        return self.embedding_.copy()

    @property
    def _n_features_out(self):
        """Width of the learned vectors (for ``get_feature_names_out``)."""
        return self.embedding_.shape[1]

    def _fit_targets(self, X, y, seed, embedders):
        """L2-normalized target blocks side by side, float32; sets ``feature_groups_``."""
        if embedders is None:
            self.targets_ = None
            X = validate_data(self, X, dtype=np.float32)
            self.feature_groups_ = self._check_feature_groups(X.shape[1])
            return _normalize_blocks(X, self.feature_groups_)
        if self.feature_groups is not None:
            raise ValueError(
                "feature_groups is only for precomputed features (embedders=None); with "
                "embedders the widths come from the embedders' outputs"
            )
        check_embedding_members(embedders, "embedders", owner=self)  # errors name embedders
        check_member_inputs(self, X)  # errors about X name this estimator
        # the seed reaches the backbones built from registered names
        self.targets_ = ConcatEmbedder(
            embedders,
            normalize=True,
            memory=self.memory,
            random_state=None if self.random_state is None else seed,
        )
        targets = self.targets_.fit_transform(X, y)
        self.feature_groups_ = list(self.targets_.block_widths_)
        return targets

    def _warn_if_relu_cannot_fit(self, targets):
        """A final ReLU outputs no negative value: say so instead of silently underfitting."""
        if self.final_activation != "relu":
            return
        names = (
            [name for name, _ in self.targets_.embedders_]
            if self.targets_ is not None
            else [f"block {i}" for i in range(len(self.feature_groups_))]
        )  # "drop" left out
        bounds = np.cumsum([0, *self.feature_groups_])
        for name, a, b in zip(names, bounds[:-1], bounds[1:]):
            share = float(np.mean(targets[:, a:b] < 0))
            if share > 0:
                warn(
                    f"final_activation='relu' cannot reproduce the negative values of "
                    f"{name!r} ({share:.0%} of its features are negative), so its MLP will "
                    "underfit; pass final_activation='identity' for features that can be "
                    "negative",
                    UserWarning,
                )

    def _check_feature_groups(self, n_features):
        if self.feature_groups is None:
            return [n_features]
        groups = np.asarray(self.feature_groups)
        if (
            groups.ndim != 1
            or groups.size == 0
            or groups.dtype.kind not in "iu"
            or (groups < 1).any()
        ):
            raise ValueError(
                "feature_groups must be a list of positive ints (the width of each "
                f"backbone's block of columns), got {self.feature_groups!r}"
            )
        if groups.sum() != n_features:
            raise ValueError(
                f"feature_groups={list(map(int, groups))} sums to {int(groups.sum())}, but X "
                f"has {n_features} columns; the widths must add up to the number of columns"
            )
        return [int(g) for g in groups]

    def _train(self, init, targets, seed, device):
        n_warmup = int(self.warmup_fraction * self.max_epochs)
        with seeded_init(seed):
            module = _Recoverer(
                init,
                self.feature_groups_,
                self.hidden_dim or init.shape[1],
                self.mlp_depth,
                self.final_activation,
            )
        net = _RecoveryNet(
            module,
            criterion=_CosineRecoveryLoss,
            criterion__widths=self.feature_groups_,
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=self.weight_decay,  # MLPs only; the bank has its own
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=None,
            iterator_train__shuffle=True,
            iterator_train__generator=make_generator(seed, "cpu"),
            callbacks=_callbacks(n_warmup, self.nonnegative, self.verbose),
            device=str(device),
            verbose=int(bool(self.verbose)),
        )
        net.fit(np.arange(len(targets), dtype=np.int64), targets)
        return net

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Learn a vector for each sample of X with the MLPs frozen.

        Each vector starts at the normalized average of the sample's target
        blocks and gets ``transform_epochs`` Adam steps, computed as the steps
        of the training vectors in ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or inputs of the backbones
            Shaped like the training inputs.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), float32
            The learned vector of each sample.
        """
        check_is_fitted(self)
        targets = self._transform_targets(X)
        init = _average(targets, self.feature_groups_)
        module = self.net_.module_
        device = next(module.parameters()).device
        steps = self.max_epochs if self.transform_epochs is None else self.transform_epochs
        out = np.empty_like(init)
        for start in range(0, len(init), self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = _optimise_vectors(
                module,
                init[start:stop],
                targets[start:stop],
                self.feature_groups_,
                steps=steps,
                lr=self.lr,
                nonnegative=self.nonnegative,
                device=device,
            )
        return out

    def _transform_targets(self, X):
        if self.targets_ is None:
            X = validate_data(self, X, dtype=np.float32, reset=False)
            return _normalize_blocks(X, self.feature_groups_)
        check_member_inputs(self, X, reset=False)  # errors about X name this estimator
        return self.targets_.transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags


def _normalize_blocks(X, widths):
    """L2-normalize each block of columns per row (the paper's targets ``z``)."""
    bounds = np.cumsum([0, *widths])
    blocks = [_l2_normalize(X[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)


def _average(targets, widths):
    """Normalized average of the (normalized) blocks, zero-padded to the widest (sec. 3)."""
    dim = max(widths)
    total = np.zeros((len(targets), dim), dtype=np.float32)
    bounds = np.cumsum([0, *widths])
    for a, b in zip(bounds[:-1], bounds[1:]):
        total[:, : b - a] += targets[:, a:b]
    return _l2_normalize(total).astype(np.float32)


def _optimise_vectors(module, init, targets, widths, *, steps, lr, nonnegative, device):
    """New vectors optimised with the MLPs frozen, by the bank's optimiser; numpy."""
    vectors = torch.nn.Parameter(torch.as_tensor(init, device=device).clone())
    if steps == 0:
        return init
    target = torch.as_tensor(targets, device=device)
    optimizer = _RowAdam([vectors], lr=lr)
    was_training = module.training
    module.eval()
    params = list(module.mlps.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            # a sum over samples keeps each vector's gradient independent of the batch
            loss = (1.0 - _block_cosines(module.recover(vectors), target, widths)).mean(1).sum()
            loss.backward()
            optimizer.step()
            if nonnegative:
                with torch.no_grad():
                    vectors.clamp_(min=0)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        module.train(was_training)
    return vectors.detach().cpu().numpy()
