"""The library's public exceptions and warnings, in one module (as ``sklearn.exceptions``).

Code that handles a library error (the ``repens`` CLI included) branches on these types,
never on the text of a message.
"""

from __future__ import annotations

__all__ = [
    "CandidateDroppedWarning",
    "CollapseWarning",
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
