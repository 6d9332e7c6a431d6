"""MeanTTAEmbedder: mean embeddings over test-time augmentation (MeTTA)."""

from __future__ import annotations

import copy
import functools
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import normalize as _l2_normalize
from sklearn.utils.validation import check_is_fitted

from .. import aggregate as _aggregate
from .._base import BACKBONE_CONSTRAINTS, TorchEstimatorMixin, fill_parameter_docs, module_on
from .._compat import Interval, StrOptions, _fit_context
from .._compute import fast_inference, make_generator
from .._plugins import create_aggregation
from .._warnings import warn
from ..augment import (
    content_seeds,
    derive_seeds,
    fixed_views,
    is_seeded,
    uniform,
    views_change_size,
)
from ..backbones import check_backbone_accepts

# The seed salt of the one training view of fit_output="single_view" (view indices are >= 0).
_FIT_VIEW = -1


@fill_parameter_docs
class MeanTTAEmbedder(
    TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Embeddings of a frozen backbone averaged over random test-time augmentations (MeTTA).

    For every sample ``x`` the transformer returns ``agg_s f(t_s(x))`` over S
    augmented views ``t_s(x)`` drawn from ``policy`` (Ashukha et al., "Mean
    Embeddings with Test-Time Data Augmentation for Ensembling of
    Representations", sec. 1, eq. 2-3, with ``agg`` the mean). The backbone is
    never trained: ``fit`` only builds it and checks that it accepts the data.
    ``n_augmentations=0`` returns the plain (centre) embedding, so one
    ``GridSearchCV`` compares both.

    A sample's views come from seeds keyed by ``random_state`` and the sample's
    own values, so its embedding does not depend on the other rows of X, their
    order or ``batch_size``: an index built in batches equals one built image by
    image, and scikit-learn's sample-order and subset invariance checks hold.

    Training protocol (sec. 2 of the paper): the paper trains the downstream
    head the conventional way, on single augmented views (eq. 5, an upper bound
    of the loss of eq. 4), and uses the S-view mean only at test time. In a
    ``Pipeline`` that is ``fit_output="single_view"``: ``fit_transform`` hands
    the next step one augmented view per training row, while ``transform``
    (``predict``, ``score``) returns the mean.

    All views of a batch are made by the policy in one call and go through the
    backbone in one forward pass (``batch_size`` counts views, so a chunk holds
    ``batch_size // S`` samples); the mean, GeM and max are running
    aggregates, so memory does not grow with S or with the number of samples
    beyond the output.

    Parameters
    ----------
    {backbone}
    {backbone_params}
    {policy}
        It draws the S test-time views. ``"crop_flip"`` is a
        resize-randomcrop-flip augmentation whose crop area adapts to the
        resolution the policy sees (see ``repens_sklearn.augment.CropFlip``);
        ``"crop_flip_paper"`` is the paper's conventional one (torchvision's
        area 0.08-1 at every size; sec. 5); ``"multiscale"`` (with
        ``aggregation="gem"``) is the image-retrieval recipe (sec. 4).
        A deterministic multi-view policy (one with ``n_views`` and
        ``view(x, index)``, like ``"multiscale"``) gives
        ``min(n_augmentations, n_views)`` views, each run at its own resolution.
        A policy with ``seeded(x, seeds)`` (all built-ins) makes every view of a
        batch in one call; any other callable is called once per view of each
        sample, with a generator seeded from that view's seed.
    {policy_params}
    n_augmentations : int, default=10
        Number S of augmented views per sample (the paper's N uses 10 and 32).
        ``0`` gives the plain embedding of the un-augmented input.
    include_identity : bool, default=False
        Add the un-augmented view to the S augmented ones.
    aggregation : str or callable, default="mean"
        ``"mean"`` (MeTTA), ``"gem"`` (generalised power mean, as cirtorch's
        multi-scale ``msp``), ``"median"``, ``"max"``, another registered name,
        or a callable mapping views ``(S, N, D)`` to ``(N, D)``.
    aggregation_params : dict, default=None
        Keyword arguments bound to the aggregation (e.g. ``{"p": 3}`` for GeM).
    normalize : bool or "auto", default="auto"
        L2-normalize every output row (each sample on its own). ``"auto"``:
        True for a deterministic multi-view policy with ``aggregation="gem"``
        (cirtorch's multi-scale descriptor is L2-normalized), else False.
    normalize_views : bool or "auto", default="auto"
        L2-normalize every view's embedding before the aggregation. cirtorch's
        multi-scale extraction (Radenovic et al.; the paper's sec. 4) does this:
        each scale's descriptor is L2-normalized, the power mean is taken over
        the scales, and the result is L2-normalized, so no scale dominates by
        its norm. ``"auto"``: True for a deterministic multi-view policy (like
        ``"multiscale"``) with ``aggregation="gem"``, else False.
    fit_output : {"mean", "single_view", "plain"}, default="mean"
        What ``fit_transform`` returns for the training rows (``transform``
        always returns the aggregate over the views). ``"mean"``: the same as
        ``transform``. ``"single_view"``: the embedding of one augmented view
        per row (one draw of the paper's eq. 5: the head is trained as with
        conventional augmentation, and MeTTA is used at test time only).
        ``"plain"``: the plain (centre) embedding. With the last two,
        ``fit_transform(X)`` differs from ``fit(X).transform(X)`` on purpose, as
        scikit-learn's ``TargetEncoder`` does; ``Pipeline.fit`` uses
        ``fit_transform``, so the next step is trained on those rows.
    {preprocess}
    {img_size}
    {crop_pct}
    {input_shape}
    {batch_size}
        It counts views: a forward pass holds the views of
        ``batch_size // S`` samples.
    {num_workers}
    {device}
    {precision}
    {random_state}
        It seeds the backbone's initialisation (registered names) and the views:
        with an int, a sample gets the same views in every ``transform`` call,
        in any batch, at any position in X, with any ``batch_size``, in any
        process (the seeds are computed exactly; the views' pixels on another
        device may differ by rounding).
    {verbose}
        True shows a tqdm progress bar during ``transform``.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The built backbone, in eval mode.
    policy_ : callable
        The augmentation policy.
    aggregation_ : callable
        The aggregation function with its parameters bound.
    n_views_ : int
        Number of views aggregated per sample (S, plus one with
        ``include_identity``); 1 when ``n_augmentations=0``.
    normalize_views_ : bool
        Whether views are L2-normalized before the aggregation (``normalize_views`` resolved).
    normalize_ : bool
        Whether output rows are L2-normalized (``normalize`` resolved).
    embedding_dim_ : int
        Width D of the embeddings.
    input_shape_ : tuple
        Shape of one sample as seen in ``fit`` (image files: as decoded).
    preprocessor_ : ImagePreprocessor or None
        The pretrained backbone's preprocessing (None when there is none).
    n_features_in_ : int
        ``X.shape[1]`` in ``fit``, as scikit-learn counts features (the channel count
        for 4-D image arrays, the number of values per image for image lists).
    feature_names_in_ : ndarray of str
        Column names of X in ``fit``, when they are all strings.
    precision_ : {"float32", "bfloat16", "float16"}
        The arithmetic of ``transform`` (``precision`` resolved at fit).
    precision_agreement_ : float
        Least cosine of the network's bf16 to its float32 outputs on the check
        batch of ``precision="auto"``; NaN where no check ran.

    See Also
    --------
    repens_sklearn.list_augmentation_policies : the registered policies.
    repens_sklearn.list_aggregations : the registered aggregations.

    Notes
    -----
    Ashukha et al., "Mean Embeddings with Test-Time Data Augmentation for
    Ensembling of Representations" (2021): MeTTA improves linear evaluation of
    ImageNet features by +0.4 to +2.1 points with N = 10 or 32 views.

    Seeds: the key of a sample is an exact integer hash of its values (as
    float32, before the pretrained preprocessing) and ``random_state``; view
    ``s`` of the sample uses ``derive_seeds(key, s)`` (``repens_sklearn.augment``).
    A policy with ``seeded(x, seeds)`` draws every row's parameters from its
    own seed in one vectorised call. A policy with only ``policy(x,
    generator)`` is called once per view of each sample, with a generator
    seeded from that view's seed, and only the views of one forward pass
    exist at a time (memory does not grow with S); the calls cost a little
    more than the batched one, negligible once the forward passes dominate.

    Examples
    --------
    >>> from repens_sklearn import MeanTTAEmbedder, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> embedder = MeanTTAEmbedder("convnet_small", policy="crop_flip",
    ...                            policy_params={"scale": (0.6, 1.0)},
    ...                            n_augmentations=4, random_state=0)
    >>> embedder.fit_transform(X[:20]).shape
    (20, 128)
    """

    _parameter_constraints = {
        **BACKBONE_CONSTRAINTS,
        "n_augmentations": [Interval(Integral, 0, None, closed="left")],
        "include_identity": ["boolean"],
        "aggregation": [str, callable],
        "aggregation_params": [dict, None],
        "normalize": ["boolean", StrOptions({"auto"})],
        "normalize_views": ["boolean", StrOptions({"auto"})],
        "fit_output": [StrOptions({"mean", "single_view", "plain"})],
    }

    def __init__(
        self,
        backbone="convnet_small",
        *,
        backbone_params=None,
        policy="crop_flip",
        policy_params=None,
        n_augmentations=10,
        include_identity=False,
        aggregation="mean",
        aggregation_params=None,
        normalize="auto",
        normalize_views="auto",
        fit_output="mean",
        preprocess=True,
        img_size=None,
        crop_pct=None,
        input_shape=None,
        batch_size=256,
        num_workers=0,
        device="auto",
        precision="auto",
        random_state=None,
        verbose=False,
    ):
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.policy = policy
        self.policy_params = policy_params
        self.n_augmentations = n_augmentations
        self.include_identity = include_identity
        self.aggregation = aggregation
        self.aggregation_params = aggregation_params
        self.normalize = normalize
        self.normalize_views = normalize_views
        self.fit_output = fit_output
        self.preprocess = preprocess
        self.img_size = img_size
        self.crop_pct = crop_pct
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the backbone, policy and aggregation and check they accept X.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images
        y : ignored

        Returns
        -------
        self : MeanTTAEmbedder
        """
        inputs, module = self._fit_backbone(X)
        self.policy_ = self._resolve_policy()
        self.aggregation_ = self._resolve_aggregation(self.embedding_dim_)
        self.n_views_ = self._count_views()
        retrieval = self._is_multiscale_gem()
        auto = {"normalize_views": self.normalize_views, "normalize": self.normalize}
        self.normalize_views_, self.normalize_ = (
            retrieval if value == "auto" else bool(value) for value in auto.values()
        )
        if self.n_augmentations > 0 or self.fit_output == "single_view":
            self._check_policy_accepts(module, self._prepare(inputs.example()))
        self.backbone_ = module.eval().to(self._resolved_device())
        self._choose_precision(self.backbone_, inputs, self._resolved_device())
        return self

    def _is_multiscale_gem(self):
        """cirtorch's multi-scale recipe: deterministic multi-view policy + GeM over the views."""
        base = self.aggregation_
        if isinstance(base, functools.partial) and not base.args:
            base = base.func
        return bool(self._deterministic_views()) and base is _aggregate.gem

    def _resolve_aggregation(self, dim):
        params = dict(self.aggregation_params or {})
        if isinstance(self.aggregation, str):
            try:
                fn = create_aggregation(self.aggregation, **params)
            except ValueError as exc:
                raise ValueError(f"aggregation={self.aggregation!r}: {exc}") from exc
        elif params:
            fn = functools.partial(self.aggregation, **params)
        else:
            fn = self.aggregation
        probe = torch.rand(2, 3, dim, generator=torch.Generator().manual_seed(0))
        try:
            out = fn(probe)
        except Exception as exc:
            raise ValueError(
                f"aggregation={self.aggregation!r} with aggregation_params={params!r} "
                f"fails on views of shape (S, N, D)={tuple(probe.shape)}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (3, dim):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"aggregation={self.aggregation!r} must map views (S, N, D) to (N, D); "
                f"for (2, 3, {dim}) it returned {got}"
            )
        return fn

    def _deterministic_views(self):
        """Views used of a deterministic multi-view policy; None for a random one."""
        n_views = fixed_views(self.policy_)
        return None if n_views is None else min(self.n_augmentations, n_views)

    def _progress_label(self):
        return f"MeanTTAEmbedder({self._backbone_name()})"

    def _count_views(self):
        if self.n_augmentations == 0:
            return 1
        n_det = self._deterministic_views()
        if n_det is not None and self.n_augmentations > n_det:
            warn(
                f"n_augmentations={self.n_augmentations} exceeds the {n_det} fixed views of "
                f"policy={self.policy!r}: only {n_det} views are used, so every "
                f"n_augmentations >= {n_det} gives the same embedding",
                UserWarning,
            )
        n_aug = self.n_augmentations if n_det is None else n_det
        return n_aug + int(bool(self.include_identity))

    def _check_policy_accepts(self, module, example):
        n_det = self._deterministic_views()
        if n_det is None:
            self._check_policy_keeps_shape(self.policy_, example)
            if is_seeded(self.policy_):
                self._check_policy_keeps_shape(
                    lambda x, generator: self.policy_.seeded(x, derive_seeds([0] * len(x), 0)),
                    example,
                )
            return
        try:
            # each deterministic view at its own resolution (all of them for a single view)
            for index in range(n_det or fixed_views(self.policy_)):
                view = self._standardize(self.policy_.view(example, index))
                check_backbone_accepts(module, view, backbone_name=self._backbone_name())
        except ValueError as exc:
            hint = (
                " (for a backbone that needs a fixed input size use "
                "policy_params={'resize_back': True})"
                if views_change_size(self.policy_)
                else ""
            )
            raise ValueError(
                f"policy={self.policy!r} cannot make views of inputs of shape "
                f"{tuple(example.shape[1:])}{hint}: {exc}"
            ) from exc

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Embed X: the aggregate over the views of each sample, float32 ``(n_samples, D)``.

        A sample's embedding depends on the sample and ``random_state`` only:
        not on the other rows of X, their order, or ``batch_size``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim_), float32
        """
        check_is_fitted(self)
        return self._embed_rows(self._transform_inputs(X), "mean")

    def fit_transform(self, X, y=None):
        """Fit, then embed the training rows as ``fit_output`` says.

        With ``fit_output="mean"`` (default) this is ``fit(X).transform(X)``.
        With ``"single_view"`` or ``"plain"`` it differs on purpose, as
        scikit-learn's ``TargetEncoder.fit_transform`` does: in a ``Pipeline``
        the next step is fitted on one augmented view (or the plain embedding)
        of each training row, while ``transform`` (predict, score, new data)
        always returns the aggregate over the views.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images
        y : ignored

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim_), float32
        """
        self.fit(X, y)
        return self._embed_rows(self._transform_inputs(X), self.fit_output)

    def _embed_rows(self, inputs, output):
        device = self._resolved_device()
        module = module_on(self.backbone_, device)
        if output == "plain" or (output == "mean" and self.n_augmentations == 0):
            out = self._embed(module, inputs, device, desc=self._progress_label())
            if self.normalize_views_:
                out = _l2_normalize(out)
        else:
            out = self._embed_views(module, inputs, device, single=output == "single_view")
        if self.normalize_:
            out = _l2_normalize(out)
        return out.astype(np.float32, copy=False)

    @torch.inference_mode()
    def _embed_views(self, module, inputs, device, single=False):
        """Aggregated views (or one view per sample with ``single``), batch by batch.

        Each sample's views are drawn from seeds keyed by ``random_state`` and
        the sample's values (:func:`~repens_sklearn.augment.content_seeds`),
        computed on the raw batch before the pretrained preprocessing.
        """
        from tqdm.auto import tqdm

        seed = self._seed()
        chunk = self.batch_size if single else max(1, self.batch_size // self.n_views_)
        total = -(-inputs.n_samples // chunk)
        out = np.empty((inputs.n_samples, self.embedding_dim_), dtype=np.float32)
        batches = inputs.iter_batches(chunk, device, self.num_workers)
        dtype, channels_last = self._inference_settings(module, device)
        with fast_inference(module, device, dtype, channels_last=channels_last) as forward:
            for start, batch in tqdm(
                batches,
                total=total,
                desc=self._progress_label(),
                disable=not self.verbose,
                leave=False,
            ):
                keys = content_seeds(batch, seed)
                batch = self._prepare(batch)
                if single:
                    result = self._embed_single_view(forward, batch, keys)
                else:
                    acc = _accumulator(self.aggregation_)
                    for views in self._view_groups(batch, keys):
                        acc.add(
                            self._embed_group(forward, views).reshape(
                                -1, len(batch), self.embedding_dim_
                            )
                        )
                    result = acc.result()
                out[start : start + len(batch)] = result.cpu().numpy()
        return out

    def _embed_group(self, forward, views):
        """``forward`` (:func:`~repens_sklearn._compute.fast_inference`'s) on standardized views."""
        views = forward(self._standardize(views))
        return torch.nn.functional.normalize(views, dim=-1) if self.normalize_views_ else views

    def _view_groups(self, batch, keys):
        """Yield tensors of stacked views ``(k * B, ...)``, each at most ``batch_size`` rows.

        Row ``s * B + i`` is view ``s`` of sample ``i``, made from the seed
        ``derive_seeds(keys[i], s)`` (policies with ``seeded``), so it does not
        depend on how the views are grouped into passes.
        """
        per_pass = max(1, self.batch_size // len(batch))
        n_det = self._deterministic_views()
        if n_det is not None:
            views = [batch] if self.include_identity else []
            views += [self.policy_.view(batch, i) for i in range(n_det)]
            yield from _same_shape_runs(views, per_pass)
            return
        make_views = self._random_views(batch, keys)
        first, identity = 0, bool(self.include_identity)
        while first < self.n_augmentations or identity:
            parts = [batch] if identity else []
            k = min(self.n_augmentations - first, per_pass - len(parts))
            if k > 0:  # one policy call draws k views of every sample
                parts.append(make_views(first, k))
            first, identity = first + max(k, 0), False
            yield torch.cat(parts) if len(parts) > 1 else parts[0]

    def _random_views(self, batch, keys):
        """``make(first, k)``: views ``first .. first + k - 1`` of every sample, view-major.

        View ``s`` of sample ``i`` comes from the seed ``derive_seeds(keys[i], s)``
        whatever the policy, so only the views of one pass exist at a time.
        """
        n = len(batch)
        policy = self.policy_

        def seeds_of(first, k):
            return derive_seeds(keys.repeat(k), np.repeat(np.arange(first, first + k), n))

        if is_seeded(policy):

            def make(first, k):
                return policy.seeded(batch.repeat(k, *[1] * (batch.ndim - 1)), seeds_of(first, k))

            return make

        def make_one_by_one(first, k):  # a plain policy: one call per view, its own generator
            return torch.cat(
                [
                    policy(batch[row % n : row % n + 1], make_generator(int(seed), batch.device))
                    for row, seed in enumerate(seeds_of(first, k).tolist())
                ]
            )

        return make_one_by_one

    def _embed_single_view(self, forward, batch, keys):
        """One view per sample (``fit_output="single_view"``), from its own seed."""
        seeds = derive_seeds(keys, _FIT_VIEW)
        policy = self.policy_
        n_det = self._deterministic_views()
        if n_det is not None:  # one of the deterministic views, drawn per sample
            choices = n_det or fixed_views(policy)
            pick = np.floor(uniform(seeds, 1)[:, 0].numpy() * choices).astype(np.int64)
            out = torch.empty(len(batch), self.embedding_dim_, device=batch.device)
            for index in np.unique(pick):
                rows = torch.as_tensor(np.flatnonzero(pick == index), device=batch.device)
                out[rows] = self._embed_group(forward, policy.view(batch[rows], int(index)))
            return out
        if is_seeded(policy):
            views = policy.seeded(batch, seeds)
        else:
            views = torch.cat(
                [
                    policy(batch[i : i + 1], make_generator(int(seed), batch.device))
                    for i, seed in enumerate(seeds.tolist())
                ]
            )
        return self._embed_group(forward, views)

    def as_backbone(self):
        """A deep copy of the fitted backbone (eval mode, CPU), usable wherever a backbone is.

        Test-time augmentation is not part of it: it is the plain embedding.
        """
        check_is_fitted(self, "backbone_")
        return self._export_backbone(self.backbone_)

    # ---------------------------------------------------------- sklearn API
    @property
    def _n_features_out(self):
        return self.embedding_dim_

    def __getstate__(self):
        # Pickle the backbone on the CPU so a model fitted on a GPU loads anywhere;
        # transform moves it back to the resolved device.
        state = dict(super().__getstate__())  # a copy: pickling must not touch the live estimator
        module = state.get("backbone_")
        if module is not None and any(t.device.type != "cpu" for t in module.state_dict().values()):
            state["backbone_"] = copy.deepcopy(module).cpu()
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _same_shape_runs(views, per_pass):
    """Concatenate consecutive views of the same shape, at most ``per_pass`` at a time."""
    run = []
    for view in views:
        if run and (view.shape != run[0].shape or len(run) >= per_pass):
            yield torch.cat(run)
            run = []
        run.append(view)
    if run:
        yield torch.cat(run)


class _RunningMean:
    def __init__(self):
        self.total, self.count = None, 0

    def add(self, views):
        for view in views:  # one view at a time: the same sums whatever the grouping
            self.total = view.clone() if self.total is None else self.total + view
        self.count += views.shape[0]

    def result(self):
        return self.total / self.count


class _RunningGeM(_RunningMean):
    def __init__(self, p, eps):
        super().__init__()
        self.p, self.eps = float(p), float(eps)

    def add(self, views):
        _aggregate.warn_if_negative_for_gem(views)
        super().add(views.clamp(min=self.eps).pow(self.p))

    def result(self):
        return super().result().pow(1.0 / self.p)


class _RunningMax:
    def __init__(self):
        self.value = None

    def add(self, views):
        part = views.amax(dim=0)
        self.value = part if self.value is None else torch.maximum(self.value, part)

    def result(self):
        return self.value


class _Stacked:
    """Any other aggregation: keep the views of one chunk of samples and apply it."""

    def __init__(self, fn):
        self.fn, self.parts = fn, []

    def add(self, views):
        self.parts.append(views)

    def result(self):
        return self.fn(torch.cat(self.parts))


def _accumulator(fn):
    """A streaming accumulator for the built-in mean / gem / max, else a stacking one."""
    base, kwargs = fn, {}
    if isinstance(fn, functools.partial) and not fn.args:
        base, kwargs = fn.func, dict(fn.keywords)
    if base is _aggregate.mean and not kwargs:
        return _RunningMean()
    if base is _aggregate.gem and set(kwargs) <= {"p", "eps"} and kwargs.get("p", 3.0) <= 8:
        # a running sum of x**p is safe in float32 for moderate p; larger p stacks
        return _RunningGeM(kwargs.get("p", 3.0), kwargs.get("eps", 1e-6))
    if base is _aggregate.max and not kwargs:
        return _RunningMax()
    return _Stacked(fn)
