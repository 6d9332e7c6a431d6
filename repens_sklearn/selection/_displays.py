"""Matplotlib displays of model selection, in scikit-learn's ``XDisplay`` style.

:class:`SelectionDisplay` draws a fitted :class:`TransferabilitySelector`'s scores and
:class:`EnsembleCurveDisplay` a fitted :class:`GreedyEnsembleClassifier`'s
validation curve. They live beside the estimators they read (and are still
importable from ``repens_sklearn.diversity``, their former home). matplotlib is
imported only inside ``plot`` (the ``plot`` extra).
"""

from __future__ import annotations

import numpy as np

from .._plotting import figure_axes
from ._selector import _SCORINGS


def score_label(scoring):
    """What the values of a ``TransferabilitySelector`` ``scoring`` are called (an axis label).

    A registered scoring name gets the label listed with it in the selector's
    scorings; another string is its own label; a callable its ``__name__``.
    """
    if isinstance(scoring, str):
        return _SCORINGS[scoring][2] if scoring in _SCORINGS else scoring
    if isinstance(scoring, list):  # TransferabilitySelector's rank aggregate
        return "mean rank of " + ", ".join(score_label(s) for s in scoring)
    return getattr(scoring, "__name__", type(scoring).__name__)


def _lower_is_better(scoring):
    text = str(scoring).lower()
    return ("loss" in text or "error" in text) and not text.startswith("neg_")


# --------------------------------------------------------------------------- greedy curve
class EnsembleCurveDisplay:
    """Validation score of a greedy ensemble against its size.

    Parameters
    ----------
    validation_curve : array-like of shape (n_picks,)
        Entry i is the score after i + 1 picks.
    scoring : str, default="log_loss"
        Name of the metric (axis label); a name containing 'loss' or 'error'
        (and not starting with 'neg_') means lower is better.
    candidate_scores : dict {name: score}, default=None
        Score of each candidate alone; the best one is drawn as a horizontal line.
    ensemble : list of str, default=None
        Pick order, written along the curve.
    name : str, default=None
        Legend label of the curve.

    Attributes
    ----------
    line_ : matplotlib Line2D
    best_point_ : matplotlib PathCollection (the chosen size)
    best_candidate_line_ : matplotlib Line2D or None
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from repens_sklearn.selection import EnsembleCurveDisplay
    >>> disp = EnsembleCurveDisplay([0.5, 0.4, 0.42], scoring="log_loss")  # doctest: +SKIP
    >>> disp.plot()  # doctest: +SKIP
    """

    def __init__(
        self,
        validation_curve,
        *,
        scoring="log_loss",
        candidate_scores=None,
        ensemble=None,
        name=None,
    ):
        self.validation_curve = validation_curve
        self.scoring = scoring
        self.candidate_scores = candidate_scores
        self.ensemble = ensemble
        self.name = name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, plot_kw=None):
        """Read a fitted ``GreedyEnsembleClassifier`` and plot.

        Uses its ``validation_curve_``, ``candidate_scores_``, ``ensemble_`` and
        ``scoring`` (duck-typed: any object with those attributes works).
        """
        missing = [a for a in ("validation_curve_", "ensemble_") if not hasattr(estimator, a)]
        if missing:
            raise ValueError(
                f"EnsembleCurveDisplay.from_estimator needs a fitted GreedyEnsembleClassifier "
                f"(with {', '.join(missing)}); got {type(estimator).__name__} without them. "
                "Call fit first."
            )
        disp = cls(
            estimator.validation_curve_,
            scoring=getattr(estimator, "scoring", "score"),
            candidate_scores=getattr(estimator, "candidate_scores_", None),
            ensemble=list(estimator.ensemble_),
            name=name or type(estimator).__name__,
        )
        return disp.plot(ax=ax, **(plot_kw or {}))

    def plot(self, *, ax=None, annotate=True):
        """Draw score against ensemble size; mark the best size and the best single candidate.

        Returns
        -------
        self
        """
        fig, ax = figure_axes(f"{type(self).__name__}.plot", ax)
        curve = np.asarray(self.validation_curve, dtype=float).ravel()
        if curve.size == 0:
            raise ValueError("validation_curve is empty; nothing to plot.")
        sizes = np.arange(1, curve.size + 1)
        lower = _lower_is_better(self.scoring)
        (self.line_,) = ax.plot(sizes, curve, marker="o", label=self.name or "greedy ensemble")
        best = int(np.argmin(curve) if lower else np.argmax(curve))
        self.best_point_ = ax.scatter(
            [sizes[best]],
            [curve[best]],
            s=120,
            facecolors="none",
            edgecolors="red",
            zorder=3,
            label=f"best size {best + 1}",
        )
        self.best_candidate_line_ = None
        if self.candidate_scores:
            vals = dict(self.candidate_scores)
            top = min(vals, key=vals.get) if lower else max(vals, key=vals.get)
            self.best_candidate_line_ = ax.axhline(
                vals[top], ls="--", color="gray", label=f"best single: {top}"
            )
        if annotate and self.ensemble is not None:
            for s, v, pick in zip(sizes, curve, self.ensemble):
                ax.annotate(
                    str(pick),
                    (s, v),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize="x-small",
                )
        ax.set(
            xlabel="ensemble size (greedy picks)",
            ylabel=f"validation {self.scoring}" + (" (lower is better)" if lower else ""),
        )
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, fig
        return self


# --------------------------------------------------------------------------- kNN selection
class SelectionDisplay:
    """Candidate kNN scores as horizontal bars, the selected ones highlighted.

    Parameters
    ----------
    scores : dict {name: score}
        Leave-one-out kNN accuracy of each candidate.
    selected : list of str, default=None
        Selected candidate names (highlighted).
    ranking : list of str, default=None
        Order of the bars, best first; default by decreasing score.
    score_name : str, default="leave-one-out kNN accuracy"
        Label of the score axis (``from_estimator`` names the selector's ``scoring``).

    Attributes
    ----------
    bars_ : matplotlib BarContainer (one bar per candidate, top = best)
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from repens_sklearn.selection import SelectionDisplay
    >>> disp = SelectionDisplay({"a": 0.9, "b": 0.7}, selected=["a"])  # doctest: +SKIP
    >>> disp.plot()  # doctest: +SKIP
    """

    def __init__(
        self, scores, *, selected=None, ranking=None, score_name="leave-one-out kNN accuracy"
    ):
        self.scores = scores
        self.selected = selected
        self.ranking = ranking
        self.score_name = score_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, plot_kw=None):
        """Plot a fitted ``TransferabilitySelector``'s ``scores_``, ``ranking_``, ``selected_``."""
        if not hasattr(estimator, "scores_"):
            raise ValueError(
                "SelectionDisplay.from_estimator needs a fitted TransferabilitySelector (with "
                f"scores_); got {type(estimator).__name__} without it. Call fit first."
            )
        disp = cls(
            dict(estimator.scores_),
            selected=list(getattr(estimator, "selected_", [])),
            ranking=list(getattr(estimator, "ranking_", None) or []) or None,
            score_name=score_label(getattr(estimator, "scoring", "knn_loo")),
        )
        return disp.plot(ax=ax, **(plot_kw or {}))

    def plot(self, *, ax=None, color="tab:blue", other_color="lightgray"):
        """Draw the bars (best at the top) with each score written at its end.

        Returns
        -------
        self
        """
        fig, ax = figure_axes(f"{type(self).__name__}.plot", ax)
        scores = dict(self.scores)
        if not scores:
            raise ValueError("scores is empty; nothing to plot.")
        order = list(self.ranking) if self.ranking else sorted(scores, key=lambda n: -scores[n])
        unknown = set(order) ^ set(scores)
        if unknown:
            raise ValueError(f"ranking and scores name different candidates: {sorted(unknown)}.")
        selected = set(self.selected or [])
        unknown = selected - set(scores)
        if unknown:
            raise ValueError(f"selected names unknown candidates: {sorted(unknown)}.")
        order = order[::-1]  # barh draws bottom-up; best on top
        values = [scores[n] for n in order]
        colors = [color if n in selected else other_color for n in order]
        self.bars_ = ax.barh(order, values, color=colors)
        for bar, v in zip(self.bars_, values):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {v:.3f}",
                va="center",
                fontsize="small",
            )
        ax.set(
            xlabel=self.score_name, title=f"{len(selected)} of {len(scores)} candidates selected"
        )
        if min(values) >= 0 and max(values) <= 1:  # accuracies: the whole [0, 1] range
            ax.set_xlim(0, 1.1)
        self.ax_, self.figure_ = ax, fig
        return self
