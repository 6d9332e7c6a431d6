"""timm backbones for repens_sklearn, registered through the ``repens_backbones`` hook."""

from __future__ import annotations

import functools

from repens_sklearn import hookimpl

PREFIX = "timm/"


class TimmBackbone:
    """Factory for one timm model: ``factory(in_chans=3, weights=None, **timm_kwargs)``."""

    def __init__(self, model_name: str):
        self.model_name = model_name

    def __call__(self, in_chans=3, weights=None, **timm_kwargs):
        import timm

        model = timm.create_model(
            self.model_name, pretrained=False, num_classes=0, in_chans=in_chans, **timm_kwargs
        )
        if weights is not None:
            from repens_sklearn.backbones import load_weights

            heads = model.default_cfg.get("classifier", "head")  # a tuple for distilled ViTs
            heads = (heads,) if isinstance(heads, str) else tuple(heads or ())
            load_weights(model, weights, ignore_prefixes=tuple(h + "." for h in heads))
        # Models with a layer after pooling (MobileNetV3's conv_head) output head_hidden_size.
        model.embedding_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        return model

    def __repr__(self):
        return f"TimmBackbone({self.model_name!r})"


@functools.lru_cache(maxsize=1)
def _model_names():
    import timm

    return tuple(timm.list_models())


@hookimpl
def repens_backbones():
    return {PREFIX + name: TimmBackbone(name) for name in _model_names()}
