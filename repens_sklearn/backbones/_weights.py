"""Weights for backbones: local files, torchvision's cache, channel adaptation.

Nothing here downloads: a named torchvision weight is read from torch's hub cache
or the error says where to put it.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

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


def load_weights(
    module: torch.nn.Module,
    path,
    ignore_prefixes=(),
    strip_prefix=None,
    optional_prefixes=(),
    state=None,
) -> torch.nn.Module:
    """Load ``path`` into ``module`` strictly; errors name the file and the keys.

    With ``strip_prefix``, a file whose keys all start with it (e.g. ``model.``,
    saved from a wrapper around ``module``) has it removed first. Keys starting
    with one of ``ignore_prefixes`` (e.g. a classifier head ``fc.`` that the
    embedding backbone removed) are dropped before the check; the module's keys
    starting with one of ``optional_prefixes`` may be absent from the file (they
    keep their values). ``state``, when given, is used instead of reading ``path``
    (which then only names the source in errors).
    """
    state = load_state_dict_file(path) if state is None else dict(state)
    if strip_prefix and state and all(k.startswith(strip_prefix) for k in state):
        state = {k[len(strip_prefix) :]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    expected = module.state_dict()
    problems = _state_problems(state, expected, tuple(optional_prefixes))
    if problems:
        raise ValueError(
            f"weights file {os.fspath(path)!r} does not match the "
            f"{type(module).__name__} backbone: " + "; ".join(problems)
        )
    module.load_state_dict(state, strict=not optional_prefixes)
    return module


def _state_problems(state, expected, optional_prefixes):
    missing = [
        k
        for k in expected
        if k not in state and not (optional_prefixes and k.startswith(optional_prefixes))
    ]
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
    return problems


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt RGB first-conv weights ``(O, 3, kh, kw)`` to ``in_chans`` inputs, as timm does.

    One channel sums the RGB kernels (a grey image seen as R = G = B); more
    channels repeat them cyclically, scaled by ``3 / in_chans``.
    """
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def pretrained_cfg_for_chans(cfg: dict, in_chans: int) -> dict:
    """``cfg`` for a model whose RGB stem was adapted to ``in_chans`` (see ``adapt_input_conv``).

    ``input_size`` gets ``in_chans`` channels; ``mean``/``std`` become their
    average for one channel and repeat cyclically for more.
    """
    cfg = dict(cfg)
    c, *hw = cfg["input_size"]
    if in_chans == c:
        return cfg
    cfg["input_size"] = (int(in_chans), *hw)
    for key in ("mean", "std"):
        values = tuple(float(v) for v in cfg[key])
        if in_chans == 1:
            cfg[key] = (sum(values) / len(values),)
        else:
            cfg[key] = tuple(values[i % len(values)] for i in range(in_chans))
    return cfg


def torchvision_weights(arch: str, name):
    """The torchvision weights enum member ``name`` names for ``arch``, or None.

    ``name`` may be a member (``ResNet18_Weights.DEFAULT``), its name
    (``"DEFAULT"``, ``"IMAGENET1K_V1"``) or its full name
    (``"ResNet18_Weights.IMAGENET1K_V1"``).
    """
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    if isinstance(name, enum):
        return name
    if not isinstance(name, str):
        return None
    member = name.removeprefix(enum.__name__ + ".")
    return enum.__members__.get(member)


def torchvision_weight_names(arch: str) -> list[str]:
    from torchvision.models import get_model_weights

    return list(get_model_weights(arch).__members__)


def torchvision_cache_path(weights) -> str:
    """Where torch's hub cache keeps ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def load_torchvision_state(arch: str, weights) -> dict:
    """The state dict of torchvision ``weights`` from torch's cache; never downloads."""
    path = torchvision_cache_path(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{arch}: torchvision weights {weights!r} are not in torch's cache: expected "
            f"{path!r} (nothing is downloaded at run time). Download them once with "
            '`python -c "import torchvision; '
            f"torchvision.models.{arch}(weights='{weights.name}')\"`, "
            f"or copy {weights.url} to that path (TORCH_HOME sets the cache folder), "
            f"or pass weights=<a local file>."
        )
    return load_state_dict_file(path)


def torchvision_pretrained_cfg(arch: str, weights) -> dict:
    """timm-style ``pretrained_cfg`` from the evaluation transform of torchvision ``weights``."""
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    return {
        "architecture": arch,
        "tag": weights.name,
        "input_size": (3, crop, crop),
        "mean": tuple(float(m) for m in t.mean),
        "std": tuple(float(s) for s in t.std),
        "interpolation": t.interpolation.value,
        "crop_pct": crop / resize,
        "num_classes": len(weights.meta["categories"]),
    }
