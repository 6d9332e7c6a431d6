"""`repens demo`: the main job end to end, its progress lines, findings and data choice."""

import re

import pytest

from repens_sklearn import _demo, _progress, datasets
from repens_sklearn.cli import main

slow = pytest.mark.slow  # the demo end to end


@pytest.fixture
def pretrained_zoo(fresh_plugin_manager):
    """The EfficientNet-Lite plugin (installed by scripts/install.sh), registered."""
    import repens_efficientnet_lite

    fresh_plugin_manager.get_plugin_manager().register(
        repens_efficientnet_lite, name="efficientnet_lite"
    )


@pytest.fixture
def no_fashion_mnist(monkeypatch, tmp_path):
    """A machine without the Debian package: the default data home is an empty folder."""
    empty = tmp_path / "no-fashion-mnist"
    empty.mkdir()
    monkeypatch.setattr(datasets, "FASHION_MNIST_HOME", str(empty))


STAGE_LINE = re.compile(r"^\[(\d)/6\] .+$", re.M)
COST_LINE = re.compile(r"^  \(\d+\.\d s wall, \d+\.\d s CPU\)$", re.M)


@slow
def test_demo_quick_progress_findings_report(tmp_path, capsys, pretrained_zoo):
    out = tmp_path / "report"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    printed = capsys.readouterr()
    # a line per stage and what it cost; no bar garbage when the output is not a terminal
    assert [int(i) for i in STAGE_LINE.findall(printed.out)] == [1, 2, 3, 4, 5, 6]
    assert len(COST_LINE.findall(printed.out)) == 6
    assert "\r" not in printed.out + printed.err
    assert printed.err == ""
    for section in ("EnSiam", "Ranking", "MeTTA", "Combination", "Fine-tune + greedy"):
        assert f"| {section} |" in printed.out
    rows = dict(
        re.findall(
            r"\| (?:MeTTA|Fine-tune \+ greedy) \| (.+?) \| .+? \| "
            r"(\d\.\d{4}) \|",
            printed.out,
        )
    )
    centre = next(float(v) for k, v in rows.items() if k.endswith("centre embedding"))
    single = next(float(v) for k, v in rows.items() if k.startswith("best single"))
    greedy = next(float(v) for k, v in rows.items() if k.startswith("greedy ensemble"))
    assert centre > 0.6 and single > 0.4 and greedy > 0.4  # pretrained features, not chance
    report = (out / "report.md").read_text()
    findings = report.split("## Findings\n\n")[1].split("\n")[0]
    sentences = re.findall(r"[^.]+(?:\.\d+[^.]*)*\.", findings)
    assert 3 <= len(sentences) <= 5, findings
    assert findings.startswith("Leave-one-out 1-NN ranked efficientnet_lite")
    assert re.search(r"so the ranking (did not )?match", findings)
    assert re.search(
        r"MeTTA's GeM of 3 augmented views moved \S+ linear-evaluation "
        r"accuracy from \d\.\d{3} to \d\.\d{3} \([+-]\d+\.\d points",
        findings,
    )
    assert re.search(
        r"(greedy ensemble of \d fine-tuned models reached|Greedy picked 1 "
        r"model: no gain on this data)",
        findings,
    )
    assert f"Findings: {findings}" in printed.out
    assert report.index("## Findings") < report.index("## Results") < report.index("## Figures")
    for png in (
        "summary.png",
        "pairwise_diversity.png",
        "confidence.png",
        "ensemble_curve.png",
        "selection.png",
    ):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    assert str((out / "report.md").resolve()) in printed.out


def test_demo_auto_falls_back_to_digits_with_hint(tmp_path, capsys, monkeypatch, no_fashion_mnist):
    seen = {}

    def load(dataset, data_home, quick, seed=0):
        seen.update(dataset=dataset, data_home=data_home)
        raise RuntimeError("stop here")

    monkeypatch.setattr(_demo, "load_demo_data", load)
    assert main(["demo", "--quick", "--output", str(tmp_path / "r")]) == 2
    printed = capsys.readouterr()
    assert seen == {"dataset": "digits", "data_home": None}
    hint = [line for line in printed.out.splitlines() if "Fashion-MNIST" in line]
    assert hint == [f"note: {_demo.FASHION_HINT}"]
    assert "apt-get install dataset-fashion-mnist" in hint[0] and "digits" in hint[0]


def test_demo_auto_picks_fashion_mnist_when_present(tmp_path):
    assert _demo.resolve_dataset("auto", tmp_path) == ("digits", _demo.FASHION_HINT)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{name}.gz").write_bytes(b"")  # only their presence is checked here
    assert _demo.resolve_dataset("auto", tmp_path) == ("fashion-mnist", None)
    assert _demo.resolve_dataset("digits", tmp_path) == ("digits", None)


def test_demo_fashion_mnist_missing_says_how_to_install(tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--quick",
                "--dataset",
                "fashion-mnist",
                "--data-home",
                str(tmp_path),
                "--output",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and len(err.strip().splitlines()) == 1


def test_demo_without_matplotlib_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(_demo, "load_demo_data", lambda *a: pytest.fail("demo started working"))
    assert main(["demo", "--quick", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "repens-sklearn[plot,pandas]" in err


def test_demo_data_splits_are_disjoint_and_sized():
    X_tr, y_tr, X_te, y_te = _demo.load_demo_data("digits", None, quick=True)
    assert X_tr.shape[1:] == (1, 8, 8) and len(X_tr) == 300 and len(X_te) == 150
    X_tr, _, X_te, _ = _demo.load_demo_data("digits", None, quick=False)
    assert len(X_tr) + len(X_te) == 1797


ROWS = [
    ("MeTTA", "centre", "linear-eval accuracy", 0.75, True),
    ("MeTTA", "MeTTA S=4", "linear-eval accuracy", 0.77, False),
    ("Ranking", "a", "train LOO 1-NN accuracy", 0.7, None),
    ("MeTTA", "another backbone alone", "linear-eval accuracy", 0.6, None),
    ("Fine-tune + greedy", "best single", "test accuracy", 0.70, True),
    ("Fine-tune + greedy", "greedy ensemble of 1", "test accuracy", 0.70, False),
]


def test_report_table_says_when_a_method_did_not_help():
    table = _demo._format_table(ROWS)
    assert "| MeTTA | MeTTA S=4 | linear-eval accuracy | 0.7700 | +2.0 points |" in table
    assert (
        "| Fine-tune + greedy | greedy ensemble of 1 | test accuracy | 0.7000 | "
        "+0.0 points, no gain |" in table
    )
    assert "| Ranking | a | train LOO 1-NN accuracy | 0.7000 |  |" in table
    assert "| MeTTA | another backbone alone | linear-eval accuracy | 0.6000 |  |" in table
    assert table.count("| reference |") == 2


def test_summary_figure_is_written(tmp_path):
    import matplotlib.image

    path = tmp_path / "summary.png"
    _demo.summary_figure(ROWS, path)
    height, width = matplotlib.image.imread(path).shape[:2]
    assert path.stat().st_size > 5000 and width > 400 and height > 300


def test_stages_write_a_line_each_and_no_bar_off_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(_progress, "interactive", lambda stream=None: False)
    stages = _progress.Stages(2)
    for title in ("first", "second"):
        with stages.stage(title, total=3) as bar:
            for _ in range(3):
                bar.update()
    printed = capsys.readouterr()
    assert re.findall(r"^\[(\d)/2\] \w+$", printed.out, re.M) == ["1", "2"]
    assert printed.out.startswith("[1/2] first\n  (")
    assert len(COST_LINE.findall(printed.out)) == 2 and printed.err == ""
