"""Adversarial cases for the ``repens`` command: the CLI branches on the library's exception
types (never on message text), so every refusal of the decoder reaches the user as one line."""

import numpy as np
import pytest
from PIL import Image

from repens_sklearn.cli import main


def _folder_with_an_unscaled_float_tiff(root):
    rng = np.random.default_rng(0)
    for cls, base in [("dark", 40), ("light", 210)]:
        (root / cls).mkdir(parents=True)
        for i in range(3):
            arr = np.clip(base + rng.normal(0, 10, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(root / cls / f"{i}.png")
    # a valid header, but float pixels in [-1, 300]: no scale the decoder can honour
    values = np.linspace(-1, 300, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values, mode="F").save(root / "dark" / "odd.tif")
    return root


def test_rank_refused_image_is_one_line_naming_the_file_and_the_option(tmp_path, capsys):
    folder = _folder_with_an_unscaled_float_tiff(tmp_path / "imgs")
    assert main(["rank", str(folder), "--candidate", "mlp", "--quiet"]) == 2
    *notes, err = capsys.readouterr().err.strip().splitlines()
    assert "odd.tif" in err and "mode 'F'" in err
    assert err.endswith("(--skip-unreadable leaves such files out)")
    assert all("random weights" in note for note in notes)  # the backbone note, no traceback


def test_rank_skip_unreadable_leaves_the_refused_image_out(tmp_path, capsys):
    folder = _folder_with_an_unscaled_float_tiff(tmp_path / "imgs")
    assert main(["rank", str(folder), "--candidate", "mlp", "--quiet", "--skip-unreadable"]) == 0
    captured = capsys.readouterr()
    assert "on 6 images, 2 classes" in captured.out
    assert "1 unreadable file(s) skipped" in captured.err and "odd.tif" in captured.err


def test_candidate_errors_keep_the_library_type():
    from repens_sklearn.exceptions import ImageDecodeError
    from repens_sklearn.selection._candidates import raise_naming

    with pytest.raises(ImageDecodeError, match=r"^candidate 'a' failed: cannot read image 'x'$"):
        raise_naming(ImageDecodeError("cannot read image 'x'"), "candidate 'a' failed")
