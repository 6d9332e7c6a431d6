"""`repens demo --quick`: the main job end to end, and the Fashion-MNIST switch."""

import re

import pytest

from repens_sklearn import _demo
from repens_sklearn.cli import main

pytestmark = pytest.mark.slow  # the demo end to end


@pytest.fixture
def pretrained_zoo(fresh_plugin_manager):
    """The EfficientNet-Lite plugin (installed by scripts/install.sh), registered."""
    import repens_efficientnet_lite

    fresh_plugin_manager.get_plugin_manager().register(repens_efficientnet_lite,
                                                       name="efficientnet_lite")


def test_demo_quick_runs_every_method_and_writes_report(tmp_path, capsys, pretrained_zoo):
    out = tmp_path / "report"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for section in ("MeTTA", "EnSiam", "Learned ensemble", "Selection", "Pretrained zoo"):
        assert f"| {section} |" in printed
    zoo = dict(re.findall(r"\| Pretrained zoo \| (.+?) \| .+? \| (\d\.\d{4}) \|", printed))
    assert "leave-one-out 1-NN: efficientnet_lite0" in zoo
    assert float(zoo["efficientnet_lite0 centre"]) > 0.6  # pretrained features, raw 8 px digits
    greedy = [float(v) for k, v in zoo.items() if k.startswith("greedy ensemble")]
    assert greedy and greedy[0] > 0.5  # fine-tuned pretrained networks, not chance
    for method in ("centre embedding", "MeTTA mean", "EnSiam (K=4)", "SimSiam K-aug (K=4)",
                   "concatenation", "normalised average", "learned ensemble", "greedy ensemble"):
        assert method in printed
    values = [float(v) for v in re.findall(r"\| (\d\.\d{4}) \|", printed)]
    assert len(values) >= 15 and all(0.0 <= v <= 1.0 for v in values)
    assert max(values) > 0.5  # accuracies well above chance (0.1) on digits
    report = (out / "report.md").read_text()
    assert "## Results" in report and "error_inconsistency" in report
    for png in ("pairwise_diversity.png", "confidence.png", "ensemble_curve.png", "selection.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    assert str((out / "report.md").resolve()) in printed


def test_demo_fashion_mnist_missing_says_how_to_install(tmp_path, capsys):
    assert main(["demo", "--quick", "--dataset", "fashion-mnist", "--data-home", str(tmp_path),
                 "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and len(err.strip().splitlines()) == 1


def test_demo_without_matplotlib_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    monkeypatch.setattr(_demo, "load_demo_data", lambda *a: pytest.fail("demo started working"))
    assert main(["demo", "--quick", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "repens-sklearn[plot,pandas]" in err


def test_demo_data_splits_are_disjoint_and_sized():
    X_tr, y_tr, X_te, y_te = _demo.load_demo_data("digits", None, quick=True)
    assert X_tr.shape[1:] == (1, 8, 8) and len(X_tr) == 300 and len(X_te) == 150
    X_tr, _, X_te, _ = _demo.load_demo_data("digits", None, quick=False)
    assert len(X_tr) + len(X_te) == 1797
