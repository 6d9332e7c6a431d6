"""Turn an estimator's ``backbone`` parameter into a ready ``nn.Module``."""

from __future__ import annotations

import copy
import inspect
import math
import os

import torch
from torch import nn

from .._plugins import _lookup


def build_backbone(backbone, backbone_params, sample_shape, *, param_name="backbone"):
    """Build the module that ``backbone`` names, adapted to samples of ``sample_shape``.

    ``backbone`` is a registered name, an ``nn.Module`` (deep-copied, so the
    user's module is never changed), or a fitted estimator of this library that
    embeds (it has ``as_backbone()``). For a registered name, ``in_features``
    (vectors) or ``in_chans`` (images) are filled in from the data when the
    factory accepts them and ``backbone_params`` does not give them.
    """
    params = dict(backbone_params or {})
    if isinstance(backbone, str):
        factory = _lookup("backbone", backbone)
        params = _infer_input_params(factory, params, sample_shape)
        try:
            module = factory(**params)
        except TypeError as exc:
            raise ValueError(
                f"{param_name}={backbone!r} does not accept {param_name}_params="
                f"{backbone_params!r}: {exc}"
            ) from exc
        _match_cfg_channels(module, params.get("in_chans"))
    elif isinstance(backbone, nn.Module):
        _reject_params(params, param_name, "an nn.Module")
        module = copy.deepcopy(backbone)
    elif callable(getattr(backbone, "as_backbone", None)):
        _reject_params(params, param_name, "a fitted estimator")
        module = _fitted_backbone(backbone, param_name)
    else:
        raise TypeError(
            f"{param_name} must be a registered backbone name, a torch.nn.Module or a "
            f"fitted repens_sklearn embedder, got {type(backbone).__name__}: {backbone!r}"
        )
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"{param_name}={backbone!r} built a {type(module).__name__}, not an nn.Module"
        )
    return module


def _fitted_backbone(estimator, param_name):
    from sklearn.exceptions import NotFittedError

    try:
        return estimator.as_backbone()
    except NotFittedError as exc:
        name = type(estimator).__name__
        raise NotFittedError(
            f"{param_name}={name}(...) is not fitted: clone() (cross_val_score, GridSearchCV, "
            f"a Pipeline refit) resets a fitted estimator given as a parameter. Wrap it in "
            f"sklearn.frozen.FrozenEstimator({name}) or pass fitted.as_backbone() instead"
        ) from exc


def _reject_params(params, param_name, what):
    if params:
        raise ValueError(
            f"{param_name}_params={params!r} can only be used when {param_name} is a "
            f"registered name, not {what}"
        )


def _infer_input_params(factory, params, sample_shape):
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return params
    is_vector = len(sample_shape) == 1
    if "in_features" in accepted and params.get("in_features") is None:
        params["in_features"] = int(math.prod(sample_shape))
    if (
        "in_chans" in accepted
        and "in_chans" not in params
        and not is_vector
        and not _asks_for_pretrained(params)
    ):
        params["in_chans"] = int(sample_shape[0])
    return params


def _match_cfg_channels(module, in_chans):
    """A network built for ``in_chans`` channels whose ``pretrained_cfg`` still names 3
    (a timm model from random weights on grey images) is fed ``in_chans`` channels."""
    cfg = getattr(module, "pretrained_cfg", None)
    if not cfg or in_chans is None or "input_size" not in cfg or cfg["input_size"][0] == in_chans:
        return
    cfg = dict(cfg, input_size=(int(in_chans), *cfg["input_size"][1:]))
    for key in ("mean", "std"):
        if key in cfg and len(cfg[key]) != in_chans:
            cfg[key] = (sum(cfg[key]) / len(cfg[key]),) * int(in_chans)
    module.pretrained_cfg = cfg


def _asks_for_pretrained(params):
    """Pretrained weights (``pretrained=True`` or a weights *name* such as torchvision's
    ``"DEFAULT"``) fix the input channels: grey images are repeated to RGB by the
    preprocessing instead of changing the network's first layer."""
    weights = params.get("weights")
    named_weights = (
        isinstance(weights, str)
        and not os.path.exists(weights)
        and (os.sep not in weights and "." not in weights)
    )
    return bool(params.get("pretrained")) or named_weights


def check_backbone_accepts(module, example, *, backbone_name="backbone"):
    """Run one example through ``module``; return its embedding width or raise clearly."""
    try:
        return _forward_width(module, example)
    except Exception as exc:
        raise ValueError(
            f"backbone {backbone_name!r} cannot take inputs of shape "
            f"{tuple(example.shape[1:])}: {type(exc).__name__}: {exc}"
        ) from exc


@torch.no_grad()
def _forward_width(module, example):
    was_training = module.training
    module.eval()
    try:
        out = module(example[:1])
    finally:
        module.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the backbone returned shape {tuple(out.shape)}; expected (batch, dim)")
    declared = getattr(module, "embedding_dim", None)
    if declared is not None and int(declared) != out.shape[1]:
        raise ValueError(f"embedding_dim={declared} but the output has {out.shape[1]} columns")
    return int(out.shape[1])
