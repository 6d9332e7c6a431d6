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

from ._inputs import GREY_MODES, grey_scale, oriented_size
from ._warnings import warn
from .exceptions import ImageDecodeError

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


# ---------------------------------------------------------------- image folders
_ON_ERROR = ("raise", "skip")
# Tools leave these beside images: macOS zip archives and Finder, Jupyter, version control.
_IGNORED_DIRS = ("__MACOSX",)


def _is_ignored(name: str) -> bool:
    """Hidden files and folders (``.ipynb_checkpoints``, macOS ``._x.jpg``) and ``__MACOSX``."""
    return name.startswith(".") or name in _IGNORED_DIRS


def _iter_image_files(root, extensions=IMAGE_EXTENSIONS):
    """Image files under ``root``, recursively, in sorted order.

    Hidden files and folders (names starting with a dot: macOS ``._*``
    resource forks, ``.ipynb_checkpoints``, ``.git``) and ``__MACOSX`` folders
    are left out, as are files whose extension is not in ``extensions``
    (compared case-insensitively).
    """
    extensions = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_ignored(d))
        for file in sorted(files):
            if not _is_ignored(file) and file.lower().endswith(extensions):
                yield os.path.join(dirpath, file)


def _check_on_error(on_error, name="on_error"):
    if on_error not in _ON_ERROR:
        raise ValueError(f"{name} must be 'raise' or 'skip', got {on_error!r}")


def _read_image_header(path):
    """``(mode, (width, height))`` of an image file from its header, without decoding pixels.

    The size is the one shown: an EXIF rotation by 90 degrees swaps width and
    height, as decoding will. Raises :class:`~repens_sklearn.exceptions.ImageDecodeError`
    (a ``ValueError``) naming the file when it is not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode, oriented_size(image)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageDecodeError(f"cannot read image {os.fspath(path)!r}: "
                               f"{type(exc).__name__}: {exc}") from exc


def _check_image_decodes(path):
    """``None`` when ``path`` decodes as an image, else the reason (a one-line string).

    Decodes every pixel (a truncated JPEG has a valid header; only decoding finds it),
    and refuses grey images whose values have no scale, as the estimators do
    (:func:`repens_sklearn._inputs.grey_scale`).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "F"):
                grey_scale(image.mode, np.asarray(image), lambda: repr(os.fspath(path)))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _common_input_shape(headers):
    """The fixed image shape ``(C, H, W)`` for a collection of ``(mode, (width, height))`` headers.

    The size most of the images have (ties: the larger area, then the larger
    width), so no single file - the first, say - decides it; one channel when
    every image is grey, three (RGB) otherwise. ``None`` for no headers.
    """
    from collections import Counter

    headers = list(headers)
    if not headers:
        return None
    counts = Counter(size for _, size in headers)
    width, height = max(counts, key=lambda s: (counts[s], s[0] * s[1], s[0]))
    channels = 1 if all(mode in GREY_MODES for mode, _ in headers) else 3
    return (channels, int(height), int(width))


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
    
    _check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not _is_ignored(p.name))
    if not classes:
        raise ValueError(f"image folder {str(root)!r} has no class sub-folders")
    paths, target, headers, skipped = [], [], [], []
    empty = []
    for label, name in enumerate(classes):
        n_before = len(paths)
        for path in _iter_image_files(root / name, extensions):
            try:
                headers.append(_read_image_header(path))
            except ValueError as exc:
                if on_error == "raise":
                    raise ValueError(f"{exc} (in image folder {str(root)!r}; on_error='skip' "
                                     "leaves such files out)") from exc
                skipped.append((path, str(exc)))
                continue
            paths.append(path)
            target.append(label)
        if len(paths) == n_before:
            empty.append(name)
    if not paths:
        raise ValueError(f"image folder {str(root)!r} holds no images with extensions "
                         f"{', '.join(extensions)}")
    if empty:
        raise ValueError(f"class folder(s) {empty} of image folder {str(root)!r} hold no "
                         f"readable images with extensions {', '.join(extensions)}")
    if skipped:
        first = ", ".join(repr(p) for p, _ in skipped[:3])
        warn(f"load_image_folder skipped {len(skipped)} unreadable file(s) in "
                      f"{str(root)!r}: {first}{', ...' if len(skipped) > 3 else ''}",
                      UserWarning)
    return Bunch(paths=paths, target=np.asarray(target, dtype=np.int64), target_names=classes,
                 input_shape=_common_input_shape(headers), skipped=skipped)
