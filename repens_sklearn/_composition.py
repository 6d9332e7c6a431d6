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
        self._check_member_params(params)
        self._set_params(self._members_param, **params)
        return self

    def _check_member_params(self, params):
        """Refuse ``name__param`` for a member that has no ``set_params`` (a name, a module).

        scikit-learn would fail with ``'str' object has no attribute 'set_params'``;
        say instead what to pass. A member replaced in the same call counts as the new one.
        """
        try:
            members = dict(getattr(self, self._members_param) or [])
        except (TypeError, ValueError):  # not a [(name, member)] list: fit says so
            return
        members.update({k: v for k, v in params.items() if k in members})
        for key in params:
            name, sep, param = key.partition("__")
            member = members.get(name)
            if not sep or name not in members or hasattr(member, "set_params"):
                continue
            given = repr(member) if isinstance(member, str) else type(member).__name__
            raise ValueError(
                f"{type(self).__name__}.set_params({key}=...): member {name!r} is given as "
                f"{given}, which has no parameters to set. Replace the member instead: "
                + _replacement_hint(name, member, param)
            )


def _replacement_hint(name, member, param):
    if isinstance(member, str) and member not in ("drop", "passthrough"):
        return (f"set_params({name}=MeanTTAEmbedder(backbone={member!r}, n_augmentations=0, "
                f"backbone_params={{{param!r}: ...}})), whose {name}__backbone_params can be tuned.")
    return f"set_params({name}=<an estimator with a {param!r} parameter>)."
