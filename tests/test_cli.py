"""The `repens` command."""

import subprocess
import sys

from repens_sklearn.cli import main


def test_plugins_lists_every_kind_with_its_plugin(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "Backbones (" in out and "Augmentation policies (" in out and "Aggregations (" in out
    assert "resnet18_cifar" in out and "[repens_sklearn.backbones]" in out
    assert "gaussian_noise" in out and "[repens_sklearn.augment]" in out


def test_plugins_filter(capsys):
    assert main(["plugins", "--filter", "resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "resnet18" not in out and "Aggregations (0)" in out


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "repens_sklearn.cli", "plugins"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mlp" in result.stdout
