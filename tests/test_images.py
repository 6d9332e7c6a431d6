"""One image module, one size rule: a collection of images gets the size most of them have.

Files 12x10, 32x32, 32x32, 32x32 (the small one first) give (3, 32, 32) to an estimator
fitted on the list (it took the first file's (3, 12, 10)), to ``load_image_folder`` and to
the ``repens`` command alike.
"""

import numpy as np
import pytest
from PIL import Image

from repens_sklearn import MeanTTAEmbedder, load_image_folder
from repens_sklearn._images import common_input_shape, default_input_shape, read_header
from repens_sklearn.cli import main
from repens_sklearn.exceptions import ImageDecodeError, ImageFolderError

MAJORITY = (3, 32, 32)


def _folder(root):
    """Class folders whose first file (sorted) is 12 high and 10 wide; the three others 32x32."""
    rng = np.random.default_rng(0)
    sizes = {"a": [(12, 10), (32, 32)], "b": [(32, 32), (32, 32)]}
    paths = []
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, (height, width) in enumerate(shapes):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            path = root / cls / f"{i}.png"
            Image.fromarray(pixels, mode="RGB").save(path)
            paths.append(str(path))
    return paths


def test_estimator_fitted_on_a_file_list_takes_the_majority_size(tmp_path):
    paths = _folder(tmp_path / "imgs")
    embedder = MeanTTAEmbedder("convnet_small", n_augmentations=0, random_state=0)
    embedder.fit(paths)
    assert embedder.input_shape_ == MAJORITY
    assert embedder.n_features_in_ == 3 * 32 * 32
    assert embedder.transform(paths).shape == (4, embedder.transform(paths[:1]).shape[1])


def test_pil_images_follow_the_same_rule(tmp_path):
    images = [Image.open(p) for p in _folder(tmp_path / "imgs")]
    assert default_input_shape(images) == MAJORITY


def test_load_image_folder_takes_the_majority_size(tmp_path):
    _folder(tmp_path / "imgs")
    assert load_image_folder(tmp_path / "imgs").input_shape == MAJORITY


def test_cli_takes_the_majority_size(tmp_path, monkeypatch):
    _folder(tmp_path / "imgs")
    seen = {}

    def fake_embed_files(embedder, paths, output, **kwargs):
        seen["input_shape"] = embedder.input_shape
        raise KeyboardInterrupt

    monkeypatch.setattr("repens_sklearn._embed_files.embed_files", fake_embed_files)
    assert (
        main(
            [
                "embed",
                str(tmp_path / "imgs"),
                "--backbone",
                "convnet_small",
                "-q",
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
        == 130
    )
    assert seen["input_shape"] == MAJORITY


def test_the_rule_itself():
    headers = [("L", (10, 12))] + [("RGB", (32, 32))] * 3
    assert common_input_shape(headers) == MAJORITY
    assert common_input_shape([("L", (4, 4)), ("I;16", (8, 6))]) == (1, 6, 8)  # tie: larger
    assert common_input_shape([]) is None


def test_unreadable_headers_do_not_count_unless_asked_to(tmp_path):
    paths = _folder(tmp_path / "imgs")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert default_input_shape([str(broken), *paths]) == MAJORITY
    with pytest.raises(ImageDecodeError, match=r"^cannot read image '.*broken\.png': "):
        default_input_shape([str(broken), *paths], on_error="raise")
    with pytest.raises(ImageDecodeError, match=r"^cannot read image '.*broken\.png' \(X\[2\]\)"):
        read_header(str(broken), 2)


def test_folder_error_is_typed_and_names_the_option_its_caller_asks_for(tmp_path):
    _folder(tmp_path / "imgs")
    broken = tmp_path / "imgs" / "b" / "2.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError) as header:
        read_header(broken)
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(tmp_path / "imgs")
    folder = str(tmp_path / "imgs")
    assert info.value.reason == str(header.value) and info.value.folder == folder
    assert str(info.value) == (
        f"{header.value} (in image folder {folder!r}; on_error='skip' leaves such files out)"
    )
    assert info.value.describe("--skip-unreadable").endswith(
        "; --skip-unreadable leaves such files out)"
    )
