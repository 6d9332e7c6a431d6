"""Projector, predictor and the Siamese network of SimSiam / EnSiam
("EnSiam: Self-Supervised Learning With Ensemble Representations", sec. 4.1)."""

from __future__ import annotations

from torch import nn

from .._preprocess import preprocessing_or_identity


def projection_mlp(in_dim, dim=2048, n_layers=2):
    """SimSiam's projection MLP: ``n_layers - 1`` Linear-BN-ReLU blocks, then Linear-BN.

    EnSiam paper sec. 4.1: 2048 channels; 2 layers for small data sets, 3 for
    ImageNet. As in SimSiam's code, the output BN has no affine parameters.
    """
    layers, width = [], int(in_dim)
    for _ in range(int(n_layers) - 1):
        layers += [nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)]
        width = dim
    layers += [nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim, affine=False)]
    return nn.Sequential(*layers)


def prediction_mlp(dim=2048, hidden_dim=512):
    """SimSiam's 2-layer bottleneck predictor ``dim -> hidden_dim -> dim`` (EnSiam sec. 4.1)."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, dim),
    )


class SiameseNetwork(nn.Module):
    """Encoder + projector (``f`` of the paper) and predictor (``g``).

    ``forward`` maps a batch of views to ``(z, p)``: the projections ``f`` and
    the predictions ``g(f)``, both ``(n, projector_dim)``.
    """

    def __init__(
        self,
        encoder,
        embedding_dim,
        projector_dim=2048,
        projector_layers=2,
        predictor_hidden_dim=512,
        preprocessor=None,
    ):
        super().__init__()
        # a pretrained encoder's preprocessing (prepare / standardize around the views)
        self.preprocessor = preprocessing_or_identity(preprocessor)
        self.encoder = encoder
        self.projector = projection_mlp(embedding_dim, projector_dim, projector_layers)
        self.predictor = prediction_mlp(projector_dim, predictor_hidden_dim)

    def forward(self, x):
        z = self.projector(self.encoder(x))
        return z, self.predictor(z)
