"""Estimators made of named members, as scikit-learn's ``Pipeline`` and ``FeatureUnion``.

The one home of "what a composite accepts": :func:`check_named_list` validates a
``[(name, member)]`` list (every composite, ``make_finetune_sweep`` and the
diversity tables), :func:`as_embedder` turns a member of an embedding composite
(``TransferabilitySelector``, ``ConcatEmbedder``, ``LearnedEnsembleEmbedder``) into a
transformer, and :class:`NamedMembers` gives them ``get_params`` / ``set_params``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._compat import _BaseComposition

#: What an embedding composite takes as a member, for error messages.
EMBEDDER_KINDS = (
    "a scikit-learn transformer (fit + transform), a registered backbone name, "
    "a torch.nn.Module, 'passthrough' or 'drop'"
)


def check_named_list(items, param, what="embedder", *, owner=None, mapping=False):
    """``items`` as a list of ``(name, member)`` tuples with unique string names, or raise.

    Parameters
    ----------
    items : list of (str, object), or dict when ``mapping``
        The members; a pair may be a tuple or a 2-item list.
    param : str
        The parameter's name, for the messages.
    what : str, default="embedder"
        What a member is, for the messages.
    owner : estimator, default=None
        The composite: names must not be its own parameters (``set_params``
        could not tell them apart).
    mapping : bool, default=False
        Also accept a dict ``{name: member}`` (names turned into str).

    Returns
    -------
    items : list of (str, object)
    """
    kind = f"{'a dict or ' if mapping else ''}a list of (name, {what}) pairs"
    if mapping and isinstance(items, Mapping):
        items = [(str(name), member) for name, member in items.items()]
    if isinstance(items, (str, bytes, Mapping)) or not hasattr(items, "__iter__"):
        raise TypeError(f"{param} must be {kind}; got {type(items).__name__}: {items!r}")
    items = list(items)
    if not items:
        raise ValueError(f"{param} must be a non-empty list of (name, {what}) pairs; got []")
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(
                f"{param}[{i}] must be a (name, {what}) pair with a string name; got {item!r}"
            )
    items = [tuple(item) for item in items]
    _check_names([name for name, _ in items], param, what, owner)
    return items


def _check_names(names, param, what, owner):
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"{param} has duplicate names {duplicates}; give each (name, {what}) "
            "pair a name of its own"
        )
    nested = [name for name in names if "__" in name]
    if nested:
        raise ValueError(
            f"{param}: names must not contain '__' (set_params reads name__param "
            f"as a member's parameter); got {nested}"
        )
    taken = sorted(set(names) & set(owner.get_params(deep=False))) if owner is not None else []
    if taken:
        raise ValueError(
            f"{param}: names {taken} are parameters of {type(owner).__name__}, "
            "so set_params could not tell them apart; rename those members"
        )


def check_embedder(name, member, param):
    """Raise unless ``member`` is a kind an embedding composite takes (:data:`EMBEDDER_KINDS`)."""
    if isinstance(member, str) or _is_module(member):
        return
    if not (hasattr(member, "fit") and hasattr(member, "transform")):
        raise TypeError(
            f"{param}: member {name!r} must be {EMBEDDER_KINDS}; got "
            f"{type(member).__name__}: {member!r}"
        )


def as_embedder(name, member, param, seed=None):
    """The transformer that a member of an embedding composite stands for.

    A registered backbone name or an ``nn.Module`` becomes
    ``MeanTTAEmbedder(backbone=member, n_augmentations=0, random_state=seed)``
    (its plain embedding; ``seed`` fixes a named backbone's initialisation),
    ``"passthrough"`` a ``FunctionTransformer`` (X itself); a transformer is
    returned as it is. ``"drop"`` is left out by :func:`embedding_members`.
    """
    check_embedder(name, member, param)
    if isinstance(member, str) and member == "passthrough":
        from sklearn.preprocessing import FunctionTransformer

        return FunctionTransformer(feature_names_out="one-to-one")
    if isinstance(member, str) or _is_module(member):
        from .embedders import MeanTTAEmbedder  # lazy: embedders import this module

        return MeanTTAEmbedder(backbone=member, n_augmentations=0, random_state=seed)
    return member


def embedding_members(items, param, draw_seed=None, *, owner=None):
    """Checked members of an embedding composite as transformers, ``"drop"`` left out.

    ``draw_seed()`` is called once per member position, in order (``"drop"``
    included, so dropping a member leaves the others' seeds alone); its value is
    the ``random_state`` of a backbone built from a name or module. None: unseeded.
    """
    items = check_embedding_members(items, param, owner=owner)
    seeds = [None if draw_seed is None else draw_seed() for _ in items]
    return [
        (name, as_embedder(name, member, param, seed))
        for (name, member), seed in zip(items, seeds)
        if not _is_drop(member)
    ]


def check_embedding_members(items, param, *, owner=None):
    """``items`` checked as :func:`embedding_members` takes them, nothing built; or raise."""
    items = check_named_list(items, param, owner=owner)
    for name, member in items:
        check_embedder(name, member, param)
    if all(_is_drop(member) for _, member in items):
        raise ValueError(f"{param}: every member is 'drop'; at least one must embed")
    return items


def _is_drop(member):
    return isinstance(member, str) and member == "drop"


def _is_module(obj):
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, nn.Module)


class NamedMembers(_BaseComposition):
    """``get_params`` / ``set_params`` that reach the members of a ``[(name, estimator)]`` list.

    Subclasses name that parameter in ``_members_param`` (``"embedders"``,
    ``"candidates"``, ``"estimators"``), so ``GridSearchCV`` can
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
        return (
            f"set_params({name}=MeanTTAEmbedder(backbone={member!r}, n_augmentations=0, "
            f"backbone_params={{{param!r}: ...}})), whose {name}__backbone_params can be "
            "tuned."
        )
    return f"set_params({name}=<an estimator with a {param!r} parameter>)."
