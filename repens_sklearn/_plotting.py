"""What every matplotlib display shares: pyplot imported only when drawing, and its axes.

The displays live beside their domain (``diversity``, ``selection``) and follow
scikit-learn's ``XDisplay`` style; matplotlib is the ``plot`` extra, so it is
imported inside ``plot`` only.
"""

from __future__ import annotations


def pyplot(caller):
    """``matplotlib.pyplot``, or an ImportError that names ``caller`` and the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib. Install it with `pip install matplotlib` or "
            '`pip install "repens-sklearn[plot]"`.'
        ) from exc
    return plt


def figure_axes(caller, ax):
    """``(figure, ax)``: ``ax``'s figure, or a new figure with one Axes when ``ax`` is None."""
    plt = pyplot(caller)
    if ax is None:
        fig, ax = plt.subplots()
    return ax.figure, ax
