"""The README is a newcomer's page; figures live in docs/benchmarks.md, written by the scripts.

Issue #22, item 9: the README had grown to 497 lines, 42 % benchmark tables with dated
re-runs stacked on older ones, and a docstring table (``TransferabilitySelector``'s) showed
cosine kNN figures as those of the Euclidean default.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# The two set-up commands; .ci/run and the people who copy them rely on these exact lines.
TWO_COMMANDS = [
    "bash scripts/install.sh && .venv/bin/repens demo   # main job: the five methods on "
    "Fashion-MNIST (else digits) + a pretrained zoo, report folder",
    "bash scripts/install.sh && bash scripts/test.sh    # tests",
]

# A table cell that is a measurement: 78.77 ± 0.97, +0.31, 5.06, 14.84 %, 2.3x, 122 ms.
_FIGURE = re.compile(r"[(+\-]?\d[\d,]*(\.\d+)?\s*(±\s*[\d.]+)?\s*(%|x|s|ms|points)?\)?")


def _figure_cells(markdown):
    cells = [
        cell.strip()
        for line in markdown.splitlines()
        if line.startswith("|")
        for cell in line.strip("|").split("|")
    ]
    return [c for c in cells if "±" in c or (re.search(r"\d", c) and _FIGURE.fullmatch(c))]


def _section(markdown, heading):
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end > 0 else None]


def test_readme_is_about_two_hundred_lines():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines <= 220, f"README.md has {n_lines} lines; move detail to docs/"


def test_readme_keeps_the_two_commands_that_ci_runs():
    section = _section(README.read_text(encoding="utf-8"), "The two commands")
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == TWO_COMMANDS
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in TWO_COMMANDS:
        for step in command.split("#")[0].split("&&"):
            if not step.strip().startswith(".venv/"):  # CI runs the tests, not the demo
                assert step.strip() in ci, f"{step.strip()!r} is not a step of .ci/run"


def test_every_docs_link_exists():
    pages = [README, *sorted(DOCS.glob("*.md"))]
    links = {
        (page.name, link)
        for page in pages
        for link in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text(encoding="utf-8"))
    }
    assert {link for page, link in links if page == "README.md"} >= {
        "docs/benchmarks.md",
        "docs/cli.md",
        "docs/scaling.md",
        "docs/plugins.md",
    }
    base = {"README.md": ROOT}
    missing = [(page, link) for page, link in links if not (base.get(page, DOCS) / link).is_file()]
    assert missing == []


def test_readme_has_no_benchmark_table():
    text = README.read_text(encoding="utf-8")
    assert _figure_cells(text) == []
    assert "±" not in text


def test_figure_cells_finds_the_old_readme_tables():
    old = (
        "| views | identity | lite0 mean |\n|---|---|---|\n| centre | - | 78.77 ± 0.97 |\n"
        "| knn_loo | +0.31 | 6 |\n| `preprocess` | `True` | crop (1.0: no crop) |\n"
    )
    assert _figure_cells(old) == ["78.77 ± 0.97", "+0.31", "6"]


def test_python_snippets_in_the_docs_compile():
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            compile(code, f"{page.name} snippet {i}", "exec")


def test_public_docstrings_hold_no_figure_tables():
    import repens_sklearn

    for name in repens_sklearn.__all__:
        doc = getattr(getattr(repens_sklearn, name), "__doc__", None) or ""
        doc = re.split(r"\n\s*Examples\n\s*-+\n", doc)[0]  # doctest output may hold arrays
        rows = re.findall(r".*[+-]?\d+\.\d+%?(?:[ \t]+[+-]?\d+\.\d+%?){2,}.*", doc)
        assert rows == [], f"{name}'s docstring has a table of figures; use docs/benchmarks.md"
    assert "docs/benchmarks.md" in repens_sklearn.TransferabilitySelector.__doc__


# ---------------------------------------------------------- docs/benchmarks.md and its writer


@pytest.fixture
def common(monkeypatch):
    """``benchmarks._common`` (the benchmarks are a folder of the repository, not installed)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks._common")


_BLOCKS = re.compile(r"<!-- benchmark: (.+?) -->\n(.*?)<!-- /benchmark: \1 -->", re.S)


def test_docs_benchmarks_holds_one_dated_block_per_benchmark():
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    blocks = _BLOCKS.findall(text)
    keys = [key for key, _ in blocks]
    assert len(keys) == len(set(keys)) >= 9
    assert text.count("<!-- benchmark: ") == len(blocks)
    for key, body in blocks:
        assert body.startswith(f"## {key}\n"), key
        assert len(re.findall(r"^Measured \d{4}-\d{2}-\d{2} with\s", body, re.M)) == 1, key
        assert (ROOT / "benchmarks" / f"{key.split()[0]}.py").is_file(), key


def test_every_benchmark_script_records_its_report():
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        tail = script.read_text(encoding="utf-8").split('if __name__ == "__main__":')[1]
        assert f'run_and_record(main, "{script.stem}"' in tail, script.name


def test_write_benchmark_section_replaces_only_its_own_block(common, tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nHand-written introduction.\n", encoding="utf-8")
    common.write_benchmark_section(
        "bench_a", "| x |\n|---|\n| 1.0 |", "python -m a", date="2026-01-01", path=page
    )
    common.write_benchmark_section(
        "bench_b", "b's table", "python -m b", title="What b does.", date="2026-01-02", path=page
    )
    common.write_benchmark_section(
        "bench_a", "| x |\n|---|\n| 2.0 |", "python -m a --seeds 5", date="2026-02-01", path=page
    )
    assert page.read_text(encoding="utf-8") == (
        "# Benchmarks\n\nHand-written introduction.\n\n"
        "<!-- benchmark: bench_a -->\n## bench_a\n\n"
        "Measured 2026-02-01 with `python -m a --seeds 5`.\n\n| x |\n|---|\n| 2.0 |\n"
        "<!-- /benchmark: bench_a -->\n\n"
        "<!-- benchmark: bench_b -->\n## bench_b\n\nWhat b does.\n\n"
        "Measured 2026-01-02 with `python -m b`.\n\nb's table\n"
        "<!-- /benchmark: bench_b -->\n"
    )


def test_write_benchmark_section_keeps_the_carried_over_page_intact(common, tmp_path):
    page = tmp_path / "benchmarks.md"
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    page.write_text(text, encoding="utf-8")
    for block in _BLOCKS.finditer(text):  # each hand-carried block as the writer writes it
        key, body = block.groups()
        title = body.split("\n\n")[1]
        date, command = re.search(r"^Measured (\S+) with `(.*)`\.$", body, re.M).groups()
        report = body.split(f"`{command}`.\n\n", 1)[1]
        common.write_benchmark_section(key, report, command, title=title, date=date, path=page)
    assert page.read_text(encoding="utf-8") == text


def test_benchmark_key_names_the_flags_that_measure_something_else(common):
    argv = ["--skip", "selection", "metta", "--speed-repeats", "5"]
    assert common.benchmark_key("bench_pretrained", argv, ("--skip",)) == (
        "bench_pretrained --skip metta selection"
    )
    assert common.benchmark_key("bench_pretrained", argv) == "bench_pretrained"
    assert common.benchmark_key("bench_metta", ["--crop-scales"], ("--crop-scales",)) == (
        "bench_metta --crop-scales"
    )


def _fake_main(argv):
    """Fake benchmark: a title line, a progress line, a heading and two tables."""
    print("Fake benchmark on a machine")
    print("  seed 0: 0.50")
    print("# Quality\n\n| method | accuracy |\n|---|---|\n| ours | 0.91 |")
    print("Speed:\n| s |\n|---|\n| 1.5 |")
    return 1 if "--fail" in argv else 0


def test_run_and_record_writes_what_the_run_printed(common, tmp_path, capsys):
    page = tmp_path / "benchmarks.md"
    status = common.run_and_record(_fake_main, "bench_fake", ["--seeds", "2"], path=page)
    assert status == 0
    printed = capsys.readouterr().out
    assert "  seed 0: 0.50" in printed and "recorded as 'bench_fake'" in printed
    date = common.time.strftime("%Y-%m-%d")
    assert page.read_text(encoding="utf-8") == (
        "# Benchmarks\n\n<!-- benchmark: bench_fake -->\n## bench_fake\n\n"
        "The README is a newcomer's page; figures live in docs/benchmarks.md, written by the "
        f"scripts.\n\nMeasured {date} with `python -m benchmarks.bench_fake --seeds 2`.\n\n"
        "Fake benchmark on a machine\n\n### Quality\n\n"
        "| method | accuracy |\n|---|---|\n| ours | 0.91 |\nSpeed:\n\n| s |\n|---|\n| 1.5 |\n"
        "<!-- /benchmark: bench_fake -->\n"
    )


@pytest.mark.parametrize("argv, env", [(["--quick"], None), (["--fail"], None), ([], "0")])
def test_run_and_record_leaves_smoke_and_failed_runs_out(common, tmp_path, monkeypatch, argv, env):
    if env is not None:
        monkeypatch.setenv("REPENS_BENCH_RECORD", env)
    page = tmp_path / "benchmarks.md"
    status = common.run_and_record(_fake_main, "bench_fake", argv, path=page)
    assert status == (1 if "--fail" in argv else 0)
    assert not page.exists()
