"""Estimators made of named members, as scikit-learn's ``Pipeline`` and ``FeatureUnion``."""

from __future__ import annotations

from ._compat import _BaseComposition


class NamedMembers(_BaseComposition):
    """``get_params`` / ``set_params`` that reach the members of a ``[(name, estimator)]`` list.

    Subclasses name that parameter in ``_members_param`` (``"embedders"``,
    ``"backbones"``, ``"candidates"``, ``"estimators"``), so ``GridSearchCV`` can
    tune ``name__param`` and replace a member by its ``name``.
    """

    _members_param: str

    def get_params(self, deep=True):
        """Get the parameters of this estimator and, with ``deep``, of its members.

        Parameters
        ----------
        deep : bool, default=True
            Also return each member as ``name`` and its parameters as
            ``name__param``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params(self._members_param, deep=deep)

    def set_params(self, **params):
        """Set parameters, including members (``name``) and their parameters (``name__param``).

        Parameters
        ----------
        **params : dict
            Estimator parameters; a member's name replaces that member
            (``"drop"`` leaves it out where the estimator allows it).

        Returns
        -------
        self : estimator instance
        """
        self._set_params(self._members_param, **params)
        return self
