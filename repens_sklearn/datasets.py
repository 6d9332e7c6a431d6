"""Real image data that is available offline.

- :func:`load_digits_images`: scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` images;
- :func:`load_fashion_mnist`: Fashion-MNIST from the Debian package
  ``dataset-fashion-mnist`` (or any folder holding its IDX files);
- :func:`load_image_folder`: a folder with one sub-folder of images per class.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._images import (
    IMAGE_EXTENSIONS,
    check_on_error,
    class_folders,
    common_input_shape,
    iter_image_files,
    read_header,
)
from ._warnings import warn
from .exceptions import ImageFolderError

FASHION_MNIST_HOME = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_digits_images(*, return_X_y=False):
    """scikit-learn's digits as float32 images ``(1797, 1, 8, 8)`` scaled to [0, 1].

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch` or tuple
        ``images``, ``target``, ``target_names`` and ``DESCR``, or
        ``(images, target)`` when ``return_X_y=True``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    if return_X_y:
        return images, digits.target
    return Bunch(
        images=images, target=digits.target, target_names=digits.target_names, DESCR=digits.DESCR
    )


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
        raise ValueError(
            f"Fashion-MNIST files in {str(home)!r} are inconsistent: "
            f"images {images.shape}, labels {labels.shape}"
        )
    images = images[:, None]
    if return_X_y:
        return images, labels
    return Bunch(images=images, target=labels, target_names=list(FASHION_MNIST_CLASSES))


def _find_idx(home: Path, name: str) -> Path:
    found = _find_idx_or_none(home, name)
    if found is not None:
        return found
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


def _find_idx_or_none(home: Path, name: str):
    for candidate in (home / (name + ".gz"), home / name):
        if candidate.is_file():
            return candidate
    return None


def _fashion_mnist_missing(data_home=None):
    """Names of the Fashion-MNIST IDX files missing from ``data_home`` (empty when all are there).

    Lets a caller (the ``repens`` command) check before it starts and word its
    own message.
    """
    home = Path(data_home if data_home is not None else FASHION_MNIST_HOME)
    names = [name for pair in _FASHION_FILES.values() for name in pair]
    return [name for name in names if _find_idx_or_none(home, name) is None]


def load_image_folder(root, *, extensions=IMAGE_EXTENSIONS, on_error="raise"):
    """List the images of ``root/<class>/<image>`` like torchvision's ImageFolder.

    Every file's header is read (not its pixels) to check that it is an image
    and to find the most common image size. Hidden files and folders (names
    starting with a dot: macOS ``._*`` files, ``.ipynb_checkpoints``) and
    ``__MACOSX`` folders are ignored, as torchvision ignores files whose
    extension it does not know.

    Parameters
    ----------
    root : str or path
        Folder with one sub-folder of images per class (nested folders allowed).
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings of images, compared case-insensitively.
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file whose header cannot be read: raise a
        ``ValueError`` naming it, or leave it out (listed in ``skipped``, with a
        warning). Files with a valid header but broken pixels (a truncated
        JPEG) are only found when decoded: see
        :func:`repens_sklearn.embed_files` ``on_error``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths`` (sorted list of str), ``target`` (int array), ``target_names``
        (sorted class folder names), ``input_shape`` (``(C, H, W)``: the size
        most images have, ties to the larger; one channel when all are grey,
        else three - pass it as an estimator's ``input_shape`` so that no single
        file decides the size) and ``skipped`` (list of ``(path, reason)``).
    """

    check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = class_folders(root)
    if not classes:
        raise ValueError(f"image folder {str(root)!r} has no class sub-folders")
    paths, target, headers, skipped = _scan_classes(root, classes, extensions, on_error)
    if not paths:
        raise ValueError(
            f"image folder {str(root)!r} holds no images with extensions {', '.join(extensions)}"
        )
    found = set(target)
    empty = [name for label, name in enumerate(classes) if label not in found]
    if empty:
        raise ValueError(
            f"class folder(s) {empty} of image folder {str(root)!r} hold no "
            f"readable images with extensions {', '.join(extensions)}"
        )
    if skipped:
        first = ", ".join(repr(p) for p, _ in skipped[:3])
        warn(
            f"load_image_folder skipped {len(skipped)} unreadable file(s) in "
            f"{str(root)!r}: {first}{', ...' if len(skipped) > 3 else ''}",
            UserWarning,
        )
    return Bunch(
        paths=paths,
        target=np.asarray(target, dtype=np.int64),
        target_names=classes,
        input_shape=common_input_shape(headers),
        skipped=skipped,
    )


def _scan_classes(root, classes, extensions, on_error):
    """``(paths, target, headers, skipped)`` of the class folders' images, from their headers."""
    paths, target, headers, skipped = [], [], [], []
    for label, name in enumerate(classes):
        for path in iter_image_files(root / name, extensions):
            try:
                headers.append(read_header(path))
            except ValueError as exc:
                if on_error == "raise":
                    raise ImageFolderError(str(exc), folder=str(root)) from exc
                skipped.append((path, str(exc)))
                continue
            paths.append(path)
            target.append(label)
    return paths, target, headers, skipped
