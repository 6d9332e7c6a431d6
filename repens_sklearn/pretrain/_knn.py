"""Weighted kNN accuracy with cosine similarity, the usual SSL monitor (InstDisc / SimSiam)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def weighted_knn_accuracy(
    train_emb, y_train, test_emb=None, y_test=None, *, k=200, temperature=0.1, batch_size=1024
):
    """Accuracy of a cosine kNN vote weighted by ``exp(sim / temperature)``.

    Without ``test_emb`` the accuracy is leave-one-out on the training set
    (each sample's own vote is excluded). ``k`` is capped at the number of
    references.
    """
    loo = test_emb is None
    if loo:
        test_emb, y_test = train_emb, y_train
    bank = F.normalize(torch.as_tensor(np.asarray(train_emb), dtype=torch.float32), dim=1)
    queries = F.normalize(torch.as_tensor(np.asarray(test_emb), dtype=torch.float32), dim=1)
    classes, y_bank = np.unique(np.asarray(y_train), return_inverse=True)
    y_bank = torch.as_tensor(y_bank)
    k = int(min(k, len(bank) - int(loo)))
    if k < 1:
        raise ValueError("weighted kNN needs at least 2 labelled samples")
    predictions = []
    for start in range(0, len(queries), batch_size):
        sim = queries[start : start + batch_size] @ bank.T
        if loo:
            rows = torch.arange(len(sim))
            sim[rows, rows + start] = -float("inf")
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), len(classes))
        votes.scatter_add_(1, y_bank[top_idx], (top_sim / temperature).exp())
        predictions.append(votes.argmax(1))
    predicted = classes[torch.cat(predictions).numpy()]
    return float(np.mean(predicted == np.asarray(y_test)))
