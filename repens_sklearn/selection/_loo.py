"""Leave-one-out k-nearest-neighbour accuracy by blocked matrix products.

The paper ranks pre-trained models by kNN leave-one-out accuracy on the
downstream data (section 2.3, step 1; Puigcerver et al., 2020). Every sample is
classified by its neighbours among all *other* samples: one similarity block
``Z[block] @ Z.T`` per slice of queries, with each query's own entry set to
``-inf`` so it can never be its own neighbour. No Python loop over samples and
no refit per sample.

Euclidean distances come from the expanded form ``|a|^2 - 2 a.b + |b|^2``, which
loses to cancellation what the norms exceed the distances by: the features
are centred first (distances do not change, the norms shrink to the spread of
the data) and the products are float64, as scikit-learn's
``euclidean_distances`` computes them. Cosine similarities are bounded by 1
and keep the input's precision (float32 unless the input is float64).
"""

from __future__ import annotations

import numpy as np

# Similarity blocks hold at most this many bytes (64 MiB).
_BLOCK_BYTES = 64 * 1024 * 1024


def _prepare(Z, metric):
    """Rows ready for a similarity ``A @ B.T - bias`` that is larger for closer points."""
    if metric == "cosine":
        Z = np.asarray(Z)
        Z = Z.astype(np.float64 if Z.dtype == np.float64 else np.float32, copy=False)
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        # A zero vector has no direction: it stays zero (similarity 0 to everything).
        Z = Z / np.where(norms > 0, norms, 1.0)
        return Z, None
    if metric == "euclidean":
        # centred and float64: a common offset would otherwise swamp the distances
        Z = np.asarray(Z, dtype=np.float64)
        Z = Z - Z.mean(axis=0)
        # -||a-b||^2 = 2 a.b - ||b||^2 - ||a||^2; the last term is constant per query.
        return Z, 0.5 * np.einsum("ij,ij->i", Z, Z)
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def _vote(neighbour_labels, n_classes):
    """Majority vote over ``(B, k)`` labels sorted nearest first.

    Ties between classes with equally many votes go to the class of the
    nearest neighbour among them (deterministic, and never the lower label by
    accident).
    """
    n_rows, k = neighbour_labels.shape
    rows = np.arange(n_rows)[:, None]
    counts = np.zeros((n_rows, n_classes), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(rows, neighbour_labels.shape), neighbour_labels), 1)
    first = np.full((n_rows, n_classes), k, dtype=np.int64)
    for rank in range(k - 1, -1, -1):  # loop over k, not samples: nearest rank written last
        first[rows[:, 0], neighbour_labels[:, rank]] = rank
    return np.argmax(counts * (k + 1) + (k - first), axis=1)


def loo_knn_predict(Z, y_idx, *, n_neighbors=1, metric="euclidean", block_size=None):
    """Leave-one-out kNN predictions (class indices) for every row of ``Z``.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Embeddings.
    y_idx : ndarray of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.
    n_neighbors : int, default=1
        Neighbours voting (majority; ties go to the nearest tied class).
    metric : {"euclidean", "cosine"}, default="euclidean"
        Euclidean centres the features and computes in float64 (exact under
        any common offset); cosine normalizes the rows once, then uses dot
        products.
    block_size : int, default=None
        Queries per similarity block; by default blocks hold about 64 MiB.

    Returns
    -------
    y_pred : ndarray of shape (n_samples,)
        Predicted class index of each sample from its neighbours among the others.
    """
    y_idx = np.asarray(y_idx)
    n_samples = len(y_idx)
    if n_neighbors > n_samples - 1:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs at least n_neighbors + 1 = {n_neighbors + 1} "
            f"samples for leave-one-out, got {n_samples}"
        )
    Z, bias = _prepare(Z, metric)
    n_classes = int(y_idx.max()) + 1
    block = block_size or max(1, _BLOCK_BYTES // (Z.itemsize * max(1, n_samples)))
    out = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        sim = Z[start:stop] @ Z.T
        if bias is not None:
            sim -= bias
        local = np.arange(stop - start)
        sim[local, start + local] = -np.inf  # leave the query itself out
        if n_neighbors == 1:
            out[start:stop] = y_idx[np.argmax(sim, axis=1)]
            continue
        top = np.argpartition(-sim, n_neighbors - 1, axis=1)[:, :n_neighbors]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        out[start:stop] = _vote(y_idx[top], n_classes)
    return out


def loo_knn_accuracy(Z, y, *, n_neighbors=1, metric="euclidean", block_size=None):
    """Leave-one-out kNN accuracy of embeddings ``Z`` for labels ``y``.

    See :func:`loo_knn_predict`; ``y`` may hold any labels.
    """
    _, y_idx = np.unique(np.asarray(y), return_inverse=True)
    y_pred = loo_knn_predict(
        Z, y_idx, n_neighbors=n_neighbors, metric=metric, block_size=block_size
    )
    return float(np.mean(y_pred == y_idx))
