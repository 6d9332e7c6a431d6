"""The `repens` command."""

import subprocess
import sys

import pytest

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


def _image_folder(root):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, base in [("dark", 40), ("light", 210)]:
        (root / cls).mkdir(parents=True)
        for i in range(4):
            arr = np.clip(base + rng.normal(0, 10, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(root / cls / f"{i}.png")
    return root


def test_embed_writes_npy_with_file_list(tmp_path, capsys):
    import numpy as np

    folder = _image_folder(tmp_path / "imgs")
    out = tmp_path / "emb.npy"
    assert main(["embed", str(folder), "--backbone", "convnet_small", "-o", str(out)]) == 0
    emb = np.load(out)
    files = (tmp_path / "emb.files.txt").read_text().split()
    assert emb.shape == (8, 128) and len(files) == 8 and files[0].endswith("dark/0.png")
    assert np.isfinite(emb).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_embed_with_tta_to_table_matches_library(tmp_path, suffix):
    import numpy as np
    import pandas as pd

    from repens_sklearn import MeanTTAEmbedder

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    folder = _image_folder(tmp_path / "imgs")
    out = tmp_path / f"emb{suffix}"
    assert main(["embed", str(folder / "dark"), "--backbone", "mlp", "--policy", "crop_flip",
                 "-S", "3", "--seed", "1", "-o", str(out)]) == 0
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(frame.columns[:2]) == ["file", "emb0"] and len(frame) == 4
    files = list(frame["file"])
    expected = MeanTTAEmbedder("mlp", policy="crop_flip", n_augmentations=3, random_state=1,
                               batch_size=64).fit_transform(files)
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rank_prints_scores_best_first(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    assert main(["rank", str(folder), "--candidate", "convnet_small", "--candidate", "mlp"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.")]
    assert len(lines) == 2
    scores = [float(line.split()[-1]) for line in lines]
    assert scores[0] >= scores[1] and scores[0] == 1.0  # dark vs light is trivially separable


@pytest.mark.parametrize("argv,message", [
    (["embed", "nowhere/", "--backbone", "mlp", "-o", "x.npy"], "path 'nowhere/' does not exist"),
    (["embed", "{folder}", "--backbone", "resnet19", "-o", "x.npy"], "Unknown backbone 'resnet19'"),
    (["embed", "{folder}", "--backbone", "mlp", "-o", "x.txt"], "must end in .npy, .csv or .parquet"),
    (["embed", "{folder}", "--backbone", "mlp", "--weights", "missing.pt", "-o", "x.npy"],
     "weights file 'missing.pt' does not exist"),
    (["embed", "{broken}", "--backbone", "mlp", "-o", "x.npy"], "cannot read image"),
    (["embed", "{folder}", "--backbone", "mlp", "-S", "4", "-o", "x.npy"],
     "--policy and -S/--n-augmentations go together"),
    (["embed", "{folder}", "--backbone", "mlp", "--policy", "crop_flip", "-o", "x.npy"],
     "--policy and -S/--n-augmentations go together"),
    (["rank", "nowhere/", "--candidate", "mlp"], "does not exist"),
    (["rank", "{folder}", "--candidate", "nope"], "Unknown backbone 'nope'"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    folder = _image_folder(tmp_path / "imgs")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    argv = [a.format(folder=folder, broken=broken) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_parquet_without_pyarrow_fails_before_embedding(tmp_path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name in ("pyarrow", "fastparquet") else real_find_spec(name, *a))
    folder = _image_folder(tmp_path / "imgs")
    monkeypatch.setattr("repens_sklearn.embedders.MeanTTAEmbedder.fit_transform",
                        lambda *a, **k: pytest.fail("embedded before checking the writer"))
    assert main(["embed", str(folder), "--backbone", "mlp", "-o", str(tmp_path / "x.parquet")]) == 2
    assert "writing .parquet needs pyarrow: pip install pyarrow" in capsys.readouterr().err
