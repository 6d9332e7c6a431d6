"""Every script in examples/ runs end to end with --quick."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example runs end to end in a subprocess

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    """Runs, prints, and prints no warning (every warning shown once: ``-W default``)."""
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONWARNINGS="default",
    )
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{script.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    assert result.stdout.strip(), f"{script.name} printed nothing"
    warnings = [line for line in result.stderr.splitlines() if "Warning:" in line]
    assert warnings == [], f"{script.name} warned:\n" + "\n".join(warnings[:5])


def test_examples_exist_for_every_paper():
    names = {p.stem for p in EXAMPLES}
    assert {
        "metta",
        "ensiam",
        "learned_ensemble",
        "low_data_transfer",
        "model_zoo_diversity",
        "pipeline_gridsearch",
        "plugin_authoring",
    } <= names


@pytest.mark.parametrize("name", ["model_zoo_diversity", "ensiam"])
def test_fashion_examples_fall_back_to_digits(name, monkeypatch, tmp_path, capsys):
    """Without the Debian package the README's test command must still pass."""
    import importlib.util

    import repens_sklearn

    def not_installed(*args, **kwargs):
        raise FileNotFoundError("Fashion-MNIST file not found (test)")

    monkeypatch.setattr(repens_sklearn, "load_fashion_mnist", not_installed)
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES[0].parent / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # binds the patched loader
    monkeypatch.chdir(tmp_path)
    args = (
        ["--quick", "--out", str(tmp_path)]
        if name == "model_zoo_diversity"
        else ["--quick", "--checkpoint-dir", str(tmp_path / "ckpt")]
    )
    module.main(args)
    out = capsys.readouterr().out
    assert "accuracy" in out.lower()
