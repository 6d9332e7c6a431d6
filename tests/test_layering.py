"""Layering (issue #22, item 6): each concept has one home, and the others ask it.

- the displays of selection objects live in ``selection`` (importable from ``diversity``
  too), and their labels come from selection's one list of scorings;
- the demo finds pretrained backbones by what their factory declares, not by name;
- the augmentation-policy contract is one module that ``MeanTTAEmbedder`` asks.
"""

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import repens_sklearn

DIVERSITY = Path(repens_sklearn.__file__).parent / "diversity"


# ------------------------------------------------------------------ displays
@pytest.mark.parametrize("name", ["SelectionDisplay", "EnsembleCurveDisplay"])
def test_selection_displays_live_in_selection_and_keep_their_old_import(name):
    selection = importlib.import_module("repens_sklearn.selection")
    diversity = importlib.import_module("repens_sklearn.diversity")
    display = getattr(selection, name)
    assert display.__module__ == "repens_sklearn.selection._displays"
    assert name in selection.__all__
    assert getattr(diversity, name) is display
    namespace = {}
    exec(f"from repens_sklearn.diversity import {name}", namespace)
    assert namespace[name] is display


def test_diversity_displays_stay_in_diversity():
    from repens_sklearn.diversity import ConfidenceDisplay, PairwiseDiversityDisplay

    for display in (ConfidenceDisplay, PairwiseDiversityDisplay):
        assert display.__module__ == "repens_sklearn.diversity._displays"


def _diversity_sources():
    return {path.name: ast.parse(path.read_text()) for path in sorted(DIVERSITY.glob("*.py"))}


def test_diversity_does_not_import_or_relist_selection_scorings():
    from repens_sklearn.selection._selector import _SCORINGS

    for filename, tree in _diversity_sources().items():
        strings = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not strings & set(_SCORINGS), filename
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ]
        assert not [m for m in imported if "selection" in m], filename


def test_selection_axis_label_comes_from_the_one_scoring_list(monkeypatch):
    from repens_sklearn.selection import _displays, _selector

    assert {name: _displays.score_label(name) for name in _selector._SCORINGS} == {
        "knn_loo": "leave-one-out kNN accuracy",
        "linear_cv": "cross-validated linear accuracy",
        "logme": "LogME (log evidence)",
        "hscore": "H-score",
        "nleep": "NLEEP (log-likelihood)",
        "sfda": "SFDA (probability of the true class)",
        "gbc": "GBC (minus the class overlap)",
        "transrate": "TransRate (coding-rate reduction)",
        "etran": "ETran (energy + LDA score)",
    }
    assert _displays.score_label("my_score") == "my_score"
    assert _displays.score_label(np.mean) == "mean"
    # one list: a scoring added there is labelled without touching the display
    monkeypatch.setitem(_selector._SCORINGS, "new_score", (None, False, "new label"))
    assert _displays.score_label("new_score") == "new label"


# ------------------------------------------------------------------ demo
class _Net(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)


def _declared():
    return _Net()


_declared.pretrained_cfg = {
    "input_size": (3, 32, 32),
    "mean": (0.5,) * 3,
    "std": (0.5,) * 3,
    "interpolation": "bilinear",
    "crop_pct": 1.0,
}


def _random():
    return _Net()


def test_demo_finds_declared_pretrained_backbones_whatever_their_name(fake_entry_points):
    from conftest import plugin_module

    from repens_sklearn import _demo

    zoo = plugin_module(
        "my_zoo",
        repens_backbones={
            "my_zoo/any_name": _declared,  # a '/' in the name, and no efficientnet_lite* pattern
            "efficientnet_lite_random": _random,  # the old pattern, but nothing declared
        },
    )
    fake_entry_points("my_zoo", zoo)
    assert _demo._pretrained_names() == ["my_zoo/any_name"]


def test_demo_finds_no_pretrained_backbone_among_the_builtins(fresh_plugin_manager):
    from repens_sklearn import _demo

    assert _demo._pretrained_names() == []


def test_efficientnet_lite_plugin_declares_its_weights_and_timm_does_not():
    lite = pytest.importorskip("repens_efficientnet_lite")
    cfg = lite.BACKBONES["efficientnet_lite0"].pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.5, 0.5, 0.5)
    timm_plugin = pytest.importorskip("repens_timm")
    assert getattr(timm_plugin.TimmBackbone("resnet18"), "pretrained_cfg", None) is None


# ------------------------------------------------------------------ policy contract
class _UserSeeded:
    """A user policy that does not inherit anything, with per-row seeds."""

    def __init__(self):
        self.seeded_calls = self.plain_calls = 0

    def __call__(self, x, generator=None):
        self.plain_calls += 1
        return x + torch.rand(x.shape, generator=generator, device=x.device)

    def seeded(self, x, seeds):
        self.seeded_calls += 1
        return x + seeds.to(x.dtype)[:, None].remainder(7) / 7


class _UserPlain:
    def __call__(self, x, generator=None):
        return x + torch.rand(x.shape, generator=generator, device=x.device)


class _UserViews:
    n_views = 2

    def __call__(self, x, generator=None):
        return x

    def view(self, x, index):
        return x * (index + 1)


def test_user_policy_with_seeded_is_recognised_by_the_one_predicate():
    from repens_sklearn.augment import (
        AugmentationPolicy,
        SupportsSeeded,
        SupportsViews,
        fixed_views,
        is_seeded,
        views_change_size,
    )

    assert is_seeded(_UserSeeded()) and isinstance(_UserSeeded(), SupportsSeeded)
    assert not is_seeded(_UserPlain()) and not isinstance(_UserPlain(), SupportsSeeded)
    assert isinstance(_UserPlain(), AugmentationPolicy)
    assert fixed_views(_UserViews()) == 2 and isinstance(_UserViews(), SupportsViews)
    assert fixed_views(_UserSeeded()) is None
    assert not views_change_size(_UserViews())


def test_builtin_policies_answer_the_contract():
    from repens_sklearn import create_augmentation_policy
    from repens_sklearn.augment import MultiViewPolicy, fixed_views, is_seeded, views_change_size

    for name in ("identity", "gaussian_noise", "crop_flip", "simsiam", "multiscale"):
        assert is_seeded(create_augmentation_policy(name)), name
    small = create_augmentation_policy("multiscale")
    back = create_augmentation_policy("multiscale", resize_back=True)
    assert isinstance(small, MultiViewPolicy) and fixed_views(small) == 3
    assert views_change_size(small) and not views_change_size(back)
    assert fixed_views(create_augmentation_policy("crop_flip")) is None


def _embedder(policy):
    from repens_sklearn import MeanTTAEmbedder

    return MeanTTAEmbedder(
        "mlp",
        backbone_params={"embedding_dim": 4, "hidden_dim": 8},
        policy=policy,
        n_augmentations=3,
        device="cpu",
        random_state=0,
    )


def test_metta_draws_views_through_the_one_predicate(monkeypatch):
    from repens_sklearn.embedders import _metta

    X = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    policy = _UserSeeded()
    _embedder(policy).fit_transform(X)
    # fit checks both calls keep the shape; then one batched call makes all 3 x 5 views
    assert (policy.seeded_calls, policy.plain_calls) == (2, 1)
    # the embedder asks augment's predicate, not the policy's attributes
    monkeypatch.setattr(_metta, "is_seeded", lambda p: False)
    policy = _UserSeeded()
    _embedder(policy).fit_transform(X)
    assert (policy.seeded_calls, policy.plain_calls) == (0, 1 + 3 * len(X))  # one per view


def test_seeded_policy_base_serves_vector_policies_too():
    from repens_sklearn.augment import SeededPolicy

    class Shift(SeededPolicy):
        name = "shift"

        def seeded(self, x, seeds):
            self._check_seeds(x, seeds)
            return x + 1

    out = Shift()(torch.zeros(4, 3), torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"^the 'shift' policy needs a tensor, got list$"):
        Shift()([[0.0]])
