"""TransferabilitySelector: rank candidate embedders by a transferability score; keep the best."""

from __future__ import annotations

import functools
from numbers import Integral, Real

import numpy as np
from joblib import delayed
from sklearn.base import TransformerMixin
from sklearn.utils import deprecated
from sklearn.utils.validation import check_is_fitted

from .._base import PARAMETER_CONSTRAINTS
from .._compat import Interval, StrOptions, _fit_context
from .._composition import NamedMembers, embedding_members
from .._compute import seed_from
from .._fingerprint import KeyedCache
from .._inputs import check_classification_y, check_member_inputs
from .._member_fitting import as_embedding, fit_embed
from ._candidates import embed_candidate, make_parallel, raise_naming
from ._transferability import (
    etran_score,
    gbc_score,
    hscore,
    knn_loo_score,
    linear_cv_score,
    logme_score,
    mean_rank_score,
    nleep_score,
    sfda_score,
    transrate_score,
)

# name -> (score function, whether it is an accuracy in [0, 1], what its values are called):
# the one list of selection's scorings (SelectionDisplay labels its axis from it)
_SCORINGS = {
    "knn_loo": (knn_loo_score, True, "leave-one-out kNN accuracy"),
    "linear_cv": (linear_cv_score, True, "cross-validated linear accuracy"),
    "logme": (logme_score, False, "LogME (log evidence)"),
    "hscore": (hscore, False, "H-score"),
    "nleep": (nleep_score, False, "NLEEP (log-likelihood)"),
    "sfda": (sfda_score, False, "SFDA (probability of the true class)"),
    "gbc": (gbc_score, False, "GBC (minus the class overlap)"),
    "transrate": (transrate_score, False, "TransRate (coding-rate reduction)"),
    "etran": (etran_score, False, "ETran (energy + LDA score)"),
}


class TransferabilitySelector(TransformerMixin, NamedMembers):
    """Rank candidate representations by a transferability score; keep the best.

    Step 1 of the algorithm of "Deep Ensembles for Low-Data Transfer Learning"
    (Mustafa et al., 2020), section 2.3: every candidate embeds the downstream
    training data once and is scored on those embeddings by a cheap proxy for
    its accuracy after fine-tuning. The paper's proxy (after Puigcerver et al.,
    2020, "Scalable Transfer Learning with Expert Models") is the leave-one-out
    kNN accuracy (``scoring="knn_loo"``, the default); LogME, the H-score, a
    cross-validated linear probe, NLEEP, SFDA, GBC, TransRate and ETran are
    the alternatives, any ``score(Z, y) -> float`` can be given, and a list of
    scorings ranks by the mean rank they give each candidate. The ``n_select``
    best are kept (the paper uses K = 15), or, with ``threshold``, every candidate close enough to
    the best, at most ``n_select`` (section 2.3.1 keeps those within tau = 2 %
    of the best kNN accuracy, i.e. ``threshold=0.98``). The paper's "kNN model
    selection" is ``TransferabilitySelector(scoring="knn_loo")``; this class was
    ``KNNModelSelector`` before 0.2 (a deprecated alias until 0.3).

    All scores are computed from the one embedding of each candidate, inside
    the worker that made it (only numbers travel back); with ``memory`` a refit
    with another ``scoring`` does not embed again. ``transform`` concatenates
    the selected candidates' embeddings, so the selector is also a feature step
    in a :class:`~sklearn.pipeline.Pipeline`.

    Which score to use when, from ``python -m benchmarks.bench_transferability``
    (a zoo of pretrained, self-supervised and random networks on Fashion-MNIST
    and digits; the dated figures are in ``docs/benchmarks.md``):

    - To pick backbones to fine-tune (the paper's use), ``"logme"``: the score
      that tracked fine-tuned accuracy best and most stably over tasks and
      label draws, for one SVD per candidate; a list such as
      ``["logme", "knn_loo", "sfda"]`` ranked about as well, and SFDA, the
      H-score and ETran came close. None was ahead of the others by more
      than the spread over draws, so the default stays the paper's
      ``"knn_loo"``.
    - To keep the backbones frozen under a linear head, ``"linear_cv"``, or
      cosine ``"knn_loo"`` at a small fraction of its cost.
    - ``"knn_loo"``, the default, can rank random networks first on tiny
      images (8x8 digits), whose raw features suit a kNN yet fine-tune worse.
    - ``"gbc"`` tracked fine-tuning least of the new scores; ``"nleep"`` and
      ``"transrate"`` about as well as ``"knn_loo"``.
    - ``"hscore"`` is not recommended for embeddings wider than the number of
      samples: with the pseudo-inverse every such candidate reaches the
      ceiling ``n_classes - 1``; shrinkage removes the ties.

    Parameters
    ----------
    candidates : list of (str, object)
        Named candidates. A candidate is a scikit-learn transformer (fitted ones
        are used as they are, unfitted ones are cloned and fitted on ``(X, y)``;
        ``clone`` resets fitted ones unless wrapped in
        ``sklearn.frozen.FrozenEstimator``),
        a registered backbone name or a ``torch.nn.Module`` (the last two
        wrapped in ``MeanTTAEmbedder(backbone=..., n_augmentations=0)``),
        ``"passthrough"`` (X itself, a raw-feature baseline) or ``"drop"``: the
        members ``ConcatEmbedder`` and ``LearnedEnsembleEmbedder`` take.
    scoring : str, callable or list of them, default="knn_loo"
        Transferability score, larger is better:

        - ``"knn_loo"``: leave-one-out kNN accuracy (:func:`knn_loo_score` with
          ``n_neighbors`` and ``metric``), the paper's;
        - ``"logme"``: LogME, the maximum log evidence per sample of a Bayesian
          linear model (:func:`logme_score`);
        - ``"hscore"``: H-score with Ledoit-Wolf shrinkage (:func:`hscore`);
        - ``"linear_cv"``: 5-fold accuracy of a standardised logistic
          regression (:func:`linear_cv_score`);
        - ``"nleep"``, ``"sfda"``, ``"gbc"``, ``"transrate"``, ``"etran"``:
          :func:`nleep_score`, :func:`sfda_score`, :func:`gbc_score`,
          :func:`transrate_score`, :func:`etran_score` with their papers'
          defaults;
        - a list of the above: each candidate gets the mean over the
          scorings of its normalized rank (:func:`mean_rank_score`, in
          ``[0, 1]``, 1 for the best of every scoring), so no one score's
          scale or instability decides alone;
        - a callable ``score(Z, y) -> float`` on a candidate's float32
          embeddings ``(n_samples, width)`` and the labels as given, e.g.
          ``functools.partial(hscore, shrinkage=0)``. It runs in the joblib
          workers, so it must pickle when ``n_jobs`` dispatches.
    n_neighbors : int, default=1
        Neighbours voting in the kNN classifier of ``scoring="knn_loo"``
        (unused otherwise). Equal vote counts go to the class of the nearest
        neighbour among the tied classes.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance of the kNN classifier of ``scoring="knn_loo"`` (unused
        otherwise; cosine normalizes the embeddings once). Euclidean is the
        paper's ("Deep Ensembles for Low-Data Transfer Learning", sec. 3.1),
        which suspects cosine might rank features of different widths better
        (appendix C.7). On the benchmark zoo (``docs/benchmarks.md``)
        Euclidean tracked fine-tuned accuracy better and cosine the linear
        probe: the default follows the paper's use, ranking for fine-tuning.
    n_select : int or None, default=15
        Most candidates kept (paper: K = 15). None keeps all (or all within
        ``threshold``).
    threshold : float in [0, 1] or None, default=None
        Keep the candidates scoring at least ``floor + threshold * (best -
        floor)``, where ``floor`` is 0 for the accuracies (``"knn_loo"``,
        ``"linear_cv"``: ``threshold`` is the paper's fraction of the best
        score) and the worst candidate's score for the unbounded scores
        (``"logme"``, which can be negative, the other scores, lists and
        callables: a
        fraction of the range on min-max normalized scores, so 1 keeps the
        best only and 0 keeps all). The best candidate is always kept.
    memory : str, joblib.Memory or None, default=None
        Caches each candidate's fit and embedding (as in ``Pipeline``), so a
        refit with other selection settings (``scoring`` included) does not
        embed again. The key holds all of X, the weights of module candidates
        and the identity (path, size, modification time) of every file named
        in X or the candidates' parameters: an overwritten image or weights
        file is embedded afresh.
    n_jobs : int or None, default=None
        Candidates embedded (and scored) in parallel by ``joblib.Parallel``; use
        ``joblib.parallel_config(backend="dask")`` to run them on a cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds the backbones built for candidates given as registered names
        (their random initialisation), so scores repeat from fit to fit.
    verbose : int or bool, default=False
        joblib verbosity while embedding.

    Attributes
    ----------
    scores_ : dict
        ``{name: score}`` in candidate order (the leave-one-out kNN accuracy
        with the default ``scoring``; the mean normalized rank for a list).
    component_scores_ : dict
        Only for a list ``scoring``: ``{scoring name: {name: score}}``, each
        scoring's own values (a callable is named by its ``__qualname__``).
    ranking_ : list of str
        Candidate names, best first; equal scores keep candidate order.
    threshold_score_ : float or None
        The least score ``threshold`` kept (None without ``threshold``).
    selected_ : list of str
        Names of the kept candidates, best first.
    selected_candidates_ : list of (str, transformer)
        The kept candidates, fitted, best first.
    embedding_widths_ : dict
        ``{name: embedding width}`` of every candidate, in candidate order.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Column names seen during fit, when X was a DataFrame with string columns.
    input_shape_ : tuple
        Shape of one sample seen during fit.

    See Also
    --------
    knn_loo_score, logme_score, hscore, linear_cv_score : the scores.
    nleep_score, sfda_score, gbc_score, transrate_score, etran_score : more scores.
    mean_rank_score : the aggregate of a list ``scoring``.
    GreedyEnsembleClassifier : step 3 of the paper's algorithm.
    make_finetune_sweep : step 2, fine-tuning the selected backbones.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from repens_sklearn import TransferabilitySelector
    >>> X, y = load_digits(return_X_y=True)
    >>> selector = TransferabilitySelector(
    ...     [("raw", FunctionTransformer()), ("pca2", PCA(2)), ("pca20", PCA(20))],
    ...     n_select=2).fit(X, y)
    >>> selector.selected_
    ['raw', 'pca20']
    >>> selector.transform(X).shape
    (1797, 84)
    >>> TransferabilitySelector([("raw", FunctionTransformer()), ("pca2", PCA(2))],
    ...                         scoring="logme", n_select=1).fit(X / 16, y).selected_
    ['raw']
    """

    _members_param = "candidates"
    _parameter_constraints = {
        "candidates": ["array-like"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "n_select": [Interval(Integral, 1, None, closed="left"), None],
        "threshold": [Interval(Real, 0, 1, closed="both"), None],
        "scoring": [StrOptions(set(_SCORINGS)), callable, list],
        "memory": PARAMETER_CONSTRAINTS["memory"],
        "n_jobs": PARAMETER_CONSTRAINTS["n_jobs"],
        "random_state": PARAMETER_CONSTRAINTS["random_state"],
        "verbose": PARAMETER_CONSTRAINTS["verbose"],
    }

    def __init__(
        self,
        candidates,
        *,
        scoring="knn_loo",
        n_neighbors=1,
        metric="euclidean",
        n_select=15,
        threshold=None,
        memory=None,
        n_jobs=None,
        random_state=None,
        verbose=False,
    ):
        self.candidates = candidates
        self.scoring = scoring
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.n_select = n_select
        self.threshold = threshold
        self.memory = memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

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
        self : TransferabilitySelector
        """
        seed = None if self.random_state is None else seed_from(self.random_state)
        # every candidate gets the same seed (a named backbone's initialisation)
        transformers = embedding_members(self.candidates, "candidates", lambda: seed, owner=self)
        n_samples = check_member_inputs(self, X)
        y, _, _ = check_classification_y(self, y, n_samples)
        scorings = _scoring_list(self.scoring)
        if "knn_loo" in scorings and self.n_neighbors > n_samples - 1:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} samples "
                f"for leave-one-out kNN, got n_samples = {n_samples}"
            )
        # keyed on file contents and module weights, not on path strings
        cached = KeyedCache(self.memory, fit_embed)
        score = _Scorer(self.scoring, self.n_neighbors, self.metric, y)
        results = make_parallel(self.n_jobs, self.verbose)(
            delayed(embed_candidate)(cached, name, t, X, y, score) for name, t in transformers
        )
        names = [name for name, _ in transformers]
        self.scores_ = {name: s for name, (_, (s, _)) in zip(names, results)}
        if isinstance(self.scoring, list):  # one row per scoring, aggregated by mean rank
            table = np.array([self.scores_[name] for name in names]).T
            labels = _unique_labels([_scoring_name(s) for s in scorings])
            self.component_scores_ = {
                label: dict(zip(names, row)) for label, row in zip(labels, table.tolist())
            }
            self.scores_ = dict(zip(names, mean_rank_score(table).tolist()))
        self.embedding_widths_ = {name: width for name, (_, (_, width)) in zip(names, results)}
        fitted = {name: est for name, (est, _) in zip(names, results)}
        self.ranking_ = _rank(self.scores_)
        self.threshold_score_ = self._cutoff(self.scores_)
        self.selected_ = self._select(self.ranking_, self.scores_, self.threshold_score_)
        self.selected_candidates_ = [(name, fitted[name]) for name in self.selected_]
        return self

    def _cutoff(self, scores):
        """Least score ``threshold`` keeps: a fraction of the best, or of the best - worst range."""
        if self.threshold is None:
            return None
        values = np.asarray(list(scores.values()), dtype=np.float64)
        floor = 0.0 if _is_accuracy(self.scoring) else values.min()
        return float(floor + self.threshold * (values.max() - floor))

    def _select(self, ranking, scores, cutoff):
        keep = list(ranking)
        if cutoff is not None:  # the best is always kept (rounding in the cutoff)
            keep = [name for name in keep if name == ranking[0] or scores[name] >= cutoff]
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
        """Output feature names ``"<candidate>__<i>"``, in the order of :meth:`transform`.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored: the names come from the selected candidates.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names = [
            f"{name}__{i}" for name in self.selected_ for i in range(self.embedding_widths_[name])
        ]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _is_accuracy(scoring):
    return isinstance(scoring, str) and _SCORINGS[scoring][1]


def _scoring_list(scoring):
    """The scorings of ``scoring`` as a list; a list must hold names or callables."""
    if not isinstance(scoring, list):
        return [scoring]
    bad = [s for s in scoring if not (callable(s) or (isinstance(s, str) and s in _SCORINGS))]
    if not scoring or bad:
        raise ValueError(
            "scoring: a list must hold at least one of the names "
            f"{sorted(_SCORINGS)} or callables; got {scoring!r}"
        )
    return scoring


def _scoring_name(scoring):
    return scoring if isinstance(scoring, str) else _callable_name(scoring)


class _Scorer:
    """Picklable scorer run inside the joblib worker, so only numbers travel back."""

    def __init__(self, scoring, n_neighbors, metric, y):
        self.scoring, self.n_neighbors, self.metric, self.y = scoring, n_neighbors, metric, y

    def __call__(self, Z):
        if len(Z) != len(self.y):
            raise ValueError(f"returned {len(Z)} embeddings for {len(self.y)} samples")
        if not np.isfinite(Z).all():
            raise ValueError("returned embeddings holding NaN or infinity")
        return self._score(Z), Z.shape[1]

    def _score(self, Z):
        if isinstance(self.scoring, list):
            return tuple(self._one(scoring, Z) for scoring in self.scoring)
        return self._one(self.scoring, Z)

    def _one(self, scoring, Z):
        if scoring == "knn_loo":
            return knn_loo_score(Z, self.y, n_neighbors=self.n_neighbors, metric=self.metric)
        if isinstance(scoring, str):
            return _SCORINGS[scoring][0](Z, self.y)
        return _as_score(scoring(Z, self.y), scoring)


def _as_score(value, fn):
    """``value`` as a float, or an error naming the scoring callable."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(
            f"scoring callable {_callable_name(fn)} returned {value!r}; it must return one "
            "finite real number"
        )
    return float(value)


def _callable_name(fn):
    if isinstance(fn, functools.partial):  # name what it calls and with what
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"{_callable_name(fn.func)}({', '.join(args)})"
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _unique_labels(labels):
    """``labels`` with repeats numbered (``name#2``), so no scoring's row is lost."""
    seen, out = {}, []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


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


@deprecated(
    "it was renamed TransferabilitySelector in 0.2 (it ranks by any transferability "
    "score; scoring='knn_loo' is the paper's kNN model selection) and will be removed "
    "in 0.3."
)
class KNNModelSelector(TransferabilitySelector):
    pass


# the parameters are those of TransferabilitySelector (its examples run there only)
KNNModelSelector.__doc__ = (
    "Deprecated alias of :class:`TransferabilitySelector` (removed in 0.3).\n\n"
    "    .. deprecated:: 0.2\n"
    "       ``KNNModelSelector`` was renamed ``TransferabilitySelector``.\n"
    + TransferabilitySelector.__doc__.split("    Examples\n    --------\n")[0].split("\n", 1)[1]
)
