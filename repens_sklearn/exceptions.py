"""The library's public exceptions and warnings, in one module (as ``sklearn.exceptions``).

Code that handles a library error (the ``repens`` CLI included) branches on these types,
never on the text of a message.
"""

from __future__ import annotations

__all__ = ["CollapseWarning", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (``EnSiamPretrainer``, ``FineTuneClassifier``).

    The message names where it happened (epoch / step) and the learning rate, so the
    user knows which setting diverged.
    """


class CollapseWarning(UserWarning):
    """The std of the L2-normalised projections fell towards 0 (SimSiam's collapse)."""
