"""Matplotlib displays of diversity, in scikit-learn's ``XDisplay`` style.

Each display stores the values it draws, ``plot(ax=...)`` draws them and sets
``figure_`` / ``ax_`` (plus the artists), and ``from_estimator(s)`` /
``from_predictions`` compute the values first. matplotlib is imported only
inside ``plot`` (the ``plot`` extra).
"""

from __future__ import annotations

import numpy as np

from .._plotting import figure_axes, pyplot
from ._metrics import _THETA_ALWAYS_WINS, _check_probas, _correct, specialization_angle
from ._pairwise import COLUMNS, collect_probas, pairwise_diversity

# Diagonal of a pairwise matrix: a model paired with itself (no sample has exactly one of
# the two right; "conversion_rate_neither" is 0, set from the accuracies).
_DIAGONAL = {
    "error_inconsistency": 0.0,
    "error_consistency": 1.0,
    "kappa": 1.0,
    "ensemble_gain": 0.0,
    "conversion_rate": np.nan,
}
_GROUPS = ("both correct", "only {a} correct", "only {b} correct", "neither correct")
_GROUP_COLORS = ("tab:green", "tab:blue", "tab:orange", "tab:red")


# --------------------------------------------------------------------------- heat map
class PairwiseDiversityDisplay:
    """Heat map of a pairwise diversity metric over N models.

    Parameters
    ----------
    matrix : ndarray of shape (n_models, n_models)
        Symmetric matrix of the metric.
    names : list of str
        Model names, in matrix order.
    metric : str, default="error_inconsistency"
        Name of the metric (colour-bar label).

    Attributes
    ----------
    im_ : matplotlib AxesImage
    text_ : ndarray of matplotlib Text, or None
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    pairwise_diversity : The table the matrix comes from.

    Examples
    --------
    >>> import numpy as np
    >>> from repens_sklearn.diversity import PairwiseDiversityDisplay
    >>> y = np.array([0, 1, 1, 0])
    >>> probas = {"a": np.eye(2)[[0, 1, 0, 0]], "b": np.eye(2)[[0, 0, 1, 0]]}
    >>> disp = PairwiseDiversityDisplay.from_predictions(y, probas)  # doctest: +SKIP
    """

    def __init__(self, matrix, names, *, metric="error_inconsistency"):
        self.matrix = matrix
        self.names = names
        self.metric = metric

    @classmethod
    def _from_table(cls, table, names, metric, ax, plot_kw, accuracies):
        if metric not in COLUMNS[4:]:
            raise ValueError(f"metric must be one of {COLUMNS[4:]}; got {metric!r}.")
        index = {n: i for i, n in enumerate(names)}
        diag = _DIAGONAL.get(metric, np.nan)
        m = np.full((len(names), len(names)), diag, dtype=float)
        if metric == "ensemble_accuracy":  # a model "ensembled" with itself
            m[np.diag_indices(len(names))] = accuracies
        elif metric == "conversion_rate_neither":  # converts none of its own errors
            m[np.diag_indices(len(names))] = np.where(np.asarray(accuracies) < 1, 0.0, np.nan)
        for a, b, v in zip(table["model_a"], table["model_b"], table[metric]):
            m[index[a], index[b]] = m[index[b], index[a]] = v
        return cls(m, list(names), metric=metric).plot(ax=ax, **(plot_kw or {}))

    @classmethod
    def from_predictions(
        cls,
        y_true,
        probas,
        *,
        metric="error_inconsistency",
        labels=None,
        calibrate=True,
        proba_calib=None,
        y_calib=None,
        averaging="proba",
        ax=None,
        plot_kw=None,
    ):
        """Compute the matrix from stored probabilities and plot it.

        ``probas`` is a dict or list of (name, probability array) pairs;
        ``proba_calib`` gives held-out probabilities per name for calibration
        (without it the temperatures are cross-fitted on ``y_true``). Other
        parameters as in :func:`pairwise_diversity`; ``plot_kw`` goes to
        :meth:`plot`.
        """
        names, ps, y, labels = collect_probas(
            probas,
            None,
            y_true,
            calibrate=calibrate,
            X_calib=proba_calib,
            y_calib=y_calib,
            labels=labels,
        )
        return cls._from_probas(names, ps, y, labels, metric, averaging, ax, plot_kw)

    @classmethod
    def from_estimators(
        cls,
        estimators,
        X,
        y,
        *,
        metric="error_inconsistency",
        calibrate=True,
        X_calib=None,
        y_calib=None,
        averaging="proba",
        ax=None,
        plot_kw=None,
    ):
        """Compute the matrix from fitted classifiers (dict or list of pairs) and plot it.

        Parameters as in :func:`pairwise_diversity` (calibrated by default);
        ``plot_kw`` goes to :meth:`plot`.
        """
        names, ps, y, labels = collect_probas(
            estimators, X, y, calibrate=calibrate, X_calib=X_calib, y_calib=y_calib
        )
        return cls._from_probas(names, ps, y, labels, metric, averaging, ax, plot_kw)

    @classmethod
    def _from_probas(cls, names, probas, y, labels, metric, averaging, ax, plot_kw):
        # the probabilities are calibrated already (or deliberately not)
        table = pairwise_diversity(
            list(zip(names, probas)), y=y, labels=labels, calibrate=False, averaging=averaging
        )
        acc = [_correct(y, p, labels).mean() for p in probas]
        return cls._from_table(table, names, metric, ax, plot_kw, acc)

    def plot(
        self, *, ax=None, cmap="viridis", include_values=True, values_format=".3f", colorbar=True
    ):
        """Draw the heat map.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        cmap : str or Colormap, default="viridis"
        include_values : bool, default=True
            Write each value in its cell.
        values_format : str, default=".3f"
        colorbar : bool, default=True

        Returns
        -------
        self
        """
        fig, ax = figure_axes(f"{type(self).__name__}.plot", ax)
        m = np.asarray(self.matrix, dtype=float)
        n = len(self.names)
        if m.shape != (n, n):
            raise ValueError(f"matrix must have shape ({n}, {n}) for {n} names; got {m.shape}.")
        # Colour scale from the pairs only: the trivial diagonal would squash it.
        off = m[~np.eye(n, dtype=bool)]
        off = off[np.isfinite(off)]
        vmin, vmax = (off.min(), off.max()) if off.size else (None, None)
        self.im_ = ax.imshow(m, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
        self.text_ = None
        if include_values:
            self.text_ = np.empty((n, n), dtype=object)
            mid = (vmin + vmax) / 2 if off.size else 0
            for i in range(n):
                for j in range(n):
                    txt = "" if np.isnan(m[i, j]) else format(m[i, j], values_format)
                    color = "black" if (np.isfinite(m[i, j]) and m[i, j] > mid) else "white"
                    self.text_[i, j] = ax.text(j, i, txt, ha="center", va="center", color=color)
        if colorbar:
            fig.colorbar(self.im_, ax=ax, label=self.metric)
        ax.set(
            xticks=np.arange(n),
            yticks=np.arange(n),
            xticklabels=self.names,
            yticklabels=self.names,
            title=self.metric.replace("_", " "),
        )
        ax.tick_params(axis="x", labelrotation=45)
        self.ax_, self.figure_ = ax, fig
        return self


# --------------------------------------------------------------------------- confidences
class ConfidenceDisplay:
    """Confidence-confidence scatter and histogram of theta (the paper's Fig. 3).

    Left: each sample at (top-1 confidence of A, top-1 confidence of B),
    coloured by which models are right, with the dotted thresholds
    ``c_b = 2 c_a - 1`` and ``c_a = 2 c_b - 1`` beyond which the more confident
    model's top-1 class always wins the probability average. Right: histograms
    of the specialisation angle theta per group; theta > 0 where A is the more
    confident, and the same thresholds are the dotted lines
    ``theta = +-(arctan 2 - pi/4)`` ("No One Representation to Rule Them All",
    Fig. 3 and 9).

    Parameters
    ----------
    confidence_a, confidence_b : ndarray of shape (n_samples,)
        Top-1 confidences.
    theta : ndarray of shape (n_samples,)
        Specialisation angles (:func:`specialization_angle`).
    correct_a, correct_b : ndarray of bool, shape (n_samples,)
        Whether each model is right.
    name_a, name_b : str
        Model names for labels.

    Attributes
    ----------
    scatter_ : dict {group label: PathCollection}
    hist_ : dict {group label: list of patches}
    threshold_lines_ : list of four matplotlib Line2D
        The two thresholds in the scatter, then in the histogram.
    ax_ : ndarray of two matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    specialization_angle : The theta values.
    """

    def __init__(
        self,
        confidence_a,
        confidence_b,
        theta,
        correct_a,
        correct_b,
        *,
        name_a="model A",
        name_b="model B",
    ):
        self.confidence_a = confidence_a
        self.confidence_b = confidence_b
        self.theta = theta
        self.correct_a = correct_a
        self.correct_b = correct_b
        self.name_a = name_a
        self.name_b = name_b

    @classmethod
    def from_predictions(
        cls,
        y_true,
        proba_a,
        proba_b,
        *,
        labels=None,
        name_a="model A",
        name_b="model B",
        ax=None,
        plot_kw=None,
    ):
        """Compute confidences, correctness and theta from two probability arrays and plot."""
        y, pa, pb, labels = _check_probas(y_true, proba_a, proba_b, labels)
        disp = cls(
            pa.max(1),
            pb.max(1),
            specialization_angle(pa, pb),
            _correct(y, pa, labels),
            _correct(y, pb, labels),
            name_a=name_a,
            name_b=name_b,
        )
        return disp.plot(ax=ax, **(plot_kw or {}))

    @classmethod
    def from_estimators(
        cls,
        estimator_a,
        estimator_b,
        X,
        y,
        *,
        name_a=None,
        name_b=None,
        calibrate=True,
        X_calib=None,
        y_calib=None,
        ax=None,
        plot_kw=None,
    ):
        """Same from two fitted classifiers, temperature-calibrated first by default.

        Calibration as in :func:`pairwise_diversity`: on ``X_calib, y_calib``
        when given, else cross-fitted on ``X, y``; ``calibrate=False`` plots the
        raw confidences.
        """
        name_a = name_a or type(estimator_a).__name__
        name_b = name_b or type(estimator_b).__name__
        if name_a == name_b:
            name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
        _, (pa, pb), y, labels = collect_probas(
            [(name_a, estimator_a), (name_b, estimator_b)],
            X,
            y,
            calibrate=calibrate,
            X_calib=X_calib,
            y_calib=y_calib,
        )
        return cls.from_predictions(
            y, pa, pb, labels=labels, name_a=name_a, name_b=name_b, ax=ax, plot_kw=plot_kw
        )

    def _groups(self):
        ca, cb = np.asarray(self.correct_a, bool), np.asarray(self.correct_b, bool)
        masks = (ca & cb, ca & ~cb, ~ca & cb, ~ca & ~cb)
        names = [g.format(a=self.name_a, b=self.name_b) for g in _GROUPS]
        return list(zip(names, masks, _GROUP_COLORS))

    def plot(self, *, ax=None, bins=30, include_consistent=False, alpha=0.5):
        """Draw the scatter (``ax[0]``) and the theta histograms (``ax[1]``).

        Parameters
        ----------
        ax : sequence of two matplotlib Axes, default=None
            A new figure with two panels when None.
        bins : int, default=30
            Histogram bins over ``[-pi/4, pi/4]``.
        include_consistent : bool, default=False
            Also histogram the 'both correct' samples (the paper shows them apart).
        alpha : float, default=0.5

        Returns
        -------
        self
        """
        plt = pyplot(f"{type(self).__name__}.plot")
        if ax is None:
            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax = np.asarray(ax, dtype=object).ravel()
        if len(ax) != 2:
            raise ValueError(f"ax must be a sequence of 2 Axes; got {len(ax)}.")
        fig = ax[0].figure
        self.scatter_, self.hist_ = {}, {}
        edges = np.linspace(-np.pi / 4, np.pi / 4, bins + 1)
        for label, mask, color in self._groups():
            self.scatter_[label] = ax[0].scatter(
                np.asarray(self.confidence_a)[mask],
                np.asarray(self.confidence_b)[mask],
                s=8,
                alpha=alpha,
                color=color,
                label=f"{label} ({mask.sum()})",
            )
            if label != "both correct" or include_consistent:
                _, _, patches = ax[1].hist(
                    np.asarray(self.theta)[mask], bins=edges, alpha=alpha, color=color, label=label
                )
                self.hist_[label] = list(patches)
        ax[0].plot([0, 1], [0, 1], ls=":", color="gray")
        # beyond these lines through (1, 1) the more confident model's top-1 class wins
        self.threshold_lines_ = [
            ax[0].plot([0.5, 1], [0, 1], ls=":", color="black", lw=0.8)[0],
            ax[0].plot([0, 1], [0.5, 1], ls=":", color="black", lw=0.8)[0],
            ax[1].axvline(_THETA_ALWAYS_WINS, ls=":", color="black", lw=0.8),
            ax[1].axvline(-_THETA_ALWAYS_WINS, ls=":", color="black", lw=0.8),
        ]
        ax[0].set(
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            xlabel=f"{self.name_a} confidence",
            ylabel=f"{self.name_b} confidence",
        )
        ax[0].legend(fontsize="small")
        ax[1].axvline(0, ls=":", color="gray")
        ax[1].set(
            xlabel=f"theta  ({self.name_b} confident <-> {self.name_a} confident)", ylabel="samples"
        )
        ax[1].legend(fontsize="small")
        self.ax_, self.figure_ = ax, fig
        return self
