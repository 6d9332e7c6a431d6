"""ConcatEmbedder: several embedders side by side (or averaged), one block per member."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import TransformerMixin
from sklearn.preprocessing import normalize as _l2_normalize
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted

from .._base import PARAMETER_CONSTRAINTS
from .._compat import Interval, StrOptions, _fit_context
from .._composition import NamedMembers, embedding_members
from .._compute import seed_from
from .._deprecation import DEPRECATED, deprecated_constraint, renamed_param
from .._fingerprint import KeyedCache
from .._inputs import check_member_inputs
from .._member_fitting import as_embedding, fit_embed


def _transform_one(transformer, X):
    return as_embedding(transformer.transform(X))


class ConcatEmbedder(TransformerMixin, NamedMembers):
    """Several embedders side by side: per-block L2 normalization, sampling, compression.

    Like :class:`sklearn.pipeline.FeatureUnion`, every member transformer sees
    the same ``X`` and the outputs are concatenated, one block per member. Each
    block is L2-normalized per row first ("we find it useful to normalize each
    representation before any operations", Gontijo-Lopes et al., "No One
    Representation to Rule Them All: Overlapping Features of Training Methods",
    ICLR 2022, appendix A.5). Then, in this order:

    1. ``weights`` scales each normalized block;
    2. ``fractions`` keeps a random share of each block's dimensions, drawn once
       in ``fit`` (the paper's 25/75 experiment, section 4.6);
    3. ``max_features`` keeps the dimensions of the concatenation that rank
       highest by covariance on the training data, the paper's diversity
       heuristic (section 4.6: "we first compute the covariance of each
       dimension ... a ranking of highest to lowest covariance dimensions, which
       we use as a measure of diversity"). We read the covariance of a
       dimension as the diagonal of the covariance matrix, i.e. its variance
       over the training samples.

    With ``combine="mean"`` the normalized (weighted) blocks are averaged
    instead and the result is L2-normalized again: the averaging baseline of
    "Learning Rich Nearest Neighbor Representations from Self-supervised
    Ensembles" (section 3.1, "Averaging"), the initialisation of
    :class:`LearnedEnsembleEmbedder`. All members must then give the same
    width.

    Every parameter that can be checked without the members' outputs
    (``weights`` and ``fractions`` names and values, ``fractions`` with
    ``combine="mean"``) is checked before any member is fitted.

    Members are fitted with ``joblib.Parallel(n_jobs)`` (switch the backend
    with ``joblib.parallel_config``); with ``memory`` their fitted state and
    outputs are cached by ``joblib.Memory``, as ``Pipeline`` caches its steps.

    Parameters
    ----------
    embedders : list of (str, transformer)
        Named members, as in ``FeatureUnion``. A member may be any scikit-learn
        transformer (e.g. a :class:`MeanTTAEmbedder`), a registered backbone
        name or a ``torch.nn.Module`` (wrapped as
        ``MeanTTAEmbedder(backbone=..., n_augmentations=0)``, seeded from
        ``random_state``), ``"passthrough"`` (X itself) or ``"drop"``.
        Unfitted members are cloned and fitted in ``fit``; a fitted
        member (e.g. a pretrained :class:`EnSiamPretrainer`) is used as it is.
        ``clone`` (and so ``GridSearchCV``, ``cross_val_score``) resets fitted
        members; wrap one in ``sklearn.frozen.FrozenEstimator`` to keep it
        fitted there. ``get_params`` / ``set_params`` reach them as
        ``name__param``.
    normalize : bool, default=True
        L2-normalize each block per row before anything else.
    weights : dict of {str: float}, default=None
        Multiplier per member name (missing names: 1). Applied after
        normalization, so it sets a block's share of the cosine similarity.
    fractions : float or dict of {str: float}, default=None
        Share in (0, 1] of each block's dimensions to keep, drawn at random in
        ``fit`` (``ceil(fraction * width)`` dimensions). A float applies to every
        block; a dict gives it per member name (missing names: 1).
        ``{"resnet": 0.25, "clip": 0.75}`` is the paper's 25/75 combination.
    max_features : int, default=None
        Keep only this many dimensions (columns) of the combined output, the
        ones with the highest variance over the training data ("No One
        Representation to Rule Them All", section 4.6), as
        ``SelectFromModel(max_features=)`` keeps the top-scored features. None
        keeps all.
    combine : {"concat", "mean"}, default="concat"
        Concatenate the blocks, or average them (then L2-normalize).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw of ``fractions`` and the backbones built from registered
        names (each member its own seed, drawn in member order, so two members
        naming the same backbone are two initialisations): equal seeds give
        equal outputs.
    n_jobs : int, default=None
        Members fitted / applied in parallel by ``joblib.Parallel``.
    memory : str, joblib.Memory or None, default=None
        Cache of the members' fitted state and outputs (``joblib.Memory``),
        keyed on all of X, module weights and the identity (path, size,
        modification time) of every file named in X or the members' parameters.
    n_components : int or None
        Deprecated alias of ``max_features`` (the columns are selected, not a
        decomposition's components).

        .. deprecated:: 0.2
           ``n_components`` was renamed ``max_features`` in 0.2 and will be
           removed in 0.3.

    Attributes
    ----------
    embedders_ : list of (str, transformer)
        The fitted members ("drop" members left out).
    block_widths_ : list of int
        Width of each fitted member's output, in member order.
    block_columns_ : list of ndarray
        Per member, the indices of its dimensions kept after ``fractions``.
    feature_scores_ : ndarray of shape (n_combined,)
        The diversity score (variance) of each combined dimension; only when
        ``max_features`` is set.
    selected_features_ : ndarray of int
        Indices, into the combined output, of the dimensions kept by
        ``max_features`` (most diverse first); all of them otherwise.
    n_features_in_ : int
        Number of features seen in ``fit`` (per sample, flattened).
    feature_names_in_ : ndarray of str
        Column names seen in ``fit``, when X was a DataFrame with string columns.
    input_shape_ : tuple
        Shape of one sample seen in ``fit`` (numeric arrays and images).

    See Also
    --------
    sklearn.pipeline.FeatureUnion : the plain concatenation this builds on.
    LearnedEnsembleEmbedder : learns one vector per sample from the blocks.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.preprocessing import StandardScaler
    >>> from repens_sklearn import ConcatEmbedder
    >>> X, _ = load_iris(return_X_y=True)
    >>> emb = ConcatEmbedder([("scaled", StandardScaler()), ("pca", PCA(2))])
    >>> emb.fit_transform(X).shape
    (150, 6)
    >>> emb.set_params(pca__n_components=3).fit_transform(X).shape
    (150, 7)
    """

    _members_param = "embedders"
    _parameter_constraints: dict = {
        "embedders": [list],
        "normalize": ["boolean"],
        "weights": [dict, None],
        "fractions": [Interval(Real, 0, 1, closed="right"), dict, None],
        "max_features": [Interval(Integral, 1, None, closed="left"), None],
        "combine": [StrOptions({"concat", "mean"})],
        "random_state": PARAMETER_CONSTRAINTS["random_state"],
        "n_jobs": PARAMETER_CONSTRAINTS["n_jobs"],
        "memory": PARAMETER_CONSTRAINTS["memory"],
        "n_components": deprecated_constraint(Interval(Integral, 1, None, closed="left"), None),
    }

    def __init__(
        self,
        embedders,
        *,
        normalize=True,
        weights=None,
        fractions=None,
        max_features=None,
        combine="concat",
        random_state=None,
        n_jobs=None,
        memory=None,
        n_components=DEPRECATED,
    ):
        self.embedders = embedders
        self.normalize = normalize
        self.weights = weights
        self.fractions = fractions
        self.max_features = max_features
        self.combine = combine
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.memory = memory
        self.n_components = n_components

    @property
    def named_embedders(self):
        """The members as a :class:`~sklearn.utils.Bunch` keyed by name."""
        return Bunch(**dict(self.embedders))

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit every member on X and draw the kept dimensions.

        Parameters
        ----------
        X : array-like, DataFrame, or list of image paths / PIL images
            Training inputs (n_samples first), passed unchanged to every member.
        y : array-like of shape (n_samples,), default=None
            Passed to every member's ``fit``.

        Returns
        -------
        self : ConcatEmbedder
            The fitted embedder.
        """
        self.fit_transform(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None):
        """Fit every member and return the combined training output.

        Parameters
        ----------
        X : array-like, DataFrame, or list of image paths / PIL images
            Training inputs (n_samples first), passed unchanged to every member.
        y : array-like of shape (n_samples,), default=None
            Passed to every member's ``fit``.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_output_features), float32
            The members' blocks normalized, weighted, sampled and combined.
        """
        max_features = renamed_param(self, "n_components", "max_features")
        rng = check_random_state(self.random_state)
        members = self._check_members(rng)
        self._check_weights_and_fractions([name for name, _ in members])
        check_member_inputs(self, X)
        fit_one = KeyedCache(self.memory, fit_embed)  # keyed on file contents and weights
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(fit_one)(member, X, y) for _, member in members
        )
        self.embedders_ = [(name, fitted) for (name, _), (fitted, _) in zip(members, results)]
        blocks = [out for _, out in results]
        for (name, _), out in zip(members, blocks):
            _check_block(name, out, None)
        self.block_widths_ = [out.shape[1] for out in blocks]
        self._check_equal_widths()
        self.block_columns_ = self._draw_block_columns(rng)
        combined = self._combine(blocks)
        self._select_features(combined, max_features)
        return combined[:, self.selected_features_]

    def _check_members(self, rng):
        """The members to fit, named backbones resolved; ``rng`` seeds those backbones."""
        # one seed per member position ("drop" included), so dropping a member leaves the
        # others' seeds alone; None keeps named backbones unseeded
        draw = None if self.random_state is None else (lambda: seed_from(rng))
        return embedding_members(self.embedders, "embedders", draw, owner=self)

    def _check_weights_and_fractions(self, names):
        """Everything about ``weights`` / ``fractions`` that needs no member output."""
        for param in ("weights", "fractions"):
            value = getattr(self, param)
            if isinstance(value, dict):
                unknown = sorted(set(value) - set(names))
                if unknown:
                    raise ValueError(
                        f"{param} names unknown members {unknown}; the members are {names}"
                    )
        for name, w in (self.weights or {}).items():
            if not isinstance(w, Real) or not np.isfinite(w):
                raise ValueError(f"weights[{name!r}] must be a finite number, got {w!r}")
        for name, f in self._fraction_per_member(names).items():
            if not isinstance(f, Real) or not 0 < f <= 1:
                raise ValueError(f"fractions[{name!r}] must be in (0, 1], got {f!r}")
        if self.combine == "mean" and self.fractions is not None:
            raise ValueError(
                "fractions cannot be used with combine='mean': the blocks would no "
                "longer share dimensions; use combine='concat'"
            )

    def _check_equal_widths(self):
        """``combine='mean'`` averages blocks: the fitted members must agree on the width."""
        if self.combine == "mean" and len(set(self.block_widths_)) > 1:
            names = [name for name, _ in self.embedders_]
            raise ValueError(
                "combine='mean' needs members of equal width, but they give "
                f"{dict(zip(names, self.block_widths_))}; use combine='concat'"
            )

    def _fraction_per_member(self, names):
        if self.fractions is None:
            return {}
        if isinstance(self.fractions, dict):
            return dict(self.fractions)
        return {name: self.fractions for name in names}

    def _draw_block_columns(self, rng):
        fractions = self._fraction_per_member([name for name, _ in self.embedders_])
        columns = []
        for (name, _), width in zip(self.embedders_, self.block_widths_):
            fraction = fractions.get(name, 1.0)
            if fraction >= 1:
                columns.append(np.arange(width))
            else:
                keep = max(1, math.ceil(fraction * width))
                columns.append(np.sort(rng.choice(width, size=keep, replace=False)))
        return columns

    def _select_features(self, combined, max_features):
        n_combined = combined.shape[1]
        if max_features is None:
            self.selected_features_ = np.arange(n_combined)
            return
        if max_features > n_combined:
            raise ValueError(
                f"max_features={max_features} is more than the {n_combined} combined dimensions"
            )
        self.feature_scores_ = combined.var(axis=0, dtype=np.float64)
        # stable sort: ties keep the members' order
        order = np.argsort(-self.feature_scores_, kind="stable")
        self.selected_features_ = order[:max_features]

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Apply every fitted member to X and combine the blocks.

        Parameters
        ----------
        X : array-like, DataFrame, or list of image paths / PIL images
            Inputs shaped like the training inputs.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_output_features), float32
            The members' blocks normalized, weighted, sampled and combined as in ``fit``.
        """
        check_is_fitted(self)
        check_member_inputs(self, X, reset=False)
        blocks = self._member_outputs(X)
        return self._combine(blocks)[:, self.selected_features_]

    def _member_outputs(self, X):
        """Each fitted member's output on X, checked against its width at fit time."""
        transform_one = KeyedCache(self.memory, _transform_one)
        blocks = Parallel(n_jobs=self.n_jobs)(
            delayed(transform_one)(member, X) for _, member in self.embedders_
        )
        for (name, _), out, width in zip(self.embedders_, blocks, self.block_widths_):
            _check_block(name, out, width)
        return blocks

    def _combine(self, blocks):
        weights = self.weights or {}
        parts = []
        for (name, _), out, cols in zip(self.embedders_, blocks, self.block_columns_):
            if self.normalize:
                out = _l2_normalize(out)
            if name in weights:
                out = out * np.float32(weights[name])
            parts.append(out[:, cols] if len(cols) < out.shape[1] else out)
        if self.combine == "mean":
            combined = np.mean(parts, axis=0)
            combined = _l2_normalize(combined) if self.normalize else combined
        else:
            combined = np.hstack(parts)
        return np.ascontiguousarray(combined, dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; the names come from the members.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``"{member}__{i}"`` for each kept dimension i of a member's block
            (``"mean__{i}"`` with ``combine="mean"``), in output order.
        """
        check_is_fitted(self)
        if self.combine == "mean":
            names = [f"mean__{i}" for i in range(self.block_widths_[0])]
        else:
            names = [
                f"{name}__{i}"
                for (name, _), cols in zip(self.embedders_, self.block_columns_)
                for i in cols
            ]
        return np.asarray(names, dtype=object)[self.selected_features_]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _check_block(name, out, width):
    if out.ndim != 2:
        raise ValueError(f"embedder {name!r} returned an array of shape {out.shape}; expected 2-D")
    if width is not None and out.shape[1] != width:
        raise ValueError(
            f"embedder {name!r} returned {out.shape[1]} features, but it returned {width} "
            "in fit; an embedder's output width must not change between fit and transform"
        )
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(
            f"embedder {name!r} returned NaN or infinite features (first at sample {bad})"
        )
