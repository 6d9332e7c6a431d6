"""Adversarial cases (issue: no silent wrong answers, section 8): hostile plugins, set_params on
members that have no parameters, and augmentation policies that would make memory grow with S."""

import types

import numpy as np
import pytest
import torch
from conftest import plugin_module

import repens_sklearn
from repens_sklearn import (
    ConcatEmbedder,
    LearnedEnsembleEmbedder,
    MeanTTAEmbedder,
    TransferabilitySelector,
    hookimpl,
)
from repens_sklearn._plugins import PluginLoadWarning
from repens_sklearn.cli import main as repens_main


def _exiting_plugin(name):
    class _ExitingEntryPoint:
        """An entry point whose module calls ``sys.exit(3)`` at import."""

        group = "repens_sklearn"

        def __init__(self):
            self.name, self.value = name, f"{name}_module"

        def load(self):
            raise SystemExit(3)

    return _ExitingEntryPoint()


@pytest.fixture
def exiting_entry_point(monkeypatch, fake_entry_points):
    import importlib.metadata

    real = importlib.metadata.entry_points

    def entry_points(group=None, **kwargs):
        return [_exiting_plugin("exits"), *real(group=group, **kwargs)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return fake_entry_points


def test_plugin_calling_sys_exit_at_import_is_skipped(exiting_entry_point):
    exiting_entry_point(
        "good", plugin_module("fake_good_after_exit", repens_backbones={"after_exit": lambda: None})
    )
    with pytest.warns(PluginLoadWarning, match=r"'exits' .*skipped: it called sys.exit\(3\)"):
        names = repens_sklearn.list_backbones()
    assert "after_exit" in names and "mlp" in names  # later plugins and built-ins survive


def test_cli_survives_a_plugin_calling_sys_exit(exiting_entry_point, capsys):
    with pytest.warns(PluginLoadWarning, match="sys.exit"):
        rc = repens_main(["plugins", "--filter", "mlp"])
    assert rc == 0
    assert "mlp" in capsys.readouterr().out


def test_plugin_hook_calling_sys_exit_is_skipped(fake_entry_points):
    def repens_aggregations():
        raise SystemExit("bye")

    plugin = types.ModuleType("fake_exit_in_hook")
    plugin.repens_aggregations = hookimpl(repens_aggregations)
    fake_entry_points("exit_in_hook", plugin)
    with pytest.warns(
        PluginLoadWarning,
        match=r"'exit_in_hook' raised in repens_aggregations"
        r"\(\).*sys.exit\('bye'\)",
    ):
        assert "mean" in repens_sklearn.list_aggregations()


def test_misspelt_hook_name_warns_with_the_right_name(fake_entry_points):
    plugin = plugin_module("fake_misspelt", repens_backbone={"never_seen": lambda: None})
    fake_entry_points("misspelt", plugin)
    with pytest.warns(
        PluginLoadWarning,
        match=r"'misspelt' defines hook 'repens_backbone', "
        r"which is not a repens_sklearn hook.*ignored; "
        r"did you mean 'repens_backbones'\?",
    ):
        names = repens_sklearn.list_backbones()
    assert "never_seen" not in names


def test_unrelated_unknown_hook_warns_without_a_guess(fake_entry_points):
    plugin = plugin_module("fake_unrelated", make_coffee={"x": 1})
    fake_entry_points("unrelated", plugin)
    with pytest.warns(PluginLoadWarning, match=r"'make_coffee'.*ignored$"):
        repens_sklearn.list_backbones()


def test_correct_plugin_gives_no_warning(fake_entry_points, recwarn):
    fake_entry_points(
        "fine", plugin_module("fake_fine", repens_backbones={"fine_net": lambda: None})
    )
    assert "fine_net" in repens_sklearn.list_backbones()
    assert not [w for w in recwarn if issubclass(w.category, PluginLoadWarning)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransferabilitySelector([("a", "mlp"), ("b", "convnet_small")]),
        lambda: ConcatEmbedder([("a", "mlp"), ("b", "convnet_small")]),
        lambda: LearnedEnsembleEmbedder([("a", "mlp"), ("b", "convnet_small")]),
    ],
    ids=["TransferabilitySelector", "ConcatEmbedder", "LearnedEnsembleEmbedder"],
)
def test_set_params_on_a_member_given_by_name_says_what_to_pass(make):
    est = make()
    with pytest.raises(
        ValueError,
        match=r"set_params\(a__hidden_dim=\.\.\.\): member 'a' is "
        r"given as 'mlp', which has no parameters to set.*"
        r"MeanTTAEmbedder\(backbone='mlp'",
    ):
        est.set_params(a__hidden_dim=16)
    assert est.get_params()["a"] == "mlp"  # nothing was half-changed


def test_set_params_on_a_module_member_says_what_to_pass():
    est = TransferabilitySelector([("net", torch.nn.Linear(4, 2)), ("b", "mlp")])
    with pytest.raises(
        ValueError,
        match=r"member 'net' is given as Linear.*"
        r"<an estimator with a 'in_features' parameter>",
    ):
        est.set_params(net__in_features=3)


def test_set_params_replacing_a_name_by_an_estimator_in_the_same_call_works():
    est = TransferabilitySelector([("a", "mlp"), ("b", "mlp")])
    est.set_params(a=MeanTTAEmbedder("mlp", n_augmentations=0), a__batch_size=7)
    assert est.get_params()["a__batch_size"] == 7


class _PlainNoise:
    """A policy with only ``policy(x, generator)`` (no ``seeded``); records its call sizes."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, generator):
        self.calls.append(len(x))
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return x + 0.1 * noise


def test_plain_policy_views_are_streamed_not_all_s_at_once(digits_flat):
    X = digits_flat[0][:6]
    policy = _PlainNoise()
    emb = MeanTTAEmbedder(
        "mlp", policy=policy, n_augmentations=64, batch_size=8, random_state=0, device="cpu"
    ).fit(X)
    policy.calls.clear()
    emb.transform(X)
    # today's code drew all 64 views of a sample in one call (memory grows with S)
    assert max(policy.calls) <= 8
    assert sum(policy.calls) == 64 * len(X)


def test_plain_policy_result_does_not_depend_on_batch_size(digits_flat):
    X = digits_flat[0][:5]
    out = [
        MeanTTAEmbedder(
            "mlp",
            policy=_PlainNoise(),
            n_augmentations=12,
            batch_size=b,
            random_state=0,
            device="cpu",
        )
        .fit(X)
        .transform(X)
        for b in (3, 256)
    ]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        out[0],
        MeanTTAEmbedder("mlp", n_augmentations=0, random_state=0, device="cpu").fit(X).transform(X),
    )
