"""One name per concept (issue #22, item 5): renamed public names warn and still work.

The old names are deprecated in scikit-learn's way (FutureWarning naming the new
name, removed in 0.3); the spelling is "normaliz-" throughout; no line of the package
is over 100 characters; tests import installed packages, never through ``sys.path``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import repens_sklearn
from repens_sklearn import ConcatEmbedder, LearnedEnsembleEmbedder, MeanTTAEmbedder

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "repens_sklearn"


@pytest.fixture(scope="module")
def Xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


def _renamed(old, new):
    return re.escape(
        f"`{old}` was renamed `{new}` in 0.2 and will be removed in 0.3; use `{new}` instead."
    )


def _both(owner, old, new):
    return re.escape(
        f"{owner}: both `{old}` and `{new}` were set. `{old}` was renamed "
        f"`{new}` in 0.2 and will be removed in 0.3; set only `{new}`."
    )


# ------------------------------------------------------------ KNNModelSelector


def test_knn_model_selector_is_a_deprecated_transferability_selector(Xy):
    from repens_sklearn.selection import KNNModelSelector, TransferabilitySelector

    assert repens_sklearn.KNNModelSelector is KNNModelSelector
    assert {"KNNModelSelector", "TransferabilitySelector"} <= set(repens_sklearn.__all__)
    candidates = [("raw", FunctionTransformer()), ("pca", PCA(2))]
    message = (
        "Class KNNModelSelector is deprecated; it was renamed TransferabilitySelector "
        "in 0.2 (it ranks by any transferability score; scoring='knn_loo' is the "
        "paper's kNN model selection) and will be removed in 0.3."
    )
    with pytest.warns(FutureWarning, match=re.escape(message)):
        old = KNNModelSelector(candidates, n_select=1)
    assert isinstance(old, TransferabilitySelector)
    old.fit(*Xy)
    new = TransferabilitySelector(candidates, n_select=1).fit(*Xy)
    assert old.scores_ == new.scores_ and old.selected_ == new.selected_
    np.testing.assert_array_equal(old.transform(Xy[0]), new.transform(Xy[0]))


# ------------------------------------------------- ConcatEmbedder(n_components=)


def test_concat_n_components_is_a_deprecated_max_features(Xy):
    X, _ = Xy
    members = [("a", "passthrough"), ("b", StandardScaler())]
    new = ConcatEmbedder(members, max_features=3).fit(X)
    with pytest.warns(FutureWarning, match=_renamed("n_components", "max_features")):
        old = ConcatEmbedder(members, n_components=3).fit(X)
    np.testing.assert_array_equal(old.selected_features_, new.selected_features_)
    np.testing.assert_array_equal(old.transform(X), new.transform(X))
    assert old.transform(X).shape == (60, 3)
    assert "n_components" in ConcatEmbedder(members).get_params()  # clone keeps it


def test_concat_n_components_and_max_features_together_is_an_error(Xy):
    emb = ConcatEmbedder([("a", "passthrough")], max_features=2, n_components=3)
    with pytest.raises(ValueError, match=_both("ConcatEmbedder", "n_components", "max_features")):
        emb.fit(Xy[0])


# ---------------------------------------------- LearnedEnsembleEmbedder(backbones=)


def test_learned_backbones_is_a_deprecated_embedders(Xy):
    X, _ = Xy
    params = dict(
        max_epochs=2, batch_size=32, final_activation="identity", device="cpu", random_state=0
    )
    members = [("raw", "passthrough"), ("pca", PCA(3))]
    new = LearnedEnsembleEmbedder(members, **params).fit(X)
    with pytest.warns(FutureWarning, match=_renamed("backbones", "embedders")):
        old = LearnedEnsembleEmbedder(backbones=members, **params).fit(X)
    assert old.feature_groups_ == new.feature_groups_ == [6, 3]
    np.testing.assert_allclose(old.embedding_, new.embedding_, rtol=1e-6)
    assert LearnedEnsembleEmbedder(members).get_params()["pca__n_components"] == 3


def test_learned_backbones_and_embedders_together_is_an_error(Xy):
    emb = LearnedEnsembleEmbedder([("raw", "passthrough")], backbones=[("b", "passthrough")])
    with pytest.raises(
        ValueError, match=_both("LearnedEnsembleEmbedder", "backbones", "embedders")
    ):
        emb.fit(Xy[0])


# ----------------------------------------------------- preprocess_ -> preprocessor_


def test_preprocess_attribute_is_a_deprecated_preprocessor():
    from repens_sklearn._preprocess import ImagePreprocessor

    class Pretrained(__import__("torch").nn.Module):
        pretrained_cfg = {"input_size": (3, 8, 8), "mean": (0.5,) * 3, "std": (0.25,) * 3}

        def forward(self, x):
            return x.flatten(1)

    images = np.random.default_rng(0).integers(0, 255, size=(4, 8, 8), dtype=np.uint8)
    emb = MeanTTAEmbedder(Pretrained(), n_augmentations=0, device="cpu").fit(images)
    assert isinstance(emb.preprocessor_, ImagePreprocessor)
    with pytest.warns(
        FutureWarning,
        match=re.escape(
            "Attribute `preprocess_` was renamed `preprocessor_` in 0.2 and will be removed in 0.3."
        ),
    ):
        assert emb.preprocess_ is emb.preprocessor_
    assert hasattr(emb.preprocessor_, "standardize") and not hasattr(emb.preprocessor_, "normalize")


# ------------------------------------------------------------- repository rules


def _text_files():
    files = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("plugins/*/*/*.py"),
    ]
    return [path for path in files if "__pycache__" not in path.parts]


def test_spelling_is_normalize_never_normalise():
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _text_files()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if "normalis" in line.lower()
    ]
    assert found == []


def test_no_line_of_the_package_is_over_100_characters():
    long = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in PACKAGE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > 100
    ]
    assert long == []


def test_no_test_reaches_code_through_sys_path():
    tests = [*(ROOT / "tests").glob("*.py"), *ROOT.glob("plugins/*/tests/*.py")]
    found = [
        str(path.relative_to(ROOT))
        for path in tests
        if path.name != Path(__file__).name and "sys.path" in path.read_text()
    ]
    assert found == []


def test_modules_are_named_by_what_they_hold():
    for old in ("_stream", "_fitted.py", "_device.py", "selection/_knn.py"):
        assert not (PACKAGE / old).exists(), old
    for new in ("_embed_files", "_member_fitting.py", "_compute.py", "selection/_selector.py"):
        assert (PACKAGE / new).exists(), new
