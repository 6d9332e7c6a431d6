"""Offline datasets: digits, Fashion-MNIST (Debian package or a folder), image folders."""

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from repens_sklearn import load_digits_images, load_fashion_mnist, load_image_folder
from repens_sklearn.datasets import FASHION_MNIST_HOME


def test_digits_as_images():
    bunch = load_digits_images()
    assert bunch.images.shape == (1797, 1, 8, 8) and bunch.images.dtype == np.float32
    assert bunch.images.min() == 0.0 and bunch.images.max() == 1.0
    X, y = load_digits_images(return_X_y=True)
    assert len(y) == 1797 and set(y) == set(range(10))


def _write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, gz)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz)
    bunch = load_fashion_mnist(data_home=tmp_path, split="test")
    assert bunch.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(bunch.images[:, 0], images)
    np.testing.assert_array_equal(bunch.target, labels)
    assert bunch.target_names[9] == "Ankle boot"


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(data_home=tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist(split="validation")


def test_fashion_mnist_truncated_file(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)), False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2), False)
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist(data_home=tmp_path, split="test")


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_HOME),
    reason="Debian package dataset-fashion-mnist not installed (CI installs it)",
)
def test_fashion_mnist_debian_package():
    X, y = load_fashion_mnist(split="test", return_X_y=True)
    assert X.shape == (10000, 1, 28, 28) and X.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))
    X_train, y_train = load_fashion_mnist(split="train", return_X_y=True)
    assert X_train.shape == (60000, 1, 28, 28) and len(y_train) == 60000


def test_image_folder(tmp_path):
    for cls, n in [("cat", 2), ("dog", 3)]:
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (4, 4)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    bunch = load_image_folder(tmp_path)
    assert bunch.target_names == ["cat", "dog"]
    np.testing.assert_array_equal(bunch.target, [0, 0, 1, 1, 1])
    assert all(p.endswith(".png") for p in bunch.paths)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(empty)


def _png(path, size=(4, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def test_image_folder_ignores_hidden_files_and_folders(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "cat" / "1.PNG")  # extensions compare case-insensitively
    _png(tmp_path / "dog" / "0.png")
    (tmp_path / "dog" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    _png(tmp_path / "dog" / ".ipynb_checkpoints" / "0-checkpoint.png")
    _png(tmp_path / ".ipynb_checkpoints" / "x.png")  # not a class either
    _png(tmp_path / "__MACOSX" / "cat" / "._0.png")
    bunch = load_image_folder(tmp_path)
    assert bunch.target_names == ["cat", "dog"]
    assert [os.path.relpath(p, tmp_path) for p in bunch.paths] == [
        os.path.join("cat", "0.png"),
        os.path.join("cat", "1.PNG"),
        os.path.join("dog", "0.png"),
    ]
    assert bunch.skipped == []


def test_image_folder_on_error(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "dog" / "0.png")
    (tmp_path / "dog" / "1.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image '.*dog/1.png'.*on_error='skip'"):
        load_image_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 unreadable file"):
        bunch = load_image_folder(tmp_path, on_error="skip")
    assert len(bunch.paths) == 2 and bunch.skipped[0][0].endswith("1.png")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        load_image_folder(tmp_path, on_error="ignore")


def test_image_folder_input_shape_is_the_common_size_not_the_first(tmp_path):
    _png(tmp_path / "a" / "0.png", size=(300, 200))  # sorted first, an odd one out
    for i in range(1, 4):
        _png(tmp_path / "a" / f"{i}.png", size=(32, 24), mode="L")
    _png(tmp_path / "b" / "0.png", size=(32, 24), mode="L")
    bunch = load_image_folder(tmp_path)
    assert bunch.input_shape == (3, 24, 32)  # (C, H, W); one colour image makes it RGB


def test_image_folder_grey_and_ties(tmp_path):
    _png(tmp_path / "a" / "0.png", size=(8, 8), mode="L")
    _png(tmp_path / "b" / "0.png", size=(16, 16), mode="L")
    assert load_image_folder(tmp_path).input_shape == (1, 16, 16)  # a tie goes to the larger


def test_image_folder_empty_class_is_named(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder\(s\) \['dog'\].*hold no readable images"):
        load_image_folder(tmp_path)


def test_image_folder_input_shape_is_the_shown_size_of_exif_rotated_photos(tmp_path):
    """Phones store portrait photos sideways with an EXIF rotation: the shown size counts."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (32, 16)).save(tmp_path / cls / "0.jpg", exif=exif)
    assert load_image_folder(tmp_path).input_shape == (3, 32, 16)  # was (3, 16, 32)


def test_check_image_decodes_refuses_what_the_estimators_refuse(tmp_path):
    """embed_files(on_error='skip') asks it which file failed: a float image without a scale."""
    from repens_sklearn._images import check_decodes as _check_image_decodes

    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    Image.fromarray(np.array([[0.0, 0.5]], np.float32), mode="F").save(good)
    Image.fromarray(np.array([[0.0, 300.0]], np.float32), mode="F").save(bad)
    assert _check_image_decodes(good) is None
    assert _check_image_decodes(bad) == (
        f"ImageDecodeError: image {str(bad)!r} has mode 'F' (float) with values in [0, 300]; "
        "float grey images are read as [0, 1] or [0, 255] by their largest value: rescale it "
        "to one of these ranges (or save it as 8 or 16 bits)"
    )
