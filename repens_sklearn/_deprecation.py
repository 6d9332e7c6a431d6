"""Renamed parameters of the 0.x series, in scikit-learn's deprecation pattern.

The old name stays a parameter whose default is the string ``"deprecated"``
(hidden from the documented options); :func:`renamed_param` resolves it in
``fit``: a FutureWarning that names the new parameter when only the old one is
set, an error when both are.
"""

from __future__ import annotations

import warnings

from ._compat import Hidden, StrOptions

#: Default of a renamed parameter's old name: "not given".
DEPRECATED = "deprecated"
#: The release that renamed the parameters and the one that removes the old names.
RENAMED_IN, REMOVED_IN = "0.2", "0.3"


def deprecated_constraint(*constraints):
    """``_parameter_constraints`` entry of an old name: its old options plus the sentinel."""
    return [*constraints, Hidden(StrOptions({DEPRECATED}))]


def renamed_param(estimator, old, new, *, new_default=None):
    """The value to use for ``new``, taking the deprecated ``old`` name into account.

    Parameters
    ----------
    estimator : estimator instance
        Holds both parameters as attributes.
    old, new : str
        The deprecated and the current parameter names.
    new_default : object, default=None
        The default of ``new``: any other value means ``new`` was set too.

    Returns
    -------
    value : object
        ``new``'s value, or ``old``'s when only the old name was set.
    """
    old_value, new_value = getattr(estimator, old), getattr(estimator, new)
    if isinstance(old_value, str) and old_value == DEPRECATED:
        return new_value
    if new_value is not new_default:
        raise ValueError(
            f"{type(estimator).__name__}: both `{old}` and `{new}` were set. `{old}` was "
            f"renamed `{new}` in {RENAMED_IN} and will be removed in {REMOVED_IN}; "
            f"set only `{new}`."
        )
    warnings.warn(
        f"`{old}` was renamed `{new}` in {RENAMED_IN} and will be removed in {REMOVED_IN}; "
        f"use `{new}` instead.",
        FutureWarning,
        stacklevel=3,
    )
    return old_value
