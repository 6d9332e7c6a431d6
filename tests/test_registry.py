"""The CLI asks the registry: one name filter (``matches``), one "did you mean"
(``suggest``, one cutoff), and errors it recognises by their types, never their text."""

import pickle
import re

import pytest
from PIL import Image

import repens_sklearn
from repens_sklearn import hookimpl
from repens_sklearn._plugins import SUGGEST_CUTOFF, matches, suggest
from repens_sklearn.cli import main
from repens_sklearn.exceptions import (
    DuplicateNameWarning,
    ImageFolderError,
    PluginLoadWarning,
    UnknownNameError,
)


@pytest.fixture
def fake_timm(fresh_plugin_manager):
    class Plugin:
        @hookimpl
        def repens_backbones(self):
            names = ["resnet18", "resnet18d", "resnet50", "vit_small_patch16_224"]
            return {"timm/" + name: None for name in names}

    fresh_plugin_manager.get_plugin_manager().register(Plugin(), name="timm")
    yield


def _listed(capsys, section="Backbones"):
    out = capsys.readouterr().out
    block = out.split(f"{section} (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    names = []
    for line in block:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    return names


@pytest.mark.parametrize("pattern", ["resnet18*", "ResNet50", "timm/*", "*small*"])
def test_list_backbones_and_repens_plugins_filter_list_the_same_names(fake_timm, capsys, pattern):
    assert main(["plugins", "--filter", pattern]) == 0
    assert repens_sklearn.list_backbones(pattern) == _listed(capsys)


def test_one_filter_rule(fake_timm):
    assert repens_sklearn.list_backbones("resnet18*") == [
        "resnet18",
        "resnet18_cifar",
        "timm/resnet18",
        "timm/resnet18d",
    ]
    assert repens_sklearn.list_backbones("ResNet50") == ["resnet50", "timm/resnet50"]
    assert repens_sklearn.list_backbones("timm/resnet5*") == ["timm/resnet50"]
    assert matches("timm/vit_small_patch16_224", ["nothing", "vit_*"])
    assert not matches("timm/resnet18", "other/*")


def test_one_suggestion_cutoff_in_library_and_cli(fresh_plugin_manager, tmp_path, capsys):
    n_aggregations = len(repens_sklearn.list_aggregations())
    # 'maxx' is 0.5 from 'mean' and 0.4 from 'median': below the one cutoff, in both places
    with pytest.raises(UnknownNameError) as info:
        repens_sklearn.create_aggregation("maxx")
    assert info.value.suggestions == ["max"] == suggest("maxx", ["mean", "median", "max"])
    assert str(info.value) == (
        "Unknown aggregation 'maxx'. Closest registered names: ['max']. "
        f"Use repens_sklearn.list_aggregations() to see all "
        f"{n_aggregations}."
    )
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    assert (
        main(
            [
                "embed",
                str(tmp_path / "a.png"),
                "--backbone",
                "mlp",
                "--aggregation",
                "maxx",
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == (
        "repens embed: error: Unknown aggregation 'maxx' (--aggregation). Closest registered "
        "names: max. See them with: repens plugins --filter 'maxx*' (or --all for all "
        f"{n_aggregations})\n"
    )
    # 'small' is 0.56 from 'convnet_small': neither the library nor the CLI suggests it
    with pytest.raises(UnknownNameError) as info:
        repens_sklearn.create_backbone("small")
    assert info.value.suggestions == [] and "Closest" not in str(info.value)
    assert SUGGEST_CUTOFF == 0.6


def test_suggest_sees_past_a_plugin_prefix(fake_timm):
    names = repens_sklearn.list_backbones()
    assert suggest("resnet50x", names, n=2) == ["resnet50", "timm/resnet50"]  # both 16/17
    assert suggest("timm/resnet5", names, n=2) == ["timm/resnet50", "resnet50"]  # 24/25, 14/15


def test_unknown_name_error_is_a_value_error_that_pickles():
    exc = UnknownNameError("backbone", "nope", ["nop"], 3, "list_backbones")
    assert isinstance(exc, ValueError)
    again = pickle.loads(pickle.dumps(exc))
    assert (again.kind, again.name, again.suggestions, again.n_registered, again.lister) == (
        "backbone",
        "nope",
        ["nop"],
        3,
        "list_backbones",
    )
    assert str(again) == str(exc)


def test_cli_words_unknown_names_from_the_exceptions_fields(tmp_path, capsys, monkeypatch):
    from repens_sklearn import _plugins

    real_lookup = _plugins._lookup

    def lookup(kind, name):
        if kind != "backbone":
            return real_lookup(kind, name)
        raise UnknownNameError(kind, name, ["a/zzy", "zz"], 7, "list_backbones")

    monkeypatch.setattr("repens_sklearn._plugins._lookup", lookup)
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    assert (
        main(["embed", str(tmp_path / "a.png"), "--backbone", "zzz", "-o", str(tmp_path / "x.npy")])
        == 2
    )
    assert capsys.readouterr().err == (
        "repens embed: error: Unknown backbone 'zzz' (--backbone). Closest registered names: "
        "a/zzy, zz. See them with: repens plugins --filter 'zzz*' (or --all for all 7)\n"
    )


def test_cli_rewords_a_folder_error_by_its_type_not_its_text(tmp_path, capsys, monkeypatch):
    def load(folder, on_error):
        raise error

    monkeypatch.setattr("repens_sklearn.cli.load_image_folder", load)
    error = ImageFolderError("cannot read image 'x.png': OSError: bad", "imgs")
    assert main(["rank", str(tmp_path), "--candidate", "mlp"]) == 2
    assert capsys.readouterr().err == (
        "repens rank: error: cannot read image 'x.png': OSError: bad (in image folder 'imgs'; "
        "--skip-unreadable leaves such files out)\n"
    )
    error = ValueError("on_error='skip' is only a word in this message")
    assert main(["rank", str(tmp_path), "--candidate", "mlp"]) == 2
    assert capsys.readouterr().err == (
        "repens rank: error: on_error='skip' is only a word in this message\n"
    )


def test_cli_reads_no_library_message_text():
    import inspect

    import repens_sklearn.cli as cli

    source = inspect.getsource(cli)
    assert not re.search(r"in str\(exc\)|\.replace\(|import difflib|import fnmatch", source)


def test_plugin_warnings_live_in_exceptions():
    from repens_sklearn import _plugins

    assert _plugins.PluginLoadWarning is PluginLoadWarning
    assert _plugins.DuplicateNameWarning is DuplicateNameWarning
