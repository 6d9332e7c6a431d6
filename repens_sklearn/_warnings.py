"""Warnings that point at the user's line, not at the library or the libraries it calls."""

from __future__ import annotations

import os
import sys
import warnings


def _package_dirs():
    import joblib
    import sklearn
    import skorch
    import torch

    here = os.path.dirname(os.path.abspath(__file__))
    return tuple(
        os.path.dirname(os.path.abspath(m.__file__)) + os.sep
        for m in (sklearn, skorch, joblib, torch)
    ) + (here + os.sep,)


def warn(message, category=UserWarning):
    """``warnings.warn`` with the stack level of the first frame outside the library.

    Frames of repens_sklearn and of scikit-learn, skorch, joblib and torch (which
    call our estimators back) are skipped, so the warning names the user's code
    (Python 3.12's ``skip_file_prefixes``, written for 3.10+).
    """
    internal = _package_dirs()
    frame, level = sys._getframe(1), 2  # level 2: the frame that called warn()
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
