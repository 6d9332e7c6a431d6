"""One home for the members of a composite (issue #22, item 1).

The embedding composites (``TransferabilitySelector``, ``ConcatEmbedder``,
``LearnedEnsembleEmbedder``) take the same member kinds - a registered backbone
name, an ``nn.Module``, a transformer, ``"passthrough"``, ``"drop"`` - every
``[(name, member)]`` list is refused with the same words, and the three
classifiers / selectors refuse a bad ``y`` with the same words.
"""

import re

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import normalize
from torch import nn

from repens_sklearn import (
    ConcatEmbedder,
    FineTuneClassifier,
    GreedyEnsembleClassifier,
    LearnedEnsembleEmbedder,
    TransferabilitySelector,
    make_finetune_sweep,
)
from repens_sklearn.diversity import pairwise_diversity
from repens_sklearn.selection import knn_loo_score

KINDS = (
    "a scikit-learn transformer (fit + transform), a registered backbone name, "
    "a torch.nn.Module, 'passthrough' or 'drop'"
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8)).astype(np.float32)
    return X, np.arange(30) % 3


def _linear():
    torch.manual_seed(0)
    return nn.Linear(8, 3)


def _members(module):
    return [
        ("named", "mlp"),
        ("module", module),
        ("pca", PCA(2)),
        ("raw", "passthrough"),
        ("gone", "drop"),
    ]


def _exactly(message):
    return f"^{re.escape(message)}$"


# ---------------------------------------------------------------- member kinds


def test_concat_takes_every_member_kind(data):
    X, _ = data
    module = _linear()
    emb = ConcatEmbedder(_members(module), random_state=0).fit(X)
    assert [name for name, _ in emb.embedders_] == ["named", "module", "pca", "raw"]
    assert emb.block_widths_[1:] == [3, 2, 8]
    with torch.no_grad():
        expected = normalize(module(torch.from_numpy(X)).numpy())
    start = emb.block_widths_[0]
    np.testing.assert_allclose(
        emb.transform(X)[:, start : start + 3], expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(emb.transform(X)[:, -8:], normalize(X), rtol=1e-6)


def test_knn_selector_takes_every_member_kind(data):
    X, y = data
    sel = TransferabilitySelector(_members(_linear()), random_state=0).fit(X, y)
    assert sorted(sel.scores_) == ["module", "named", "pca", "raw"]
    assert sel.embedding_widths_["module"] == 3
    assert sel.embedding_widths_["raw"] == 8
    assert sel.scores_["raw"] == pytest.approx(knn_loo_score(X, y))


def test_learned_ensemble_takes_every_member_kind(data):
    X, _ = data
    emb = LearnedEnsembleEmbedder(
        _members(_linear()),
        max_epochs=2,
        transform_epochs=1,
        final_activation="identity",
        random_state=0,
        device="cpu",
    ).fit(X)
    assert emb.feature_groups_[1:] == [3, 2, 8]
    assert [name for name, _ in emb.targets_.embedders_] == ["named", "module", "pca", "raw"]


def test_named_members_are_built_alike(data):
    """A name or a module member embeds the same in the selector and in the concatenation."""
    X, y = data
    module = _linear()
    sel = TransferabilitySelector([("module", module)]).fit(X, y)
    emb = ConcatEmbedder([("module", module)], normalize=False).fit(X)
    np.testing.assert_allclose(sel.transform(X), emb.transform(X), rtol=1e-6)


# ------------------------------------------------------------ one list check

EMBEDDING_COMPOSITES = [
    (lambda m: TransferabilitySelector(m), "candidates"),
    (lambda m: ConcatEmbedder(m), "embedders"),
    (lambda m: LearnedEnsembleEmbedder(m, max_epochs=1), "embedders"),
]
COMPOSITES = [
    *((make, param, "embedder") for make, param in EMBEDDING_COMPOSITES),
    (lambda m: GreedyEnsembleClassifier(m), "estimators", "classifier"),
]


def _bad_lists(what):
    member = PCA(2) if what == "embedder" else GaussianNB()
    return [
        ([], ValueError, "{p} must be a non-empty list of (name, {w}) pairs; got []"),
        (
            [member],
            TypeError,
            "{p}[0] must be a (name, {w}) pair with a string name; got " + repr(member),
        ),
        (
            [("a", member), ("a", member)],
            ValueError,
            "{p} has duplicate names ['a']; give each (name, {w}) pair a name of its own",
        ),
        (
            [("a__b", member)],
            ValueError,
            "{p}: names must not contain '__' (set_params reads name__param as a member's "
            "parameter); got ['a__b']",
        ),
        (
            [("random_state", member)],
            ValueError,
            "{p}: names ['random_state'] are parameters of {o}, so set_params could not tell "
            "them apart; rename those members",
        ),
    ]


@pytest.mark.parametrize("make, param, what", COMPOSITES)
@pytest.mark.parametrize("case", range(5))
def test_bad_member_list_same_words_in_every_composite(data, make, param, what, case):
    X, y = data
    members, error, template = _bad_lists(what)[case]
    est = make(members)
    message = template.format(p=param, w=what, o=type(est).__name__)
    with pytest.raises(error, match=_exactly(message)):
        est.fit(X, y)


@pytest.mark.parametrize("make, param", EMBEDDING_COMPOSITES)
def test_bad_member_kind_same_words(data, make, param):
    X, y = data
    with pytest.raises(
        TypeError, match=_exactly(f"{param}: member 'a' must be {KINDS}; got int: 3")
    ):
        make([("a", 3)]).fit(X, y)
    with pytest.raises(
        ValueError, match=_exactly(f"{param}: every member is 'drop'; at least one must embed")
    ):
        make([("a", "drop")]).fit(X, y)


def test_sweep_and_diversity_lists_same_words():
    with pytest.raises(
        ValueError,
        match=_exactly(
            "backbones has duplicate names ['mlp']; give each (name, backbone) pair a name "
            "of its own"
        ),
    ):
        make_finetune_sweep(["mlp", "mlp"])
    p = np.full((4, 2), 0.5)
    with pytest.raises(
        ValueError,
        match=_exactly(
            "models_or_probas has duplicate names ['a']; give each (name, fitted classifier "
            "or probability array) pair a name of its own"
        ),
    ):
        pairwise_diversity([("a", p), ("a", p)], y=[0, 1, 0, 1])
    with pytest.raises(
        TypeError,
        match=_exactly(
            "models_or_probas must be a dict or a list of (name, fitted classifier or "
            "probability array) pairs; got int: 42"
        ),
    ):
        pairwise_diversity(42, y=[0, 1, 0, 1])


# --------------------------------------------------------------- one y check

CLASSIFIERS = [
    lambda: TransferabilitySelector([("pca", PCA(2))]),
    lambda: GreedyEnsembleClassifier([("nb", GaussianNB())]),
    lambda: FineTuneClassifier("mlp", max_steps=1, device="cpu"),
]


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_bad_y_same_words(data, make):
    X, y = data
    est = make()
    owner = type(est).__name__
    with pytest.raises(
        ValueError, match=_exactly(f"{owner} requires y to be passed, but the target y is None")
    ):
        est.fit(X, None)
    with pytest.raises(ValueError, match=_exactly("X holds 30 samples but y holds 29 labels")):
        est.fit(X, y[:-1])
    one = np.full(30, "a")
    with pytest.raises(
        ValueError,
        match=_exactly(
            f"{owner} needs at least 2 classes in y; got 1 class ({np.unique(one)[0]!r})"
        ),
    ):
        est.fit(X, one)
    mixed = np.array(["a", 1] * 15, dtype=object)
    with pytest.raises(
        ValueError,
        match=_exactly(f"y mixes string and number labels; {owner} needs one type of label"),
    ):
        est.fit(X, mixed)
    with pytest.raises(ValueError, match="^Unknown label type: continuous"):
        est.fit(X, np.linspace(0, 1, 30))


def test_check_classification_y_values():
    from repens_sklearn._inputs import check_classification_y

    y, classes, y_idx = check_classification_y(None, ["b", "a", "b"], 3)
    assert y.tolist() == ["b", "a", "b"]
    assert classes.tolist() == ["a", "b"]
    assert y_idx.tolist() == [1, 0, 1]
