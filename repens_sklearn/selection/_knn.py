"""KNNModelSelector: rank candidate embedders by leave-one-out kNN accuracy."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from joblib import delayed
from sklearn.base import TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    check_memory,
    column_or_1d,
)

from .._compat import _BaseComposition, _fit_context, HasMethods, Interval, StrOptions
from .._device import seed_from
from .._fitted import as_embedding, fit_embed
from .._inputs import check_member_inputs
from ._candidates import (
    as_transformer,
    check_named_list,
    embed_candidate,
    make_parallel,
    raise_naming,
)
from ._loo import loo_knn_accuracy


class KNNModelSelector(TransformerMixin, _BaseComposition):
    """Rank candidate representations by leave-one-out kNN accuracy; keep the best.

    Step 1 of the paper's algorithm (section 2.3; Puigcerver et al., 2020): every
    candidate embeds the downstream training data and is scored by the accuracy
    of a kNN classifier evaluated leave-one-out on those embeddings, a cheap
    proxy for the accuracy after fine-tuning. The ``n_select`` best are kept
    (the paper uses K = 15), or, with ``threshold``, every candidate whose score
    is at least ``threshold`` times the best one, at most ``n_select``
    (section 2.3.1 uses tau = 2 %, i.e. ``threshold=0.98``).

    Scores come from blocked similarity matrix products with each sample's own
    entry excluded: no loop over samples and no refit per sample. ``transform``
    concatenates the selected candidates' embeddings, so the selector is also a
    feature step in a :class:`~sklearn.pipeline.Pipeline`.

    Parameters
    ----------
    candidates : list of (str, object)
        Named candidates. A candidate is a scikit-learn transformer (fitted ones
        are used as they are, unfitted ones are cloned and fitted on ``(X, y)``;
        ``clone`` resets fitted ones unless wrapped in
        ``sklearn.frozen.FrozenEstimator``),
        a registered backbone name or a ``torch.nn.Module``; the last two are
        wrapped in ``MeanTTAEmbedder(backbone=..., n_augmentations=0)``.
    n_neighbors : int, default=1
        Neighbours voting in the kNN classifier. Equal vote counts go to the
        class of the nearest neighbour among the tied classes.
    metric : {"cosine", "euclidean"}, default="cosine"
        Similarity of the kNN classifier (cosine normalises the embeddings once).
    n_select : int or None, default=15
        Most candidates kept (paper: K = 15). None keeps all (or all within
        ``threshold``).
    threshold : float in [0, 1] or None, default=None
        Keep the candidates scoring at least ``threshold * best score``.
    memory : str, joblib.Memory or None, default=None
        Caches each candidate's fit and embedding (as in ``Pipeline``), so a
        refit with other selection settings does not embed again.
    n_jobs : int or None, default=None
        Candidates embedded in parallel by ``joblib.Parallel``; use
        ``joblib.parallel_config(backend="dask")`` to run them on a cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds the backbones built for candidates given as registered names
        (their random initialisation), so scores repeat from fit to fit.
    verbose : int or bool, default=False
        joblib verbosity while embedding.

    Attributes
    ----------
    scores_ : dict
        ``{name: leave-one-out kNN accuracy}`` in candidate order.
    ranking_ : list of str
        Candidate names, best first; equal scores keep candidate order.
    selected_ : list of str
        Names of the kept candidates, best first.
    selected_candidates_ : list of (str, transformer)
        The kept candidates, fitted, best first.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Column names seen during fit, when X was a DataFrame with string columns.
    input_shape_ : tuple
        Shape of one sample seen during fit.

    See Also
    --------
    GreedyEnsembleClassifier : step 3 of the paper's algorithm.
    make_finetune_sweep : step 2, fine-tuning the selected backbones.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from repens_sklearn import KNNModelSelector
    >>> X, y = load_digits(return_X_y=True)
    >>> selector = KNNModelSelector(
    ...     [("raw", FunctionTransformer()), ("pca2", PCA(2)), ("pca20", PCA(20))],
    ...     n_select=2).fit(X, y)
    >>> selector.selected_
    ['raw', 'pca20']
    >>> selector.transform(X).shape
    (1797, 84)
    """

    _parameter_constraints = {
        "candidates": ["array-like"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "n_select": [Interval(Integral, 1, None, closed="left"), None],
        "threshold": [Interval(Real, 0, 1, closed="both"), None],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, candidates, *, n_neighbors=1, metric="cosine", n_select=15,
                 threshold=None, memory=None, n_jobs=None, random_state=None, verbose=False):
        self.candidates = candidates
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.n_select = n_select
        self.threshold = threshold
        self.memory = memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def get_params(self, deep=True):
        """Parameters of this estimator and, with ``deep``, of each member (``name__param``)."""
        return self._get_params("candidates", deep=deep)

    def set_params(self, **params):
        """Set parameters, including members (``name``) and their parameters (``name__param``)."""
        self._set_params("candidates", **params)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Embed ``X`` with every candidate, score each, and select the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images
            Training inputs, passed unchanged to every candidate.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : KNNModelSelector
        """
        candidates = check_named_list(self.candidates, "candidates")
        n_samples = check_member_inputs(self, X)
        y = _check_classification_y(self, y, n_samples)
        if self.n_neighbors > n_samples - 1:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} samples "
                f"for leave-one-out kNN, got n_samples = {n_samples}"
            )
        seed = None if self.random_state is None else seed_from(self.random_state)
        transformers = [(name, as_transformer(c, name, seed)) for name, c in candidates]
        cached = check_memory(self.memory).cache(fit_embed)
        score = _LOOScore(self.n_neighbors, self.metric, y)
        results = make_parallel(self.n_jobs, self.verbose)(
            delayed(embed_candidate)(cached, name, t, X, y, score) for name, t in transformers
        )
        self.scores_ = {name: s[0] for (name, _), (_, s) in zip(transformers, results)}
        widths = {name: s[1] for (name, _), (_, s) in zip(transformers, results)}
        fitted = {name: est for (name, _), (est, _) in zip(transformers, results)}
        self.ranking_ = _rank(self.scores_)
        self.selected_ = self._select(self.ranking_, self.scores_)
        self.selected_candidates_ = [(name, fitted[name]) for name in self.selected_]
        self._widths = [(name, widths[name]) for name in self.selected_]
        return self

    def _select(self, ranking, scores):
        keep = list(ranking)
        if self.threshold is not None:
            best = scores[ranking[0]]
            keep = [name for name in keep if scores[name] >= self.threshold * best]
        return keep[: self.n_select] if self.n_select is not None else keep

    def transform(self, X):
        """Concatenate the selected candidates' embeddings of ``X`` (float32).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or list of image paths / PIL images
            Inputs shaped like the training inputs.

        Returns
        -------
        Z : ndarray of shape (n_samples, total embedding width)
            Embeddings side by side, in selection order (best first).
        """
        check_is_fitted(self)
        check_member_inputs(self, X, reset=False)
        blocks = make_parallel(self.n_jobs, self.verbose)(
            delayed(_transform_one)(name, t, X) for name, t in self.selected_candidates_
        )
        return np.hstack(blocks)

    def get_feature_names_out(self, input_features=None):
        """Output feature names ``"<candidate>__<i>"``, in the order of :meth:`transform`."""
        check_is_fitted(self)
        names = [f"{name}__{i}" for name, width in self._widths for i in range(width)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class _LOOScore:
    """Picklable scorer run inside the joblib worker, so only a number travels back."""

    def __init__(self, n_neighbors, metric, y):
        self.n_neighbors, self.metric, self.y = n_neighbors, metric, y

    def __call__(self, Z):
        if len(Z) != len(self.y):
            raise ValueError(f"returned {len(Z)} embeddings for {len(self.y)} samples")
        if not np.isfinite(Z).all():
            raise ValueError("returned embeddings holding NaN or infinity")
        score = loo_knn_accuracy(Z, self.y, n_neighbors=self.n_neighbors, metric=self.metric)
        return score, Z.shape[1]


def _transform_one(name, transformer, X):
    try:
        return as_embedding(transformer.transform(X))
    except Exception as exc:
        raise_naming(exc, f"candidate {name!r} failed to transform")


def _rank(scores):
    names = list(scores)
    # stable sort on -score: equal scores keep candidate order
    order = np.argsort(-np.asarray([scores[n] for n in names]), kind="stable")
    return [names[i] for i in order]


def _check_classification_y(estimator, y, n_samples):
    if y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None"
        )
    y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty(n_samples), y)
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs at least 2 classes in y; got 1 class "
            f"({classes[0]!r})"
        )
    return y
