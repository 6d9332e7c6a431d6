"""Real image data that is available offline.

- :func:`load_digits_images`: scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` images;
- :func:`load_fashion_mnist`: Fashion-MNIST from the Debian package
  ``dataset-fashion-mnist`` (or any folder holding its IDX files);
- :func:`load_image_folder`: a folder with one sub-folder of images per class.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

FASHION_MNIST_HOME = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_digits_images(*, return_X_y=False):
    """scikit-learn's digits as float32 images ``(1797, 1, 8, 8)`` scaled to [0, 1].

    Returns a :class:`~sklearn.utils.Bunch` with ``images``, ``target``,
    ``target_names``, or ``(images, target)`` when ``return_X_y=True``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    if return_X_y:
        return images, digits.target
    return Bunch(images=images, target=digits.target, target_names=digits.target_names,
                 DESCR=digits.DESCR)


def load_fashion_mnist(data_home=None, split="train", *, return_X_y=False):
    """Fashion-MNIST images ``(N, 1, 28, 28)`` uint8 and labels from local IDX files.

    Parameters
    ----------
    data_home : str or path, default=None
        Folder holding the four IDX files (optionally ``.gz``). ``None`` reads the
        Debian package's folder ``/usr/share/datasets/fashion-mnist``.
    split : {"train", "test"}, default="train"
        60,000 training or 10,000 test images.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    home = Path(data_home if data_home is not None else FASHION_MNIST_HOME)
    image_name, label_name = _FASHION_FILES[split]
    images = _read_idx(_find_idx(home, image_name))
    labels = _read_idx(_find_idx(home, label_name)).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST files in {str(home)!r} are inconsistent: "
                         f"images {images.shape}, labels {labels.shape}")
    images = images[:, None]
    if return_X_y:
        return images, labels
    return Bunch(images=images, target=labels, target_names=list(FASHION_MNIST_CLASSES))


def _find_idx(home: Path, name: str) -> Path:
    for candidate in (home / (name + ".gz"), home / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}[.gz] not found in {str(home)!r}. Install the data with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass "
        "data_home= a folder holding the IDX files."
    )


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian header: magic, dims; then the data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} is truncated: header says {tuple(dims)}")
    return data.reshape(tuple(dims))


def load_image_folder(root, *, extensions=IMAGE_EXTENSIONS):
    """List the images of ``root/<class>/<image>`` like torchvision's ImageFolder.

    Returns a Bunch with ``paths`` (sorted list of str), ``target`` (int array)
    and ``target_names`` (sorted class folder names).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {str(root)!r} has no class sub-folders")
    paths, target = [], []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(root / name)):
            for file in sorted(files):
                if file.lower().endswith(tuple(extensions)):
                    paths.append(os.path.join(dirpath, file))
                    target.append(label)
    if not paths:
        raise ValueError(f"image folder {str(root)!r} holds no images with extensions {extensions}")
    return Bunch(paths=paths, target=np.asarray(target, dtype=np.int64), target_names=classes)
