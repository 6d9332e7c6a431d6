"""Issue #21, sections 3 and 7: every input decoded as a viewer shows it (or refused
with a reason), and DataLoader workers that start and fail clearly anywhere."""

import multiprocessing
import warnings

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import BaseEstimator
from torch import nn

from repens_sklearn import MeanTTAEmbedder
from repens_sklearn._inputs import InputsDataset, check_inputs, make_loader, worker_context
from repens_sklearn.exceptions import ImageDecodeError, InputRangeWarning


class _Est(BaseEstimator):
    pass


def _decode(paths_or_images, **kwargs):
    """Decoded images as float [0, 1] numpy ``(N, C, H, W)``."""
    inputs = check_inputs(_Est(), list(paths_or_images), **kwargs)
    return inputs.batch(0, inputs.n_samples).numpy()


_RAMP = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)


# ------------------------------------------------------------- grey modes F and I
def test_float_tiff_in_unit_range_is_read_as_unit_range_not_black(tmp_path):
    path = tmp_path / "unit.tif"
    Image.fromarray(_RAMP, mode="F").save(path)
    assert Image.open(path).mode == "F"
    got = _decode([path])[0, 0]
    np.testing.assert_allclose(got, np.rint(_RAMP * 255) / 255, atol=1e-6)  # was all <= 1/255


def test_float_tiff_in_0_255_is_read_as_pixels(tmp_path):
    path = tmp_path / "pixels.tif"
    Image.fromarray(_RAMP * 200, mode="F").save(path)  # max 200: a [0, 255] image
    got = _decode([path])[0, 0]
    np.testing.assert_allclose(got, np.rint(_RAMP * 200) / 255, atol=1e-6)


@pytest.mark.parametrize(
    "values, shown",
    [
        (np.array([[-1.0, 0.5]], np.float32), r"\[-1, 0.5\]"),
        (np.array([[0.0, 300.0]], np.float32), r"\[0, 300\]"),
        (np.array([[0.0, np.nan]], np.float32), r"\[0, 0\] and NaN or infinity"),
    ],
)
def test_float_tiff_without_a_scale_is_refused_naming_it(tmp_path, values, shown):
    path = tmp_path / "odd.tif"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(
        ImageDecodeError,
        match=rf"image '.*odd\.tif' \(X\[0\]\) has mode 'F' \(float\)"
        rf" with values in {shown}.*\[0, 1\] or \[0, 255\]",
    ):
        _decode([path])


@pytest.mark.parametrize("high, white", [(255, 255.0), (4095, 65535.0), (65535, 65535.0)])
def test_int32_tiff_scaled_by_its_value_range(tmp_path, high, white):
    values = np.rint(_RAMP * high).astype(np.int32)
    path = tmp_path / "int.tif"
    Image.fromarray(values, mode="I").save(path)
    assert Image.open(path).mode == "I"
    expected = np.clip(np.rint(values * (255.0 / white)), 0, 255) / 255
    np.testing.assert_allclose(_decode([path])[0, 0], expected, atol=1e-6)


def test_int32_tiff_beyond_16_bits_is_refused(tmp_path):
    path = tmp_path / "big.tif"
    Image.fromarray(np.array([[0, 100_000]], np.int32), mode="I").save(path)
    with pytest.raises(
        ImageDecodeError,
        match=r"mode 'I' \(32-bit integer\) with values in "
        r"\[0, 100000\].*\[0, 255\] or \[0, 65535\]",
    ):
        _decode([path])  # was clipped silently to white


def test_float_pil_image_in_unit_range():
    got = _decode([Image.fromarray(_RAMP, mode="F")])[0, 0]
    np.testing.assert_allclose(got, np.rint(_RAMP * 255) / 255, atol=1e-6)


# --------------------------------------------------------------- EXIF orientation
def _rotated_jpeg_source():
    """32 wide x 16 high, white on its left quarter, EXIF orientation 6 (shown turned 90 deg CW)."""
    image = Image.new("L", (32, 16), 0)
    image.paste(255, (0, 0, 8, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    return image, exif


def _check_shown_upright(decoded):
    """Orientation 6 shows the stored left edge at the top: 16 wide, 32 high, white on top."""
    assert decoded.shape == (1, 32, 16)
    assert decoded[0, :6].mean() > 0.9 and decoded[0, 10:].mean() < 0.1


def test_exif_rotated_jpeg_file_is_decoded_as_shown(tmp_path):
    image, exif = _rotated_jpeg_source()
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (32, 16)  # stored sideways
    inputs = check_inputs(_Est(), [path])
    assert inputs.sample_shape == (1, 32, 16)  # was (1, 16, 32)
    _check_shown_upright(inputs.batch(0, 1).numpy()[0])


def test_exif_rotated_pil_image_is_decoded_as_shown_and_left_as_it_was():
    image, exif = _rotated_jpeg_source()
    image.info["exif"] = exif.tobytes()
    _check_shown_upright(_decode([image])[0])
    assert image.size == (32, 16) and image.getexif()[0x0112] == 6  # the user's image untouched


# ------------------------------------------------------------ array layouts
def test_one_hwc_image_without_batch_axis_is_refused_with_the_fix():
    X = np.random.default_rng(0).random((16, 12, 3)).astype(np.float32)
    with pytest.raises(
        ValueError,
        match=r"X of shape \(16, 12, 3\) looks like one \(H, W, C\) "
        r"image without a batch axis.*pass X\[None\] for one "
        r"image, or input_shape=\(1, 12, 3\) if it really holds 16 "
        r"grey images",
    ):
        check_inputs(_Est(), X)  # was read as 16 grey images of 12 x 3 pixels
    assert check_inputs(_Est(), X[None]).sample_shape == (3, 16, 12)
    assert check_inputs(_Est(), X, input_shape=(1, 12, 3)).sample_shape == (1, 12, 3)


def test_ambiguous_n3h3_layout_is_refused_unless_input_shape_says_which():
    X = np.random.default_rng(0).random((5, 3, 16, 3)).astype(np.float32)
    with pytest.raises(
        ValueError,
        match=r"layout of image array X with shape \(5, 3, 16, 3\) is "
        r"ambiguous: it reads as \(N, C, H, W\) images of shape "
        r"\(3, 16, 3\) or as \(N, H, W, C\) images of shape "
        r"\(3, 3, 16\); pass input_shape=\(3, 16, 3\) or "
        r"input_shape=\(3, 3, 16\) to say which",
    ):
        check_inputs(_Est(), X)  # was read as (N, H, W, C) silently
    est = _Est()
    nchw = check_inputs(est, X, input_shape=(3, 16, 3))
    np.testing.assert_array_equal(nchw.batch(0, 5).numpy(), X)
    # at transform the shape seen in fit says which
    np.testing.assert_array_equal(check_inputs(est, X, reset=False).batch(0, 5).numpy(), X)
    nhwc = check_inputs(_Est(), X, input_shape=(3, 3, 16)).batch(0, 5).numpy()
    np.testing.assert_array_equal(nhwc, np.moveaxis(X, -1, 1))


def test_ambiguous_square_layout_says_how_to_pass_it():
    X = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(
        ValueError,
        match=r"pass \(N, C, H, W\) images as X\.reshape\(len\(X\), -1\)"
        r" with input_shape=\(3, 3, 3\)",
    ):
        check_inputs(_Est(), X)


@pytest.mark.parametrize(
    "fit_X, transform_X, layout, was, fix",
    [
        (
            lambda X: X,
            lambda X: np.moveaxis(X, -1, 1),
            r"\(N, C, H, W\)",
            r"\(N, H, W, C\)",
            r"np\.moveaxis\(X, 1, -1\)",
        ),
        (
            lambda X: np.moveaxis(X, -1, 1),
            lambda X: X,
            r"\(N, H, W, C\)",
            r"\(N, C, H, W\)",
            r"np\.moveaxis\(X, -1, 1\)",
        ),
        (
            lambda X: X[:, None, :, :, 0],
            lambda X: X[..., 0],
            r"\(N, H, W\)",
            r"\(N, C, H, W\)",
            r"X\[:, None\]",
        ),
    ],
)
def test_fit_in_one_layout_transform_in_another_says_layout(fit_X, transform_X, layout, was, fix):
    X = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    emb = MeanTTAEmbedder("convnet_small", n_augmentations=0, random_state=0).fit(fit_X(X))
    with pytest.raises(
        ValueError,
        match=rf"X holds images of shape \(\d, 8, 8\) in the {layout} "
        rf"layout, but MeanTTAEmbedder was fitted on them in the "
        rf"{was} layout: pass X in the layout used in fit "
        rf"\({fix}\)",
    ):
        emb.transform(transform_X(X))  # was "X has 3 features, but ... expecting 8"


# ----------------------------------------------- float arrays for a pretrained backbone
class _TinyPretrained(nn.Module):
    """A backbone with a timm-style ``pretrained_cfg`` (no weights to download)."""

    def __init__(self):
        super().__init__()
        self.pretrained_cfg = {
            "input_size": (3, 8, 8),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        }
        self.linear = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.linear(x.flatten(1))


def _images01(n=6):
    return np.random.default_rng(0).random((n, 3, 8, 8)).astype(np.float32)


def test_float_0_255_images_to_a_pretrained_backbone_warn_at_fit_and_transform():
    X = _images01()
    emb = MeanTTAEmbedder(_TinyPretrained(), n_augmentations=0, random_state=0)
    with pytest.warns(
        InputRangeWarning,
        match=r"X holds float images with values in "
        r"\[0\.\d+, 2\d\d\.?\d*\], but backbone "
        r"'_TinyPretrained' is pretrained on \[0, 1\] images.*"
        r"divide X by 255 or pass it as uint8",
    ):
        emb.fit(X * 255)
    with pytest.warns(InputRangeWarning, match="pass preprocess=False"):
        emb.transform((X - 0.5) / 0.25)  # already normalized
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        out = emb.fit_transform(X)  # [0, 1] floats: no warning
        np.testing.assert_allclose(
            emb.transform((X * 255).round().astype(np.uint8)), out, atol=0.05
        )  # uint8 pixels: scaled, no warning
        MeanTTAEmbedder("convnet_small", n_augmentations=0).fit(X * 255)  # no pretrained_cfg


# ----------------------------------------------------------- DataLoader workers
def _write_pngs(folder, n=6):
    paths = []
    for i in range(n):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(paths[-1])
    return paths


def _sum_with_workers(paths):
    inputs = check_inputs(_Est(), paths)
    return [float(batch.sum()) for _, batch in inputs.iter_batches(2, "cpu", num_workers=2)]


@pytest.mark.slow  # starting loky workers imports torch in each: ~7 s on 2 busy cores
def test_num_workers_inside_a_loky_worker(tmp_path):
    paths = _write_pngs(tmp_path)
    expected = _sum_with_workers(paths)
    assert expected == pytest.approx([64 * 30 * k / 255 for k in (1, 5, 9)], rel=1e-5)
    # was AttributeError: 'Process' object has no attribute 'env'
    got = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_sum_with_workers)(paths) for _ in range(2)
    )
    assert got == [expected, expected]


def test_worker_context_only_changes_a_non_standard_start_method(monkeypatch):
    assert worker_context() is None  # the normal path: torch's default, as before
    loader = make_loader(InputsDataset(check_inputs(_Est(), np.zeros((4, 2)))), 2, num_workers=1)
    assert loader.multiprocessing_context is None
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "loky")
    context = worker_context()
    assert context.get_start_method() == multiprocessing.get_all_start_methods()[0]


def test_decoding_error_in_a_worker_shows_the_files_own_message_first(tmp_path):
    paths = _write_pngs(tmp_path, n=3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    inputs = check_inputs(_Est(), [*paths, str(broken)])
    with pytest.raises(ImageDecodeError) as info:
        for _ in inputs.iter_batches(2, "cpu", num_workers=2):
            pass
    assert str(info.value).startswith(f"cannot read image {str(broken)!r} (X[3]): ")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    if hasattr(info.value, "add_note"):
        assert "raised in DataLoader worker process" in notes and "Traceback" in notes


def test_worker_error_of_any_collate_fn_passes_through(tmp_path):
    """A plain DataLoader setting (default collate, per-item fetching) keeps the error too."""
    from repens_sklearn._inputs import InputsLoader

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 3:
                raise KeyError(f"item {i} is missing")
            return torch.tensor([float(i)])

    batches = []
    with pytest.raises(KeyError) as info:
        for batch in InputsLoader(Items(), batch_size=2, num_workers=1):
            batches.append(batch)
    assert info.value.args == (
        "item 3 is missing",
    )  # torch: ("Caught KeyError in DataLoader ...",)
    assert torch.equal(batches[0], torch.tensor([[0.0], [1.0]]))


@pytest.mark.slow
def test_grid_search_n_jobs_with_num_workers(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    paths = _write_pngs(tmp_path, n=8)
    y = np.arange(8) % 2
    pipe = make_pipeline(
        MeanTTAEmbedder(
            "convnet_small", n_augmentations=0, num_workers=1, batch_size=4, random_state=0
        ),
        LogisticRegression(),
    )
    search = GridSearchCV(
        pipe, {"logisticregression__C": [0.1, 1.0]}, cv=2, n_jobs=2, error_score="raise"
    ).fit(paths, y)
    assert len(search.cv_results_["mean_test_score"]) == 2


@pytest.mark.slow
def test_knn_selector_finetune_and_embed_files_n_jobs_with_num_workers(tmp_path):
    """Each ran DataLoader workers inside loky workers: 'Process' object has no attribute 'env'."""
    from sklearn.model_selection import GridSearchCV

    from repens_sklearn import FineTuneClassifier, TransferabilitySelector, embed_files

    paths = _write_pngs(tmp_path, n=8)
    y = np.arange(8) % 2
    candidates = [
        (
            f"m{seed}",
            MeanTTAEmbedder(
                "convnet_small", n_augmentations=0, num_workers=1, batch_size=4, random_state=seed
            ),
        )
        for seed in (0, 1)
    ]
    selector = TransferabilitySelector(candidates, n_select=1, n_jobs=2).fit(paths, y)
    serial = TransferabilitySelector(candidates, n_select=1).fit(paths, y)
    assert selector.scores_ == pytest.approx(serial.scores_)
    GridSearchCV(
        FineTuneClassifier("convnet_small", max_steps=2, batch_size=4, num_workers=1),
        {"lr": [0.01, 0.1]},
        cv=2,
        n_jobs=2,
        error_score="raise",
    ).fit(paths, y)
    emb = candidates[0][1].fit(paths)
    embed_files(emb, paths, tmp_path / "out.npy", chunk_size=2, n_jobs=2)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), emb.transform(paths), atol=1e-5)
