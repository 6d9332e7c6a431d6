"""Scale-out without a home-made layer: joblib's dask backend and joblib.Memory caching."""

import numpy as np
import pytest
from conftest import loopback_dask_cluster
from joblib import Memory, parallel_config
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from repens_sklearn import GreedyEnsembleClassifier, TransferabilitySelector


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def _candidates():
    return [
        ("raw", FunctionTransformer()),
        ("scaled", StandardScaler()),
        ("pca2", PCA(2)),
        ("pca10", PCA(10, random_state=0)),
    ]


def _members():
    return [
        ("nb", GaussianNB()),
        ("tree", DecisionTreeClassifier(max_depth=5, random_state=0)),
        ("lr", LogisticRegression(max_iter=200)),
    ]


@pytest.mark.slow  # starts a dask cluster
def test_dask_backend_gives_the_local_results(data):
    pytest.importorskip("distributed")
    X, y = data
    local_sel = TransferabilitySelector(_candidates(), n_select=2).fit(X, y)
    local_ens = GreedyEnsembleClassifier(_members(), max_size=3, random_state=0).fit(X, y)
    with loopback_dask_cluster() as (client, tasks):
        with parallel_config(backend="dask"):
            sel = TransferabilitySelector(_candidates(), n_select=2, n_jobs=-1).fit(X, y)
            ens = GreedyEnsembleClassifier(_members(), max_size=3, n_jobs=-1, random_state=0).fit(
                X, y
            )
        assert len(client.scheduler_info()["workers"]) == 2
    # 4 candidate embeddings + transform, 3 member fits + refits all ran as dask tasks
    assert len(tasks.data) >= 4 + 3
    assert sel.scores_ == local_sel.scores_ and sel.selected_ == local_sel.selected_
    np.testing.assert_array_equal(sel.transform(X), local_sel.transform(X))
    assert ens.ensemble_ == local_ens.ensemble_
    np.testing.assert_allclose(ens.validation_curve_, local_ens.validation_curve_)
    np.testing.assert_allclose(ens.predict_proba(X), local_ens.predict_proba(X))


class CountingScaler(StandardScaler):
    """StandardScaler that counts how often it fits (class-level: not part of the cache key)."""

    fits = 0

    def fit(self, X, y=None, sample_weight=None):
        type(self).fits += 1
        return super().fit(X, y, sample_weight)


def test_memory_caches_embeddings(data, tmp_path):
    X, y = data
    memory = Memory(str(tmp_path), verbose=0)  # a Path location skips the joblib/ subfolder
    CountingScaler.fits = 0
    first = TransferabilitySelector(
        [("counted", CountingScaler()), ("pca", PCA(3))], memory=memory
    ).fit(X, y)
    assert CountingScaler.fits == 1
    # refitting, and changing only the kNN settings, reuses the cached embeddings
    second = TransferabilitySelector(
        [("counted", CountingScaler()), ("pca", PCA(3))], n_neighbors=3, memory=memory
    ).fit(X, y)
    assert CountingScaler.fits == 1
    same = TransferabilitySelector(
        [("counted", CountingScaler()), ("pca", PCA(3))], memory=str(tmp_path)
    ).fit(X, y)
    assert CountingScaler.fits == 1 and same.scores_ == first.scores_
    # other data: computed again
    TransferabilitySelector([("counted", CountingScaler())], memory=memory).fit(X[:200], y[:200])
    assert CountingScaler.fits == 2
    # no memory: computed every time, and the cached scores are the uncached ones
    uncached = TransferabilitySelector(
        [("counted", CountingScaler()), ("pca", PCA(3))], n_neighbors=3
    ).fit(X, y)
    assert CountingScaler.fits == 3
    assert second.scores_ == pytest.approx(uncached.scores_)
