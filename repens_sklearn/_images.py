"""Image files and PIL images: the one home of decoding, headers, folder walks and sizes.

- decoding (:func:`load_image`) as a viewer shows an image: EXIF orientation
  applied, grey images of more than 8 bits scaled by the range of their values
  (:func:`grey_scale`), converted to the channel count and resized;
- headers (:func:`read_header`): mode and size as shown, without decoding pixels;
- folder walks (:func:`iter_image_files`, :func:`class_folders`): hidden files and
  folders and ``__MACOSX`` left out, sorted;
- the default input shape of a collection of images (:func:`common_input_shape`):
  the size most of them have, never the first file's. Estimators given a list of
  images, :func:`~repens_sklearn.load_image_folder` and the ``repens`` command
  all use it.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from .exceptions import ImageDecodeError

CHANNEL_COUNTS = (1, 3, 4)
# PIL modes decoded as one grey channel (16-bit ones scaled, see to_mode)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
ON_ERROR = ("raise", "skip")
# Tools leave these beside images: macOS zip archives and Finder, Jupyter, version control.
_IGNORED_DIRS = ("__MACOSX",)


def is_pil(obj) -> bool:
    """Whether ``obj`` is a PIL image."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def check_on_error(on_error, name="on_error"):
    """Refuse an ``on_error`` other than ``"raise"`` or ``"skip"``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"{name} must be 'raise' or 'skip', got {on_error!r}")


# ------------------------------------------------------------------ folder walks
def is_ignored(name: str) -> bool:
    """Hidden files and folders (``.ipynb_checkpoints``, macOS ``._x.jpg``) and ``__MACOSX``."""
    return name.startswith(".") or name in _IGNORED_DIRS


def iter_image_files(root, extensions=IMAGE_EXTENSIONS):
    """Image files under ``root``, recursively, in sorted order.

    Hidden files and folders (names starting with a dot: macOS ``._*``
    resource forks, ``.ipynb_checkpoints``, ``.git``) and ``__MACOSX`` folders
    are left out, as are files whose extension is not in ``extensions``
    (compared case-insensitively).
    """
    extensions = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        for file in sorted(files):
            if not is_ignored(file) and file.lower().endswith(extensions):
                yield os.path.join(dirpath, file)


def class_folders(root) -> list[str]:
    """Sorted names of the sub-folders of ``root`` that are not hidden (one per class)."""
    return sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not is_ignored(entry.name)
    )


# ------------------------------------------------------------------------ names
def source_name(source, index=None) -> str:
    """How an error names an image: its path or that it is a PIL image, and its place in X."""
    where = "" if index is None else f"X[{index}]"
    if is_pil(source):
        return f"{where or 'the image'} (a PIL image)"
    return f"{os.fspath(source)!r}" + (f" ({where})" if where else "")


def check_sources(X):
    """Refuse a list X of image sources holding a missing file or a non-image."""
    for i, source in enumerate(X):
        if isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"image file {os.fspath(source)!r} (X[{i}]) does not exist")
        elif not is_pil(source):
            raise TypeError(
                f"X[{i}] is a {type(source).__name__}; a list X must hold only image "
                "paths or PIL images"
            )


# ---------------------------------------------------------------------- headers
def exif_orientation(image) -> int:
    """The EXIF orientation tag of an opened image (1: stored as shown), read from its header.

    A PNG's eXIf chunk that comes after the pixel data is only known once they
    are decoded: it is not looked for here (decoding applies it).
    """
    if getattr(image, "format", None) == "PNG" and "exif" not in image.info:
        return 1  # PIL's getexif() would decode every pixel to find a late eXIf chunk
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: the pixels as stored
        return 1


def oriented_size(image) -> tuple:
    """``(width, height)`` of an opened image as shown, EXIF rotations by 90 degrees applied."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in (5, 6, 7, 8) else (width, height)


def read_header(source, index=None) -> tuple:
    """``(mode, (width, height))`` of an image (a path or a PIL image), without decoding pixels.

    The size is the one shown: an EXIF rotation by 90 degrees swaps width and
    height, as decoding will. Raises :class:`~repens_sklearn.exceptions.ImageDecodeError`
    (a ``ValueError``) naming the file when it is not a readable image.
    """
    if is_pil(source):
        return source.mode, oriented_size(source)
    from PIL import Image

    try:
        with Image.open(source) as image:
            return image.mode, oriented_size(image)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageDecodeError(
            f"cannot read image {source_name(source, index)}: {type(exc).__name__}: {exc}"
        ) from exc


def common_input_shape(headers):
    """The fixed image shape ``(C, H, W)`` for a collection of ``(mode, (width, height))`` headers.

    The size most of the images have (ties: the larger area, then the larger
    width), so no single file - the first, say - decides it; one channel when
    every image is grey, three (RGB) otherwise. ``None`` for no headers.

    >>> common_input_shape([("L", (10, 12))] + [("RGB", (32, 32))] * 3)
    (3, 32, 32)
    """
    headers = list(headers)
    if not headers:
        return None
    counts = Counter(size for _, size in headers)
    width, height = max(counts, key=lambda s: (counts[s], s[0] * s[1], s[0]))
    channels = 1 if all(mode in GREY_MODES for mode, _ in headers) else 3
    return (channels, int(height), int(width))


def default_input_shape(sources, on_error="skip"):
    """The :func:`common_input_shape` of image sources (paths or PIL images), from their headers.

    A source whose header cannot be read raises its
    :class:`~repens_sklearn.exceptions.ImageDecodeError` with ``on_error="raise"``;
    with ``"skip"`` it does not count (decoding it names it later), unless no
    header at all can be read.
    """
    check_on_error(on_error)
    headers, first_error = [], None
    for source in sources:
        try:
            headers.append(read_header(source))
        except ImageDecodeError as exc:
            if on_error == "raise":
                raise
            first_error = first_error or exc
    if not headers and first_error is not None:
        raise first_error
    return common_input_shape(headers)


# --------------------------------------------------------------------- decoding
def open_image(source, index=None):
    """The image of ``source`` (a path or a PIL image) as a viewer shows it (EXIF orientation).

    A PIL image given by the user is never modified (a rotated copy is returned).
    """
    from PIL import Image, ImageOps

    if is_pil(source):
        return ImageOps.exif_transpose(source) if exif_orientation(source) != 1 else source
    try:
        image = Image.open(source)
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageDecodeError(f"cannot read image {source_name(source, index)}: {exc}") from exc
    if exif_orientation(image) != 1:
        ImageOps.exif_transpose(image, in_place=True)
    return image


def load_image(source, sample_shape, index=None, loader=None) -> np.ndarray:
    """``source`` decoded as a uint8 ``(C, H, W)`` array of ``sample_shape``.

    ``loader`` (an :class:`~repens_sklearn._preprocess.ImagePreprocessor`) resizes and
    crops the image as a pretrained backbone's evaluation transform does first.
    """
    from PIL import Image

    channels, height, width = sample_shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    image = to_mode(open_image(source, index), mode, lambda: source_name(source, index))
    if loader is not None:
        image = loader.load_image(image)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[None] if channels == 1 else np.moveaxis(arr, -1, 0)


def check_decodes(path):
    """``None`` when ``path`` decodes as an image, else the reason (a one-line string).

    Decodes every pixel (a truncated JPEG has a valid header; only decoding finds it),
    and refuses grey images whose values have no scale, as the estimators do
    (:func:`grey_scale`).
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


def to_mode(image, mode, name=lambda: "the image"):
    """``image.convert(mode)``, with grey images of more than 8 bits scaled by :func:`grey_scale`.

    PIL's own conversion clips them to [0, 255]: a [0, 1] float image came out black
    and a 16-bit one white. ``name()`` names the image in errors.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        from PIL import Image

        values = np.asarray(image, dtype=np.float64)
        values = values * (255.0 / grey_scale(image.mode, values, name))
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    return image.convert(mode)


def grey_scale(mode, values, name=lambda: "the image") -> float:
    """The value that is white in a grey image of PIL ``mode`` holding ``values``.

    - ``I;16*`` (16-bit files): 65535;
    - ``F`` (32-bit float): 1 when every value is <= 1, else 255 when <= 255;
    - ``I`` (32-bit integer): 255 when every value is <= 255, else 65535 when <= 65535.

    Anything else (negative, larger, NaN) has no scale we can tell: an
    :class:`~repens_sklearn.exceptions.ImageDecodeError` (a ``ValueError``)
    naming the image, its mode and its value range.
    """
    if mode.startswith("I;16"):
        return 65535.0
    finite = np.isfinite(values)
    low, high = (
        float(values.min(initial=0, where=finite)),
        float(values.max(initial=0, where=finite)),
    )
    scales = (1.0, 255.0) if mode == "F" else (255.0, 65535.0)
    if finite.all() and low >= 0:
        for scale in scales:
            if high <= scale:
                return scale
    kind = "float" if mode == "F" else "32-bit integer"
    also = "" if finite.all() else " and NaN or infinity"
    raise ImageDecodeError(
        f"image {name()} has mode {mode!r} ({kind}) with values in [{low:g}, {high:g}]{also}; "
        f"{kind} grey images are read as [0, {scales[0]:g}] or [0, {scales[1]:g}] by their "
        f"largest value: rescale it to one of these ranges (or save it as 8 or 16 bits)"
    )
