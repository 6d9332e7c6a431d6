"""timm backbones for repens_sklearn, registered through the ``repens_backbones`` hook."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from urllib.parse import urlparse

from repens_sklearn import hookimpl

PREFIX = "timm/"
CFG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct")


class TimmBackbone:
    """Factory for one timm model.

    ``factory(in_chans=3, pretrained=False, weights=None, **timm_kwargs)``.

    The model is built with ``num_classes=0`` (pooled penultimate features).
    ``pretrained=True`` loads timm's own pretrained weights through timm: from
    its cache (Hugging Face hub cache or torch hub cache, ``cache_dir`` as in
    ``timm.create_model``) without touching the network, else downloaded by timm.
    ``weights`` is a local checkpoint file, loaded through timm too
    (``pretrained_cfg_overlay=dict(file=weights)``). With weights the model's
    ``pretrained_cfg`` holds timm's preprocessing (``input_size``, ``mean``,
    ``std``, ``interpolation``, ``crop_pct``; channels follow ``in_chans``);
    with random weights it is ``{}``: there is no pretraining to match.
    """

    def __init__(self, model_name: str):
        self.model_name = model_name

    def __call__(self, in_chans=3, pretrained=False, weights=None, **timm_kwargs):
        overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
        if weights is not None:
            overlay["file"] = _existing_file(weights)
        elif pretrained and not (overlay.get("file") or overlay.get("state_dict")):
            overlay.update(self._cached_source(timm_kwargs.get("cache_dir")))
        load = bool(pretrained or weights is not None)
        model = self._create(load, overlay, in_chans, timm_kwargs)
        # Models with a layer after pooling (MobileNetV3's conv_head) output head_hidden_size.
        model.embedding_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        model.pretrained_cfg = _preprocessing_cfg(model, in_chans) if load else {}
        return model

    def _create(self, load, overlay, in_chans, timm_kwargs):
        import timm

        kwargs = dict(num_classes=0, in_chans=in_chans, **timm_kwargs)
        if overlay:
            kwargs["pretrained_cfg_overlay"] = overlay
        if not load:
            return timm.create_model(self.model_name, pretrained=False, **kwargs)
        source = overlay.get("file") or "timm's cache or the Hugging Face hub"
        with _missing_keys_reported() as missing:
            try:
                model = timm.create_model(self.model_name, pretrained=True, **kwargs)
            except _download_errors() as exc:
                raise FileNotFoundError(self._unavailable_message(exc)) from exc
        if missing:
            raise ValueError(
                f"weights {source!r} do not match timm model {self.model_name!r}: "
                f"missing keys {missing[:5]}"
            )
        return model

    def _cached_source(self, cache_dir):
        """``{"file": path}`` when timm's pretrained weights are cached, else ``{}``."""
        import timm

        cfg = timm.models.get_pretrained_cfg(self.model_name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise ValueError(
                f"timm has no pretrained weights for {self.model_name!r}; use pretrained=False "
                "or pass weights=<a local checkpoint file>"
            )
        path = _cached_hub_file(cfg, cache_dir) or _cached_url_file(cfg, cache_dir)
        return {"file": path} if path else {}

    def _unavailable_message(self, exc):
        return (
            f"timm's pretrained weights for {self.model_name!r} are not in the local cache and "
            f"could not be downloaded ({type(exc).__name__}: {exc}). Download them once while "
            f"online (`python -c \"import timm; timm.create_model('{self.model_name}', "
            'pretrained=True)"`), or pass weights=<a local checkpoint file>. '
            "Set HF_HUB_OFFLINE=1 to fail at once when offline."
        )

    def __repr__(self):
        return f"TimmBackbone({self.model_name!r})"


def _existing_file(weights):
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    return path


def _cached_hub_file(cfg, cache_dir):
    if not cfg.hf_hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    names = (
        [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    )
    for name in names:
        path = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision or None)
        if isinstance(path, str):
            return path
    return None


def _cached_url_file(cfg, cache_dir):
    if not cfg.url:
        return None
    import torch

    folder = cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(os.fspath(folder), os.path.basename(urlparse(cfg.url).path))
    return path if os.path.isfile(path) else None


def _download_errors():
    errors = [OSError]
    with contextlib.suppress(ImportError):
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.HTTPError)
    return tuple(errors)


@contextlib.contextmanager
def _missing_keys_reported():
    """Collect the keys timm's (non-strict) pretrained loading reports as missing."""
    missing = []

    class Handler(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Missing keys (") and ") discovered" in message:
                missing.extend(
                    message[len("Missing keys (") : message.index(") discovered")].split(", ")
                )

    logger = logging.getLogger("timm.models._builder")
    handler, level = Handler(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _preprocessing_cfg(model, in_chans):
    """timm's ``pretrained_cfg`` with the five preprocessing keys resolved, for ``in_chans``."""
    from timm.data import resolve_data_config

    from repens_sklearn.backbones import pretrained_cfg_for_chans

    resolved = resolve_data_config(model=model)
    cfg = dict(model.pretrained_cfg)
    cfg.update({key: resolved[key] for key in CFG_KEYS})
    return pretrained_cfg_for_chans(cfg, in_chans)


@functools.lru_cache(maxsize=1)
def _model_names():
    import timm

    return tuple(timm.list_models())


@hookimpl
def repens_backbones():
    return {PREFIX + name: TimmBackbone(name) for name in _model_names()}
