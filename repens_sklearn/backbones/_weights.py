"""Load local weight files into a backbone (nothing is ever downloaded)."""

from __future__ import annotations

import os

import torch


def load_state_dict_file(path) -> dict:
    """Read a safetensors file or a ``torch.save``'d state dict from ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights file {path!r} could not be read: {exc}") from exc
    for wrapper_key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path!r} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(module: torch.nn.Module, path, ignore_prefixes=(), strip_prefix=None) -> torch.nn.Module:
    """Load ``path`` into ``module`` strictly; errors name the file and the keys.

    With ``strip_prefix``, a file whose keys all start with it (e.g. ``model.``,
    saved from a wrapper around ``module``) has it removed first. Keys starting
    with one of ``ignore_prefixes`` (e.g. a classifier head ``fc.`` that the
    embedding backbone removed) are dropped before the check.
    """
    state = load_state_dict_file(path)
    if strip_prefix and state and all(k.startswith(strip_prefix) for k in state):
        state = {k[len(strip_prefix):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}")
    if mismatched:
        problems.append(f"shape mismatches {mismatched[:5]}")
    if problems:
        raise ValueError(
            f"weights file {os.fspath(path)!r} does not match the "
            f"{type(module).__name__} backbone: " + "; ".join(problems)
        )
    module.load_state_dict(state)
    return module
