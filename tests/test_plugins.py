"""The plugin system: registries, entry points, duplicates, broken plugins, autoload switch."""

import types
import warnings

import pytest
import torch
from conftest import plugin_module as _plugin_module

import repens_sklearn
from repens_sklearn import hookimpl
from repens_sklearn._plugins import DuplicateNameWarning, PluginLoadWarning


def _double(x):
    return 2 * x


def test_builtins_are_registered(fresh_plugin_manager):
    assert set(repens_sklearn.list_backbones()) >= {
        "mlp",
        "convnet_small",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet18_cifar",
    }
    assert {"identity", "gaussian_noise"} <= set(repens_sklearn.list_augmentation_policies())
    assert set(repens_sklearn.list_aggregations()) >= {"mean", "gem", "median", "max"}


def test_list_filter_matches_like_timm(fresh_plugin_manager):
    assert repens_sklearn.list_backbones("resnet*") == [
        "resnet18",
        "resnet18_cifar",
        "resnet34",
        "resnet50",
    ]
    assert repens_sklearn.list_backbones(["mlp", "*_small"]) == ["convnet_small", "mlp"]
    assert repens_sklearn.list_aggregations("nothing*") == []


def test_third_party_plugin_from_entry_point(fake_entry_points):
    plugin = _plugin_module(
        "fake_plugin_ok",
        repens_backbones={"tiny_linear": lambda in_features=4: torch.nn.Linear(in_features, 3)},
        repens_augmentation_policies={"flip_sign": lambda: lambda x, generator=None: -x},
        repens_aggregations={"first": lambda views: views[0]},
    )
    fake_entry_points("ok", plugin)
    net = repens_sklearn.create_backbone("tiny_linear", in_features=5)
    assert net(torch.ones(2, 5)).shape == (2, 3)
    policy = repens_sklearn.create_augmentation_policy("flip_sign")
    assert torch.equal(policy(torch.ones(2), None), -torch.ones(2))
    views = torch.arange(12.0).reshape(3, 2, 2)
    assert torch.equal(repens_sklearn.create_aggregation("first")(views), views[0])
    from repens_sklearn._plugins import plugin_of

    assert plugin_of("backbone", "tiny_linear") == "ok"
    assert plugin_of("backbone", "mlp") == "repens_sklearn.backbones"


def test_duplicate_name_warns_naming_both_and_later_wins(fake_entry_points):
    first = _plugin_module("fake_first", repens_aggregations={"pick": lambda v: v[0]})
    second = _plugin_module("fake_second", repens_aggregations={"pick": lambda v: v[-1]})
    fake_entry_points("first", first)
    fake_entry_points("second", second)
    with pytest.warns(DuplicateNameWarning, match=r"'first'.*'second'"):
        agg = repens_sklearn.create_aggregation("pick")
    views = torch.arange(6.0).reshape(3, 2, 1)
    assert torch.equal(agg(views), views[-1])


def test_plugin_overriding_a_builtin_warns(fake_entry_points):
    plugin = _plugin_module("fake_override", repens_aggregations={"mean": lambda v: v.sum(0)})
    fake_entry_points("override", plugin)
    with pytest.warns(DuplicateNameWarning, match=r"repens_sklearn.aggregate.*'override'"):
        agg = repens_sklearn.create_aggregation("mean")
    assert agg(torch.ones(4, 1, 1)).item() == 4.0


def test_broken_plugin_is_skipped_with_warning(fake_entry_points):
    good = _plugin_module("fake_good", repens_backbones={"good_net": lambda: torch.nn.Identity()})
    fake_entry_points("broken", error=ImportError("no module named 'missing_dep'"))
    fake_entry_points("good", good)
    with pytest.warns(PluginLoadWarning, match=r"'broken'.*missing_dep"):
        names = repens_sklearn.list_backbones()
    assert "good_net" in names and "mlp" in names
    assert isinstance(repens_sklearn.create_backbone("good_net"), torch.nn.Identity)


def test_autoload_switch_loads_no_entry_points(fake_entry_points, monkeypatch):
    plugin = _plugin_module("fake_off", repens_backbones={"never_seen": lambda: None})
    fake_entry_points("off", plugin)
    monkeypatch.setenv("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = repens_sklearn.list_backbones()
    assert "never_seen" not in names
    assert "mlp" in names


@pytest.mark.parametrize(
    "kind,create,name,close",
    [
        ("backbone", repens_sklearn.create_backbone, "resnet19", "resnet18"),
        (
            "augmentation policy",
            repens_sklearn.create_augmentation_policy,
            "gausian_noise",
            "gaussian_noise",
        ),
        ("aggregation", repens_sklearn.create_aggregation, "meen", "mean"),
    ],
)
def test_unknown_name_lists_closest(fresh_plugin_manager, kind, create, name, close):
    with pytest.raises(ValueError, match=rf"Unknown {kind} '{name}'.*Closest.*'{close}'"):
        create(name)


def test_registered_module_is_used_directly(fresh_plugin_manager):
    """A plugin can also be registered by hand (as the repens-timm test does)."""
    plugin = _plugin_module("fake_manual", repens_aggregations={"double_first": _double})
    repens_sklearn.get_plugin_manager().register(plugin, name="manual")
    assert "double_first" in repens_sklearn.list_aggregations()
    repens_sklearn.get_plugin_manager().unregister(name="manual")
    assert "double_first" not in repens_sklearn.list_aggregations()


def test_create_aggregation_binds_params(fresh_plugin_manager):
    views = torch.tensor([[[1.0]], [[3.0]]])
    gem2 = repens_sklearn.create_aggregation("gem", p=2)
    assert gem2(views).item() == pytest.approx((5.0) ** 0.5)


def test_plugin_whose_hook_raises_is_skipped(fake_entry_points):
    def boom():
        raise RuntimeError("registry exploded")

    plugin = types.ModuleType("fake_boom")
    plugin.repens_backbones = hookimpl(boom)
    boom.__name__ = "repens_backbones"
    fake_entry_points("boom", plugin)
    with pytest.warns(PluginLoadWarning, match=r"'boom'.*registry exploded"):
        names = repens_sklearn.list_backbones()
    assert "mlp" in names
