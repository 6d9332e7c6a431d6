"""X -> validated samples -> batches of tensors."""

import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import BaseEstimator

from repens_sklearn._compute import make_generator, resolve_device, seed_from
from repens_sklearn._inputs import check_inputs


class _Est(BaseEstimator):
    pass


def test_vectors_2d():
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    est = _Est()
    inputs = check_inputs(est, X)
    assert inputs.sample_shape == (4,) and not inputs.is_image
    assert est.n_features_in_ == 4 and est.input_shape_ == (4,)
    batch = inputs.batch(1, 3)
    assert batch.dtype == torch.float32 and torch.equal(
        batch, torch.tensor(X[1:3], dtype=torch.float32)
    )


def test_flattened_images_with_input_shape():
    X = np.random.default_rng(0).random((5, 2 * 3 * 4))
    inputs = check_inputs(_Est(), X, input_shape=(2, 3, 4))
    assert inputs.is_image and inputs.batch(0, 5).shape == (5, 2, 3, 4)
    np.testing.assert_allclose(inputs.batch(0, 1).numpy().ravel(), X[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"input_shape=\(1, 3, 4\) needs 12 columns, but X has 24"):
        check_inputs(_Est(), X, input_shape=(1, 3, 4))
    with pytest.raises(ValueError, match="input_shape must be"):
        check_inputs(_Est(), X, input_shape=(2, 12))


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((4, 6, 5), (1, 6, 5)),
        ((4, 6, 5, 3), (3, 6, 5)),
        ((4, 3, 6, 5), (3, 6, 5)),
        ((4, 1, 8, 8), (1, 8, 8)),
    ],
)
def test_image_array_layouts(shape, expected):
    X = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    inputs = check_inputs(_Est(), X)
    assert inputs.sample_shape == expected
    batch = inputs.batch(0, 2)
    assert batch.shape == (2, *expected)
    assert 0.0 <= batch.min() and batch.max() <= 1.0  # uint8 scaled to [0, 1]
    if len(shape) == 4 and shape[-1] == 3:
        assert batch[0, 2, 1, 0].item() == pytest.approx(X[0, 1, 0, 2] / 255.0)


def test_flattened_uint8_images_scaled_like_image_arrays():
    X = np.random.default_rng(0).integers(0, 256, size=(3, 1, 8, 8), dtype=np.uint8)
    flat = check_inputs(_Est(), X.reshape(3, -1), input_shape=(1, 8, 8)).batch(0, 3)
    torch.testing.assert_close(flat, check_inputs(_Est(), X).batch(0, 3))
    # without input_shape a 2-D uint8 array is vectors: numbers, not pixels
    vectors = check_inputs(_Est(), X.reshape(3, -1)).batch(0, 3)
    assert vectors.max().item() == X.max()


def test_image_array_resized_to_input_shape():
    X = np.ones((2, 1, 8, 8), dtype=np.float32)
    inputs = check_inputs(_Est(), X, input_shape=(1, 4, 4))
    batch = inputs.batch(0, 2)
    assert batch.shape == (2, 1, 4, 4) and torch.allclose(batch, torch.ones(2, 1, 4, 4))


def test_ambiguous_channel_axis():
    with pytest.raises(ValueError, match="cannot tell the channel axis"):
        check_inputs(_Est(), np.zeros((2, 5, 6, 7)))


@pytest.mark.parametrize(
    "shape, nchw, nhwc",
    [
        ((2, 3, 4, 4), (3, 4, 4), (4, 3, 4)),  # RGB 4 x 4, was read as RGBA 3 x 4
        ((2, 1, 8, 3), (1, 8, 3), (3, 1, 8)),
    ],
)
def test_both_axes_could_hold_the_channels(shape, nchw, nhwc):
    X = np.random.default_rng(0).random(shape).astype(np.float32)
    with pytest.raises(
        ValueError,
        match=rf"shape \({shape[0]}, {shape[1]}, {shape[2]}, {shape[3]}\) "
        rf"is ambiguous.*pass input_shape={re.escape(str(nchw))} "
        rf"or input_shape={re.escape(str(nhwc))}",
    ):
        check_inputs(_Est(), X)
    assert check_inputs(_Est(), X, input_shape=nchw).sample_shape == nchw
    # an input_shape to resize to picks the reading with its channel count
    resized = check_inputs(_Est(), X, input_shape=(nhwc[0], 6, 6)).batch(0, 2)
    assert resized.shape == (2, nhwc[0], 6, 6)


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_names_the_sample(bad, what):
    X = np.zeros((6, 3))
    X[4, 1] = bad
    with pytest.raises(ValueError, match=rf"Input X contains {what} \(first at sample 4\)"):
        check_inputs(_Est(), X)
    images = np.zeros((3, 1, 4, 4), dtype=np.float32)
    images[2, 0, 1, 1] = bad
    with pytest.raises(ValueError, match=rf"{what} \(first at sample 2\)"):
        check_inputs(_Est(), images)


def test_ragged_and_empty():
    with pytest.raises(
        ValueError, match=r"ragged: sample 0 has shape \(3,\) but sample 1 has shape \(2,\)"
    ):
        check_inputs(_Est(), [[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="0 sample"):
        check_inputs(_Est(), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="X is empty"):
        check_inputs(_Est(), [])


def test_transform_shape_must_match_fit():
    est = _Est()
    check_inputs(est, np.zeros((2, 1, 8, 8)))
    with pytest.raises(
        ValueError, match=r"shape \(1, 6, 6\).*fitted on samples of shape \(1, 8, 8\)"
    ):
        check_inputs(est, np.zeros((2, 1, 6, 6)), reset=False)


def _write_images(tmp_path):
    paths = []
    rng = np.random.default_rng(0)
    for i, (size, mode) in enumerate([((10, 12), "RGB"), ((6, 6), "L")]):
        arr = rng.integers(
            0,
            256,
            size=(size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]),
            dtype=np.uint8,
        )
        path = tmp_path / f"img{i}.png"
        Image.fromarray(arr, mode=mode).save(path)
        paths.append(str(path))
    return paths


def test_image_paths_decoded_converted_resized(tmp_path):
    paths = _write_images(tmp_path)
    inputs = check_inputs(_Est(), paths)
    assert inputs.sample_shape == (3, 12, 10)  # first image: RGB, 10 wide, 12 high
    batch = inputs.batch(0, 2)
    assert batch.shape == (2, 3, 12, 10)
    first = np.asarray(Image.open(paths[0]), dtype=np.float32) / 255.0
    np.testing.assert_allclose(batch[0].permute(1, 2, 0).numpy(), first, atol=1e-6)
    gray = check_inputs(_Est(), paths, input_shape=(1, 4, 4)).batch(0, 2)
    assert gray.shape == (2, 1, 4, 4)


def test_image_files_at_transform_time_take_the_fitted_shape():
    est = _Est()
    check_inputs(est, [Image.new("L", (8, 8), color=0)])
    big = [Image.new("L", (12, 12), color=255), Image.new("L", (6, 6), color=51)]
    batch = check_inputs(est, big, reset=False).batch(0, 2)
    assert batch.shape == (2, 1, 8, 8)
    assert batch[0].mean().item() == 1.0 and batch[1].mean().item() == pytest.approx(0.2)


def test_pil_images(tmp_path):
    images = [Image.new("L", (5, 5), color=51), Image.new("L", (5, 5), color=255)]
    batch = check_inputs(_Est(), images).batch(0, 2)
    assert batch.shape == (2, 1, 5, 5)
    assert batch[0].mean().item() == pytest.approx(0.2) and batch[1].mean().item() == 1.0


def test_missing_and_unreadable_image_files(tmp_path):
    paths = _write_images(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"gone\.png.*X\[1\]"):
        check_inputs(_Est(), [paths[0], str(tmp_path / "gone.png")])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"definitely not a png")
    inputs = check_inputs(_Est(), [paths[0], str(broken)])
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png.*X\[1\]"):
        inputs.batch(0, 2)
    with pytest.raises(TypeError, match=r"X\[1\] is a int"):
        check_inputs(_Est(), [paths[0], 3])


def test_iter_batches_cover_all_samples():
    X = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    inputs = check_inputs(_Est(), X)
    got = torch.cat([b for _, b in inputs.iter_batches(4, "cpu")])
    assert torch.equal(got, torch.from_numpy(X))
    assert [s for s, _ in inputs.iter_batches(4, "cpu")] == [0, 4, 8]


def test_device_resolution_and_generators():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device='gpu0' is not a valid torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert seed_from(3) == seed_from(3) != seed_from(4)
    a = torch.rand(3, generator=make_generator(seed_from(0), "cpu"))
    b = torch.rand(3, generator=make_generator(seed_from(0), "cpu"))
    assert torch.equal(a, b)


# ---------------------------------------------------- errors that say what to pass
def test_arrays_and_series_of_paths_are_image_lists(tmp_path):
    import pandas as pd
    from PIL import Image

    from repens_sklearn import MeanTTAEmbedder

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(paths[-1])
    expected = MeanTTAEmbedder("convnet_small", n_augmentations=0, random_state=0).fit_transform(
        paths
    )
    for X in (np.array(paths), pd.Series(paths)):
        out = MeanTTAEmbedder("convnet_small", n_augmentations=0, random_state=0).fit_transform(X)
        np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize(
    "make_X, match",
    [
        (lambda d: str(d), r"X is a folder \('.*'\); pass a list of image paths"),
        (lambda d: str(d / "0.png"), r"X is one path .*or \[X\] for one image"),
        (lambda d: np.arange(5), r"X is 1-D \(shape \(5,\)\); pass a 2-D array"),
        (lambda d: [1, 2, 3], r"X is 1-D \(shape \(3,\)\).*list of image paths"),
    ],
)
def test_one_path_a_folder_or_1d_data_say_what_to_pass(tmp_path, make_X, match):
    from PIL import Image

    from repens_sklearn import MeanTTAEmbedder

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "0.png")
    with pytest.raises(ValueError, match=match):
        MeanTTAEmbedder("convnet_small", n_augmentations=0).fit(make_X(tmp_path))


def test_transform_names_channels_and_image_size():
    from repens_sklearn import MeanTTAEmbedder

    emb = MeanTTAEmbedder("convnet_small", n_augmentations=0).fit(
        np.zeros((4, 1, 8, 8), np.float32)
    )
    with pytest.raises(
        ValueError,
        match=r"images with 3 channel\(s\), but MeanTTAEmbedder was "
        r"fitted on images with 1",
    ):
        emb.transform(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(1, 9, 9\), but .* shape \(1, 8, 8\)"):
        emb.transform(np.zeros((4, 9, 9), np.float32))


def test_a_cloned_fitted_backbone_says_to_freeze_it():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    from repens_sklearn import EnSiamPretrainer, MeanTTAEmbedder

    X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    y = np.arange(40) % 2
    encoder = EnSiamPretrainer(
        "mlp",
        policy="gaussian_noise",
        max_epochs=1,
        projector_dim=8,
        predictor_hidden_dim=4,
        random_state=0,
    ).fit(X)
    pipe = make_pipeline(MeanTTAEmbedder(encoder, n_augmentations=0), LogisticRegression())
    with pytest.raises(
        NotFittedError,
        match=r"backbone=EnSiamPretrainer\(...\) is not fitted.*"
        r"FrozenEstimator\(EnSiamPretrainer\).*as_backbone",
    ):
        cross_val_score(pipe, X, y, cv=2, error_score="raise")


def test_reversed_views_of_x_embed_one_row_at_a_time():
    from repens_sklearn import MeanTTAEmbedder

    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    emb = MeanTTAEmbedder("mlp", n_augmentations=0, batch_size=1, random_state=0).fit(X)
    np.testing.assert_allclose(emb.transform(X[::-1]), emb.transform(X)[::-1], rtol=1e-6)
