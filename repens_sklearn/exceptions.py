"""The library's public exceptions and warnings, in one module (as ``sklearn.exceptions``).

Code that handles a library error (the ``repens`` CLI included) branches on these types,
never on the text of a message.
"""

from __future__ import annotations

__all__ = [
    "CandidateDroppedWarning",
    "CollapseWarning",
    "ImageDecodeError",
    "InputRangeWarning",
    "NonFiniteLossError",
    "NonFiniteOutputError",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (``EnSiamPretrainer``, ``FineTuneClassifier``).

    The message names where it happened (epoch / step) and the learning rate, so the
    user knows which setting diverged.
    """


class CollapseWarning(UserWarning):
    """The std of the L2-normalised projections fell towards 0 (SimSiam's collapse)."""


class NonFiniteOutputError(FloatingPointError):
    """A fitted model's outputs are NaN or infinite (e.g. ``FineTuneClassifier`` whose
    weights or inputs are so large that its logits overflow).

    The message names the model and how many samples are affected.
    """


class CandidateDroppedWarning(UserWarning):
    """``GreedyEnsembleClassifier`` left a candidate out: its training diverged
    (``NonFiniteLossError`` / ``NonFiniteOutputError``) or its validation
    probabilities are not finite probabilities. The message names the candidate and why.
    """


class ImageDecodeError(ValueError):
    """An image (a file or a PIL image) cannot be decoded as a viewer would show it.

    The file is unreadable, or its pixels have no scale we can tell (a float or
    32-bit integer grey image with negative, non-finite or too large values).
    The message names the image (its path or its index in X) and why.
    """


class InputRangeWarning(UserWarning):
    """Values outside the range an input is read in: a float image array outside [0, 1]
    fed to a pretrained backbone (whose mean / std apply to [0, 1] pixels).
    The message names the range found and the backbone.
    """
