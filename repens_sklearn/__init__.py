"""repens_sklearn: scikit-learn estimators that ensemble neural-network representations."""

from ._distributed import init_distributed
from ._embed_files import embed_files
from ._plugins import (
    create_aggregation,
    create_augmentation_policy,
    create_backbone,
    get_plugin_manager,
    list_aggregations,
    list_augmentation_policies,
    list_backbones,
)
from .datasets import load_digits_images, load_fashion_mnist, load_image_folder
from .embedders import ConcatEmbedder, LearnedEnsembleEmbedder, MeanTTAEmbedder
from .hookspecs import hookimpl
from .pretrain import EnSiamPretrainer
from .selection import (
    FineTuneClassifier,
    GreedyEnsembleClassifier,
    KNNModelSelector,
    TransferabilitySelector,
    make_finetune_sweep,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "EnSiamPretrainer",
    "ConcatEmbedder",
    "LearnedEnsembleEmbedder",
    "MeanTTAEmbedder",
    "FineTuneClassifier",
    "GreedyEnsembleClassifier",
    "TransferabilitySelector",
    "KNNModelSelector",  # deprecated alias of TransferabilitySelector (until 0.3)
    "make_finetune_sweep",
    "create_aggregation",
    "create_augmentation_policy",
    "create_backbone",
    "get_plugin_manager",
    "hookimpl",
    "list_aggregations",
    "list_augmentation_policies",
    "list_backbones",
    "load_digits_images",
    "load_fashion_mnist",
    "load_image_folder",
    "embed_files",
    "init_distributed",
]
