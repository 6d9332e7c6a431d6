"""Turn an estimator's ``backbone`` parameter into a ready ``nn.Module``."""

from __future__ import annotations

import copy
import inspect
import math

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
    elif isinstance(backbone, nn.Module):
        _reject_params(params, param_name, "an nn.Module")
        module = copy.deepcopy(backbone)
    elif callable(getattr(backbone, "as_backbone", None)):
        _reject_params(params, param_name, "a fitted estimator")
        module = backbone.as_backbone()
    else:
        raise TypeError(
            f"{param_name} must be a registered backbone name, a torch.nn.Module or a "
            f"fitted repens_sklearn embedder, got {type(backbone).__name__}: {backbone!r}"
        )
    if not isinstance(module, nn.Module):
        raise TypeError(f"{param_name}={backbone!r} built a {type(module).__name__}, not an nn.Module")
    return module


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
    if "in_chans" in accepted and "in_chans" not in params and not is_vector:
        params["in_chans"] = int(sample_shape[0])
    return params


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
