"""Embedders: scikit-learn transformers that turn inputs into ensembled representations."""

from ._concat import ConcatEmbedder
from ._learned import LearnedEnsembleEmbedder
from ._metta import MeanTTAEmbedder

__all__ = ["ConcatEmbedder", "LearnedEnsembleEmbedder", "MeanTTAEmbedder"]
