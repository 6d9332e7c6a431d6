"""MeanTTAEmbedder: values of the aggregated views, reproducibility, inputs, errors."""

import copy
import os
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from repens_sklearn import MeanTTAEmbedder, create_aggregation


@pytest.fixture(scope="module")
def digits(digits_images):
    X, y = digits_images
    return X[:60], y[:60]


def _flip(x, generator=None):
    return x.flip(-1)


def _plain(embedder, X):
    with torch.no_grad():
        return embedder.backbone_.eval()(torch.as_tensor(X)).numpy()


def test_zero_augmentations_is_the_plain_embedding(digits):
    X, _ = digits
    emb = MeanTTAEmbedder("convnet_small", n_augmentations=0, random_state=0).fit(X)
    Z = emb.transform(X)
    assert Z.shape == (60, 128) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, _plain(emb, X), rtol=1e-5, atol=1e-6)
    assert emb.n_views_ == 1 and emb.embedding_dim_ == 128 and emb.input_shape_ == (1, 8, 8)


@pytest.mark.parametrize("batch_size", [256, 9, 2])
def test_views_are_aggregated_exactly(digits, batch_size):
    X, _ = digits
    emb = MeanTTAEmbedder(
        "convnet_small",
        policy=_flip,
        n_augmentations=3,
        include_identity=True,
        batch_size=batch_size,
        random_state=0,
    ).fit(X)
    plain, flipped = _plain(emb, X), _plain(emb, X[..., ::-1].copy())
    np.testing.assert_allclose(emb.transform(X), (plain + 3 * flipped) / 4, rtol=1e-4, atol=1e-5)
    assert emb.n_views_ == 4


@pytest.mark.parametrize(
    "batch_size, n_samples, expected_passes",
    [
        (300, 60, [300]),  # every view of every sample in one forward pass
        (256, 60, [255, 45]),  # 51 samples x 5 views, then 9 x 5
        (3, 2, [3, 2, 3, 2]),  # fewer rows than views: each pass at most batch_size
    ],
)
def test_views_share_forward_passes_up_to_batch_size(
    digits, batch_size, n_samples, expected_passes
):
    X, _ = digits
    emb = MeanTTAEmbedder(
        "convnet_small",
        policy=_flip,
        n_augmentations=4,
        include_identity=True,
        batch_size=batch_size,
        random_state=0,
    ).fit(X)
    passes = []
    emb.backbone_.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    emb.transform(X[:n_samples])
    assert passes == expected_passes


@pytest.mark.parametrize(
    "aggregation,params", [("gem", {}), ("gem", {"p": 20}), ("max", {}), ("median", {})]
)
def test_other_aggregations_match_the_registered_function(digits, aggregation, params):
    X, _ = digits
    emb = MeanTTAEmbedder(
        "convnet_small",
        policy=_flip,
        n_augmentations=2,
        include_identity=True,
        aggregation=aggregation,
        aggregation_params=params,
        batch_size=16,
        random_state=0,
    ).fit(X)
    plain, flipped = _plain(emb, X), _plain(emb, X[..., ::-1].copy())
    views = torch.as_tensor(np.stack([plain, flipped, flipped]))
    expected = create_aggregation(aggregation, **params)(views).numpy()
    np.testing.assert_allclose(emb.transform(X), expected, rtol=1e-4, atol=1e-5)


def test_averaging_reduces_the_noise_of_single_views():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    linear = torch.nn.Linear(6, 4)
    clean = MeanTTAEmbedder(linear, n_augmentations=0).fit(X).transform(X)
    errors = {}
    for s in (1, 32):
        emb = MeanTTAEmbedder(
            linear,
            policy="gaussian_noise",
            policy_params={"std": 1.0},
            n_augmentations=s,
            random_state=0,
        )
        errors[s] = np.mean((emb.fit_transform(X) - clean) ** 2)
    # for a linear map the error of the mean of S views shrinks like 1/S
    assert errors[32] < errors[1] / 10


def test_same_random_state_same_output_across_calls_and_instances(digits):
    X, _ = digits
    params = dict(policy="crop_flip", n_augmentations=4, random_state=3)
    emb = MeanTTAEmbedder("convnet_small", **params).fit(X)
    Z = emb.transform(X)
    np.testing.assert_array_equal(Z, emb.transform(X))
    np.testing.assert_array_equal(Z, MeanTTAEmbedder("convnet_small", **params).fit_transform(X))
    other = MeanTTAEmbedder("convnet_small", **{**params, "random_state": 4}).fit(X)
    # another seed: other initial weights and other views
    assert not np.allclose(Z, other.transform(X))


@pytest.mark.slow  # a fresh interpreter imports torch
def test_same_output_in_another_process(digits, tmp_path):
    X, _ = digits
    script = (
        "import numpy as np, sys\n"
        "from repens_sklearn import MeanTTAEmbedder, load_digits_images\n"
        "X = load_digits_images(return_X_y=True)[0][:60]\n"
        "Z = MeanTTAEmbedder('convnet_small', policy='simsiam', n_augmentations=3,"
        " random_state=7).fit_transform(X)\n"
        "np.save(sys.argv[1], Z)\n"
    )
    out = tmp_path / "z.npy"
    env = {**os.environ, "REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
    Z = MeanTTAEmbedder(
        "convnet_small", policy="simsiam", n_augmentations=3, random_state=7
    ).fit_transform(X)
    np.testing.assert_allclose(np.load(out), Z, rtol=1e-5, atol=1e-6)


def test_normalize_is_per_row(digits):
    X, _ = digits
    params = dict(n_augmentations=2, random_state=0)
    raw = MeanTTAEmbedder("convnet_small", **params).fit_transform(X)
    unit = MeanTTAEmbedder("convnet_small", normalize=True, **params).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)


def test_multiscale_runs_each_scale_at_its_resolution():
    X = np.random.default_rng(0).random((10, 1, 16, 16), dtype=np.float32)
    emb = MeanTTAEmbedder(
        "convnet_small", policy="multiscale", n_augmentations=10, random_state=0
    ).fit(X)
    assert emb.n_views_ == 3  # deterministic views: at most one per scale
    x = torch.as_tensor(X)
    with torch.no_grad():
        views = [
            emb.backbone_(F.interpolate(x, size=(s, s), mode="bilinear", antialias=True))
            if s != 16
            else emb.backbone_(x)
            for s in (16, 11, 8)
        ]
    np.testing.assert_allclose(
        emb.transform(X), torch.stack(views).mean(0).numpy(), rtol=1e-4, atol=1e-5
    )


def test_multiscale_needs_resize_back_for_fixed_size_backbones():
    X = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="policy='multiscale' cannot make views.*resize_back"):
        MeanTTAEmbedder("mlp", policy="multiscale", n_augmentations=3).fit(X)
    emb = MeanTTAEmbedder(
        "mlp",
        policy="multiscale",
        policy_params={"resize_back": True},
        n_augmentations=3,
        aggregation="mean",
    ).fit(X)
    assert emb.transform(X).shape == (10, 64)


def test_gem_warns_about_negative_features():
    X = np.random.default_rng(0).random((10, 6), dtype=np.float32)
    emb = MeanTTAEmbedder(
        "mlp", policy="gaussian_noise", n_augmentations=3, aggregation="gem", random_state=0
    ).fit(X)  # a linear last layer: signed features
    with pytest.warns(UserWarning, match="aggregation='gem' expects non-negative features"):
        emb.transform(X)


def test_module_backbone_is_copied_and_left_alone():
    X = np.random.default_rng(0).random((8, 5), dtype=np.float32)
    module = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Dropout(0.5)).train()
    emb = MeanTTAEmbedder(module, n_augmentations=0).fit(X)
    assert module.training and emb.backbone_ is not module
    with torch.no_grad():
        np.testing.assert_allclose(
            emb.transform(X), module[0](torch.as_tensor(X)).numpy(), rtol=1e-5, atol=1e-6
        )


class _Embeds(BaseEstimator):
    """A stand-in for a fitted embedder of the library (e.g. EnSiamPretrainer)."""

    def fit(self, X, y=None):
        torch.manual_seed(0)
        self.module_ = torch.nn.Linear(X.shape[1], 2)
        return self

    def as_backbone(self):
        if not hasattr(self, "module_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("not fitted")
        return self.module_


def test_fitted_estimator_backbone_and_frozen_clone():
    X = np.random.default_rng(0).random((8, 5), dtype=np.float32)
    fitted = _Embeds().fit(X)
    emb = MeanTTAEmbedder(FrozenEstimator(fitted), n_augmentations=0).fit(X)
    with torch.no_grad():
        np.testing.assert_allclose(
            emb.transform(X), fitted.module_(torch.as_tensor(X)).numpy(), rtol=1e-5, atol=1e-6
        )
    assert emb.backbone_ is not fitted.module_
    clone(emb).fit(X)  # FrozenEstimator keeps the backbone fitted through clone


def test_sklearn_api_pickle_pandas_and_names(digits, tmp_path):
    X, _ = digits
    emb = MeanTTAEmbedder("convnet_small", n_augmentations=2, random_state=0).fit(X)
    Z = emb.transform(X)
    path = tmp_path / "emb.joblib"
    joblib.dump(emb, path)
    np.testing.assert_array_equal(joblib.load(path).transform(X), Z)
    names = emb.get_feature_names_out()
    assert names[0] == "meanttaembedder0" and len(names) == 128
    frame = clone(emb).set_output(transform="pandas").fit_transform(X)
    assert list(frame.columns) == list(names)
    np.testing.assert_array_equal(frame.to_numpy(), Z)
    copy.deepcopy(emb)


def test_flattened_images_with_input_shape_and_uint8(digits):
    X, _ = digits
    flat = X.reshape(len(X), -1)
    emb = MeanTTAEmbedder("convnet_small", n_augmentations=0, input_shape=(1, 8, 8), random_state=0)
    np.testing.assert_allclose(emb.fit_transform(flat), _plain(emb, X), rtol=1e-5, atol=1e-6)
    as_uint8 = (X * 255).round().astype(np.uint8)
    assert MeanTTAEmbedder("convnet_small", n_augmentations=2, random_state=0).fit_transform(
        as_uint8
    ).shape == (60, 128)


def test_verbose_shows_a_progress_bar(digits, capsys):
    X, _ = digits
    MeanTTAEmbedder("convnet_small", n_augmentations=2, verbose=True, random_state=0).fit_transform(
        X
    )
    assert "MeanTTAEmbedder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "params,error,match",
    [
        ({"n_augmentations": -1}, InvalidParameterError, "'n_augmentations' parameter.*Got -1"),
        ({"policy": "nope"}, ValueError, "policy='nope'.*Unknown augmentation policy 'nope'"),
        ({"aggregation": "avg"}, ValueError, "aggregation='avg'.*Unknown aggregation 'avg'"),
        ({"backbone": "resnet_999"}, ValueError, "Unknown backbone 'resnet_999'"),
        ({"aggregation": "gem", "aggregation_params": {"p": -1}}, ValueError, "p > 0, got p=-1"),
        ({"aggregation": lambda v: v}, ValueError, "must map views .S, N, D. to .N, D."),
        (
            {"policy": _flip, "policy_params": {"std": 1}},
            ValueError,
            "policy_params=.*registered name",
        ),
        (
            {"policy": "crop_flip"},
            ValueError,
            "policy='crop_flip' cannot make views.*image batches",
        ),
        (
            {"policy": lambda x, g: x[:, :2]},
            ValueError,
            "must return a tensor of the input's shape",
        ),
        ({"backbone": torch.nn.Linear(3, 2)}, ValueError, "cannot take inputs of shape \\(6,\\)"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, error, match):
    X = np.random.default_rng(0).random((8, 6), dtype=np.float32)
    base = {"backbone": "mlp", "policy": "gaussian_noise", "n_augmentations": 2}
    with pytest.raises(error, match=match):
        MeanTTAEmbedder(**{**base, **params}).fit(X)


def test_bad_inputs_raise_clear_errors():
    X = np.random.default_rng(0).random((8, 6), dtype=np.float32)
    emb = MeanTTAEmbedder("mlp", policy="gaussian_noise", n_augmentations=2).fit(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        emb.transform(bad)
    with pytest.raises(ValueError, match="6 features"):
        emb.transform(X[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        MeanTTAEmbedder("mlp").fit(bad)


def test_fitted_embedder_is_a_backbone():
    """A fitted MeanTTAEmbedder hands its backbone on (plain embedding, no TTA)."""
    import torch

    from repens_sklearn import MeanTTAEmbedder

    X = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    first = MeanTTAEmbedder(
        "mlp", policy="gaussian_noise", n_augmentations=3, random_state=0, device="cpu"
    ).fit(X)
    second = MeanTTAEmbedder(first, n_augmentations=0, device="cpu").fit(X)
    plain = MeanTTAEmbedder(first.backbone_, n_augmentations=0, device="cpu").fit(X)
    np.testing.assert_allclose(second.transform(X), plain.transform(X), rtol=1e-6)
    module = first.as_backbone()
    assert module is not first.backbone_ and module.embedding_dim == 64
    with torch.no_grad():
        np.testing.assert_allclose(
            module(torch.from_numpy(X)).numpy(), plain.transform(X), rtol=1e-5
        )


# ------------------------------------------- an embedding depends on its sample only
class _NoSeeds:
    """A user policy with the plain contract only (no ``seeded``): called per sample."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, generator):
        self.calls += 1
        shift = torch.randint(-1, 2, (len(x),), generator=generator, device=generator.device)
        return torch.stack([row.roll(int(s), dims=-1) for row, s in zip(x, shift)])


@pytest.mark.parametrize(
    "policy,params", [("crop_flip", {}), ("simsiam", {}), (_NoSeeds(), {"include_identity": True})]
)
def test_embedding_does_not_depend_on_other_rows(digits, policy, params):
    """transform(X[:1]) == transform(X)[:1]; any order, any subset, any batch_size (issue 16)."""
    X, _ = digits
    X = X[:20]
    emb = MeanTTAEmbedder(
        "convnet_small", policy=policy, n_augmentations=4, random_state=0, **params
    ).fit(X)
    Z = emb.transform(X)
    np.testing.assert_allclose(emb.transform(X[:1]), Z[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.transform(X[7:12]), Z[7:12], rtol=1e-5, atol=1e-6)
    order = np.random.default_rng(0).permutation(20)
    np.testing.assert_allclose(emb.transform(X[order]), Z[order], rtol=1e-5, atol=1e-6)
    for batch_size in (1, 3, 7):
        np.testing.assert_allclose(
            clone(emb).set_params(batch_size=batch_size).fit(X).transform(X),
            Z,
            rtol=1e-5,
            atol=1e-6,
        )
    # image by image, as a retrieval index built one query at a time
    one_by_one = np.vstack([emb.transform(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(one_by_one, Z, rtol=1e-5, atol=1e-6)
    assert not np.allclose(Z, clone(emb).set_params(random_state=1).fit(X).transform(X))


def test_vector_views_do_not_depend_on_other_rows():
    X = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    emb = MeanTTAEmbedder(
        "mlp", policy="gaussian_noise", n_augmentations=5, batch_size=8, random_state=0
    ).fit(X)
    Z = emb.transform(X)
    np.testing.assert_allclose(emb.transform(X[10:11]), Z[10:11], rtol=1e-5, atol=1e-6)
    reverse = np.ascontiguousarray(X[::-1])
    np.testing.assert_allclose(emb.transform(reverse), Z[::-1], rtol=1e-5, atol=1e-6)
    duplicated = emb.transform(np.vstack([X[:1], X[:1]]))  # the same sample, the same views
    np.testing.assert_array_equal(duplicated[0], duplicated[1])


def test_policy_without_seeds_is_called_once_per_view(digits):
    X, _ = digits
    policy = _NoSeeds()
    emb = MeanTTAEmbedder(
        "convnet_small", policy=policy, n_augmentations=6, batch_size=24, random_state=0
    ).fit(X[:10])
    policy = emb.policy_
    before = policy.calls
    emb.transform(X[:10])
    # one call per view, each from its own generator: never all S views of a sample at once
    assert policy.calls - before == 10 * 6


# ----------------------------------------------------------- training protocol
def _single_views(emb, X):
    """Hand computation: the policy's view of each row from derive_seeds(key, -1)."""
    from repens_sklearn.augment import content_seeds, derive_seeds

    x = torch.as_tensor(X)
    keys = content_seeds(x, emb._seed())
    views = emb.policy_.seeded(x, derive_seeds(keys, -1))
    return _plain(emb, views.numpy())


def test_fit_output_single_view_and_plain(digits):
    """fit_transform: one augmented view (eq. 5) or the plain embedding; transform: the mean."""
    X, _ = digits
    params = dict(policy="crop_flip", n_augmentations=4, random_state=0)
    mean = MeanTTAEmbedder("convnet_small", **params).fit(X).transform(X)
    single = MeanTTAEmbedder("convnet_small", fit_output="single_view", **params)
    Z = single.fit_transform(X)
    np.testing.assert_allclose(Z, _single_views(single, X), rtol=1e-4, atol=1e-5)
    assert not np.allclose(Z, mean, atol=1e-3)
    np.testing.assert_allclose(single.transform(X), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.fit_transform(X[:7]), Z[:7], rtol=1e-5, atol=1e-6)
    plain = MeanTTAEmbedder("convnet_small", fit_output="plain", **params)
    np.testing.assert_allclose(plain.fit_transform(X), _plain(plain, X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain.transform(X), mean, rtol=1e-5, atol=1e-6)
    # the paper's conventional baseline: trained on augmented views, tested on the centre
    centre = MeanTTAEmbedder(
        "convnet_small", fit_output="single_view", **{**params, "n_augmentations": 0}
    )
    np.testing.assert_allclose(centre.fit_transform(X), Z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(centre.transform(X), _plain(centre, X), rtol=1e-5, atol=1e-6)


def test_pipeline_trains_the_head_on_single_views(digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = digits
    emb = MeanTTAEmbedder(
        "convnet_small", n_augmentations=3, fit_output="single_view", random_state=0
    )
    pipe = make_pipeline(emb, LogisticRegression(max_iter=500)).fit(X, y)
    fitted = pipe[0]
    head = LogisticRegression(max_iter=500).fit(_single_views(fitted, X), y)
    np.testing.assert_allclose(pipe[-1].coef_, head.coef_, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(pipe.predict(X), head.predict(fitted.transform(X)))


def test_fit_output_deterministic_multiview_picks_one_view_per_sample():
    X = np.random.default_rng(0).random((12, 1, 16, 16), dtype=np.float32)
    emb = MeanTTAEmbedder(
        "convnet_small",
        policy="multiscale",
        n_augmentations=3,
        fit_output="single_view",
        aggregation="mean",
        random_state=0,
    )
    Z = emb.fit_transform(X)
    x = torch.as_tensor(X)
    with torch.no_grad():
        per_scale = [emb.backbone_(emb.policy_.view(x, i)).numpy() for i in range(3)]
    picked = [int(np.argmin([np.abs(z - v[i]).max() for v in per_scale])) for i, z in enumerate(Z)]
    for i, index in enumerate(picked):
        np.testing.assert_allclose(Z[i], per_scale[index][i], rtol=1e-4, atol=1e-5)
    assert len(set(picked)) > 1


@parametrize_with_checks(
    [
        MeanTTAEmbedder(
            backbone="mlp",
            backbone_params={"hidden_dim": 16, "embedding_dim": 8},
            policy="gaussian_noise",
            n_augmentations=2,
            fit_output="single_view",
            device="cpu",
            random_state=0,
        )
    ],
    expected_failed_checks=lambda est: dict.fromkeys(
        ["check_transformer_general", "check_transformer_data_not_an_array"],
        "fit_output='single_view': fit_transform returns one augmented view per training row "
        "and transform the mean over the views, on purpose (like TargetEncoder), so "
        "fit_transform(X) != fit(X).transform(X)",
    ),
)
def test_sklearn_checks_with_single_view_fit_output(estimator, check):
    check(estimator)


# --------------------------------------------------------- multi-scale as cirtorch
def _scales(emb, X):
    x = torch.as_tensor(X)
    with torch.no_grad():
        return [
            emb.backbone_(F.interpolate(x, size=(s, s), mode="bilinear", antialias=True))
            if s != 16
            else emb.backbone_(x)
            for s in (16, 11, 8)
        ]


def test_multiscale_gem_matches_cirtorch_by_default():
    """cirtorch: L2-normalize each scale's descriptor, power mean over scales, L2-normalize."""
    X = np.random.default_rng(0).random((10, 1, 16, 16), dtype=np.float32)
    emb = MeanTTAEmbedder(
        "convnet_small", policy="multiscale", n_augmentations=3, aggregation="gem", random_state=0
    ).fit(X)
    assert emb.normalize_views_ and emb.normalize_
    views = [v / v.norm(dim=1, keepdim=True) for v in _scales(emb, X)]
    msp = torch.stack(views).clamp(min=1e-6).pow(3).mean(0).pow(1 / 3)
    expected = (msp / msp.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(emb.transform(X), expected, rtol=1e-4, atol=1e-6)
    # the raw power mean stays available
    raw = MeanTTAEmbedder(
        "convnet_small",
        policy="multiscale",
        n_augmentations=3,
        aggregation="gem",
        normalize_views=False,
        normalize=False,
        random_state=0,
    ).fit(X)
    expected_raw = torch.stack(_scales(raw, X)).clamp(min=1e-6).pow(3).mean(0).pow(1 / 3)
    np.testing.assert_allclose(raw.transform(X), expected_raw.numpy(), rtol=1e-4, atol=1e-6)


def test_normalize_views_option(digits):
    X, _ = digits
    emb = MeanTTAEmbedder(
        "convnet_small",
        policy=_flip,
        n_augmentations=1,
        include_identity=True,
        normalize_views=True,
        random_state=0,
    ).fit(X)
    assert emb.normalize_views_ and not emb.normalize_  # "auto": off outside multiscale + gem
    plain, flipped = _plain(emb, X), _plain(emb, X[..., ::-1].copy())
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (plain, flipped)]
    np.testing.assert_allclose(emb.transform(X), (unit[0] + unit[1]) / 2, rtol=1e-4, atol=1e-6)
    assert (
        not MeanTTAEmbedder(
            "convnet_small", policy="multiscale", aggregation="mean", n_augmentations=3
        )
        .fit(X)
        .normalize_views_
    )


@pytest.mark.slow  # trains a small CNN on digits
def test_default_policy_does_not_destroy_small_images(digits_images):
    """8x8 digits: the default crop_flip keeps MeTTA near the plain embedding; the paper's not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = digits_images
    X_tr, y_tr, X_te, y_te = X[:600], y[:600], X[600:1200], y[600:1200]

    def accuracy(**params):
        emb = MeanTTAEmbedder("convnet_small", random_state=0, **params)
        clf = make_pipeline(emb, StandardScaler(), LogisticRegression(max_iter=1000))
        return clf.fit(X_tr, y_tr).score(X_te, y_te)

    plain = accuracy(n_augmentations=0)
    default = accuracy(n_augmentations=4)
    paper = accuracy(n_augmentations=4, policy="crop_flip_paper")
    assert default > paper + 0.15 and default > plain - 0.08


def test_more_views_than_a_deterministic_policy_has_warns():
    X = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    with pytest.warns(
        UserWarning,
        match=r"n_augmentations=16 exceeds the 3 fixed views of "
        r"policy='multiscale'",
    ):
        MeanTTAEmbedder("convnet_small", policy="multiscale", n_augmentations=16).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MeanTTAEmbedder("convnet_small", policy="multiscale", n_augmentations=3).fit(X)


def test_progress_bar_names_the_backbone():
    assert MeanTTAEmbedder("convnet_small")._progress_label() == "MeanTTAEmbedder(convnet_small)"
