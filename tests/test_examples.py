"""Every script in examples/ runs end to end with --quick."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD="1")
    result = subprocess.run([sys.executable, str(script), "--quick"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert result.stdout.strip(), f"{script.name} printed nothing"


def test_examples_exist_for_every_paper():
    names = {p.stem for p in EXAMPLES}
    assert {"metta", "ensiam", "learned_ensemble", "low_data_transfer", "model_zoo_diversity",
            "pipeline_gridsearch", "plugin_authoring"} <= names
