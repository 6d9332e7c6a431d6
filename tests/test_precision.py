"""The ``precision`` parameter (issue #24): resolution, float32 outputs, exact float32.

``tests/conftest.py`` pins ``REPENS_SKLEARN_PRECISION=float32`` for the suite; the
tests of ``"auto"`` here unset it.
"""

from unittest import mock

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from repens_sklearn import EnSiamPretrainer, FineTuneClassifier, MeanTTAEmbedder, _compute
from repens_sklearn._compute import (
    AUTO_MIN_COSINE,
    PRECISION_ENV,
    PrecisionChoice,
    choose_precision,
    cpu_flags,
    cpu_has_native_bf16,
    fast_inference,
    inference_settings,
    reduced_precision_agreement,
    resolve_precision,
)

BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


class TinyConv(nn.Module):
    """A small pretrained-looking CNN: preprocessing (resize, normalize) runs for it."""

    pretrained_cfg = {
        "input_size": (3, 32, 32),
        "mean": (0.5, 0.4, 0.3),
        "std": (0.2, 0.25, 0.3),
        "interpolation": "bilinear",
        "crop_pct": 0.875,
    }

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 24),
        )
        self.embedding_dim = 24

    def forward(self, x):
        return self.net(x)


class RecordsInput(nn.Module):
    """A conv module that records the dtype and memory format its conv layer sees."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append(
            (
                x.is_contiguous(memory_format=torch.channels_last),
                self.conv.weight.is_contiguous(memory_format=torch.channels_last),
                torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None,
            )
        )
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def auto_precision(monkeypatch):
    """``precision="auto"`` decided by the device, as outside the test suite."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)


@pytest.fixture
def no_bf16_cpu(monkeypatch, auto_precision):
    """A CPU whose flags name no native bf16 (an AVX-512 CPU before Cooper Lake)."""
    monkeypatch.setattr(_compute, "cpu_flags", lambda path=None: frozenset({"avx2", "avx512f"}))
    cpu_has_native_bf16.cache_clear()
    yield
    cpu_has_native_bf16.cache_clear()


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), np.arange(12) % 3


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------------ resolution


def test_auto_on_this_machine_follows_its_flags_and_the_check(auto_precision):
    native = bool(BF16_FLAGS & cpu_flags()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_has_native_bf16() is native
    # before the check (training, inside fit): float32 on a CPU
    assert resolve_precision("auto", "cpu") == torch.float32
    assert resolve_precision("auto", "cpu", training=True) == torch.float32
    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16
    assert resolve_precision("float16", "cpu") == torch.float16
    assert resolve_precision("float16", "cpu", training=True) == torch.float32  # no loss scaling
    # after fit: bf16 where native and the module's bf16 outputs agree with float32
    torch.manual_seed(0)
    choice = choose_precision("auto", TinyConv(), lambda: torch.rand(4, 3, 16, 16), "cpu")
    if native:
        assert choice.name == "bfloat16" and AUTO_MIN_COSINE <= choice.agreement < 1.0
    else:  # float32 in the faster layout, which the check ran too
        assert choice.name == "float32" and np.isnan(choice.agreement)
    assert choice.channels_last


def test_auto_on_a_cpu_without_native_bf16_is_float32(no_bf16_cpu):
    assert cpu_has_native_bf16() is False
    assert resolve_precision("auto", "cpu") == torch.float32
    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16  # forced, still honoured


def test_avx512_alone_is_not_native_bf16(monkeypatch, auto_precision):
    """oneDNN's own check is true on AVX-512 CPUs that emulate bf16: flags decide."""
    monkeypatch.setattr(_compute, "cpu_flags", lambda path=None: frozenset({"avx512bw"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    cpu_has_native_bf16.cache_clear()
    try:
        assert resolve_precision("auto", "cpu") == torch.float32
    finally:
        cpu_has_native_bf16.cache_clear()


def test_native_flags_need_onednn_too(monkeypatch, auto_precision):
    monkeypatch.setattr(_compute, "cpu_flags", lambda path=None: frozenset({"amx_bf16"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    cpu_has_native_bf16.cache_clear()
    try:
        assert resolve_precision("auto", "cpu") == torch.float32
    finally:
        cpu_has_native_bf16.cache_clear()


def test_cuda_auto_uses_bf16_where_native(monkeypatch, auto_precision):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "cuda") == torch.bfloat16
    assert resolve_precision("auto", "cuda", training=True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", "cuda") == torch.float32


def test_cpu_flags_are_read_from_the_cpuinfo_file(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(x86) == frozenset({"fpu", "avx512f", "amx_bf16"})
    assert cpu_flags(arm) == frozenset({"fp", "asimd", "bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_environment_variable_decides_auto(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "bfloat16")
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    assert resolve_precision("float32", "cpu") == torch.float32  # an explicit value wins
    never_called = mock.Mock(side_effect=AssertionError("no check when the variable decides"))
    choice = choose_precision("auto", TinyConv(), never_called, "cpu")
    assert (choice.requested, choice.name) == ("bfloat16", "bfloat16")
    monkeypatch.setenv(PRECISION_ENV, "float16")
    assert resolve_precision("auto", "cpu") == torch.float16
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(ValueError) as info:
        resolve_precision("auto", "cpu")
    assert str(info.value) == (
        "the environment variable REPENS_SKLEARN_PRECISION must be one "
        "of 'auto', 'float32', 'bfloat16', 'float16'; got 'half'"
    )


@pytest.mark.parametrize("Estimator", [MeanTTAEmbedder, FineTuneClassifier, EnSiamPretrainer])
def test_bad_precision_is_a_clear_error(Estimator, images):
    X, y = images
    with pytest.raises(InvalidParameterError) as info:
        Estimator(TinyConv(), precision="fp16").fit(X, y)
    message = str(info.value)  # scikit-learn lists the options of a set in hash order
    head = f"The 'precision' parameter of {Estimator.__name__} must be a str among {{"
    assert message.startswith(head) and message.endswith("}. Got 'fp16' instead.")
    options = message[len(head) : -len("}. Got 'fp16' instead.")].split(", ")
    assert sorted(options) == ["'auto'", "'bfloat16'", "'float16'", "'float32'"]
    with pytest.raises(ValueError) as info:
        resolve_precision("fp16", "cpu")
    assert str(info.value) == (
        "precision must be one of 'auto', 'float32', 'bfloat16', 'float16'; got 'fp16'"
    )


# ---------------------------------------------------------------------------- outputs


def _float32_reference(emb, X):
    """Today's computation by hand: preprocessing, then a float32 forward (NCHW)."""
    x = torch.from_numpy(X[:, None]).float().div_(255.0)
    with torch.no_grad():
        return emb.backbone_(emb.preprocessor_(x)).numpy()


def test_float32_reproduces_the_float32_embeddings_exactly(images):
    X, _ = images
    emb = MeanTTAEmbedder(
        TinyConv(), n_augmentations=0, precision="float32", device="cpu", random_state=0
    ).fit(X)
    np.testing.assert_array_equal(emb.transform(X), _float32_reference(emb, X))
    assert all(p.is_contiguous() for p in emb.backbone_.parameters())


@pytest.mark.parametrize("n_augmentations", [0, 3])
def test_bfloat16_returns_float32_close_to_float32(images, n_augmentations):
    X, _ = images
    common = dict(n_augmentations=n_augmentations, device="cpu", random_state=0)
    module = TinyConv()  # one module: the estimators deep-copy it
    Z32 = MeanTTAEmbedder(module, precision="float32", **common).fit_transform(X)
    Z16 = MeanTTAEmbedder(module, precision="bfloat16", **common).fit_transform(X)
    assert Z16.dtype == np.float32 and Z16.shape == Z32.shape
    assert not np.array_equal(Z16, Z32)  # bf16 did run
    assert _cosines(Z16, Z32).min() >= 0.999


def test_auto_is_float32_on_a_cpu_without_bf16(no_bf16_cpu, images):
    """float32 in the faster channels_last layout: the same values to float32 rounding."""
    X, _ = images
    auto = MeanTTAEmbedder(TinyConv(), n_augmentations=0, device="cpu").fit(X)
    assert auto.precision_ == "float32" and np.isnan(auto.precision_agreement_)
    np.testing.assert_allclose(auto.transform(X), _float32_reference(auto, X), rtol=1e-5, atol=1e-6)
    assert auto._inference_settings(auto.backbone_, "cpu") == (torch.float32, True)


def test_bf16_runs_conv_backbones_channels_last_and_restores_them():
    module = RecordsInput()
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode(), fast_inference(module, "cpu", torch.bfloat16) as forward:
        out = forward(x)
    assert out.dtype == torch.float32
    assert module.seen == [(True, True, torch.bfloat16)]
    assert module.conv.weight.is_contiguous() and not module.conv.weight.is_inference()
    with torch.inference_mode(), fast_inference(module, "cpu", torch.float32) as forward:
        forward(x)
    assert module.seen[-1] == (False, False, None)  # float32: as before, untouched


def test_grey_arrays_and_pil_images_reach_the_backbone_alike(images):
    """Item 3: PIL images decode as HWC, so they reached the backbone channels_last (faster
    convolutions) while grey uint8 arrays came NCHW; in bf16 both now run channels_last."""
    from PIL import Image

    X, _ = images
    seen = {}
    for name, data in (("array", X[:4]), ("pil", [Image.fromarray(a) for a in X[:4]])):
        module = RecordsInput()
        module.pretrained_cfg = TinyConv.pretrained_cfg
        emb = MeanTTAEmbedder(module, n_augmentations=0, precision="bfloat16", device="cpu").fit(
            data
        )
        emb.backbone_.seen.clear()  # the probe of fit
        emb.transform(data)
        seen[name] = emb.backbone_.seen
    assert seen["array"] == seen["pil"] == [(True, True, torch.bfloat16)]


def test_finetune_predictions_in_bf16_are_float(images):
    X, y = images
    common = dict(max_steps=2, batch_size=6, device="cpu", random_state=0)
    module = TinyConv()
    clf32 = FineTuneClassifier(module, precision="float32", **common).fit(X, y)
    clf16 = FineTuneClassifier(module, precision="bfloat16", **common).fit(X, y)
    p32, p16 = clf32.predict_proba(X), clf16.predict_proba(X)
    assert p16.dtype == np.float64 and np.isfinite(p16).all()
    np.testing.assert_allclose(p16.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p16, p32, atol=0.02)
    assert not np.array_equal(p16, p32)


def _tiny_ensiam(**params):
    """EnSiam around TinyConv, small enough for a 12-image fit."""
    common = dict(policy="crop_flip", n_views=2, batch_size=6, projector_dim=16)
    return EnSiamPretrainer(
        TinyConv(), predictor_hidden_dim=8, device="cpu", random_state=0, **common, **params
    )


def test_ensiam_bf16_trains_finite_and_embeds_float32(images):
    X, _ = images
    pre = _tiny_ensiam(max_epochs=2, precision="bfloat16").fit(X)
    Z = pre.transform(X)
    assert np.isfinite(pre.history_[:, "train_loss"]).all()
    assert Z.dtype == np.float32 and np.isfinite(Z).all()


def test_cuda_bf16_check_works_with_a_torch_without_including_emulation(monkeypatch):
    """torch < 2.4's is_bf16_supported takes no including_emulation (the project allows 2.2)."""
    from repens_sklearn._compute import native_bf16

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert native_bf16("cuda") is True


# ------------------------------------------------------------- the check of "auto"


class CancelsOut(nn.Module):
    """Outputs that are the small difference of two large, nearly equal products:
    bf16's 8-bit mantissa loses them, float32 keeps them (a bf16-sensitive network)."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Linear(16, 8, bias=False)
        self.b = nn.Linear(16, 8, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(100 + torch.rand(8, 16, generator=generator))
            self.b.weight.copy_(self.a.weight + 0.01 * torch.randn(8, 16, generator=generator))

    def forward(self, x):
        return self.a(x.flatten(1)) - self.b(x.flatten(1))


class Overflows(nn.Module):
    """A float16 overflow: activations past 65504 that float32 holds."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        with torch.no_grad():
            self.conv.weight.fill_(1e4)

    def forward(self, x):
        return self.conv(x).amax(dim=(2, 3)) / 1e4


@pytest.fixture
def native_bf16_device(monkeypatch, auto_precision):
    """Any machine as one that computes bf16 natively (CPU emulation computes the same)."""
    monkeypatch.setattr(_compute, "native_bf16", lambda device: True)


def test_a_module_whose_bf16_outputs_disagree_stays_float32(native_bf16_device):
    x = torch.rand(6, 16)
    choice = choose_precision("auto", CancelsOut(), lambda: x, "cpu")
    assert choice.name == "float32" and choice.agreement < AUTO_MIN_COSINE
    choice = choose_precision("auto", TinyConv(), lambda: torch.rand(6, 3, 16, 16), "cpu")
    assert choice.name == "bfloat16" and choice.agreement >= AUTO_MIN_COSINE
    assert choose_precision("bfloat16", CancelsOut(), lambda: x, "cpu").name == "bfloat16"


class NoBf16Kernel(nn.Module):
    """A module with an operation that has no bf16 kernel, or a guard, refusing autocast."""

    def __init__(self, error=RuntimeError):
        super().__init__()
        self.error = error

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            raise self.error("\"my_op\" not implemented for 'BFloat16'")
        return x.flatten(1)


@pytest.mark.parametrize("error", [RuntimeError, NotImplementedError, ValueError, AssertionError])
def test_auto_stays_float32_for_a_module_failing_under_bf16(native_bf16_device, error):
    X = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    auto = MeanTTAEmbedder(NoBf16Kernel(error), n_augmentations=0, device="cpu").fit(X)
    assert auto.precision_ == "float32" and auto.precision_agreement_ == float("-inf")
    np.testing.assert_array_equal(auto.transform(X), X)


def test_agreement_is_minus_infinity_for_outputs_that_are_not_finite():
    x = torch.rand(2, 3, 8, 8)
    assert reduced_precision_agreement(Overflows(), x, "cpu", torch.float16) == float("-inf")
    assert reduced_precision_agreement(TinyConv(), x, "cpu", torch.float32) == pytest.approx(1.0)


def test_a_float16_overflow_is_computed_again_in_float32():
    module, x = Overflows(), torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        expected = module(x)
        with fast_inference(module, "cpu", torch.float16) as forward:
            out = forward(x)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("module", "chosen"), [(TinyConv(), "bfloat16"), (CancelsOut(), "float32")]
)
def test_auto_embedder_runs_what_its_check_chose(native_bf16_device, module, chosen):
    X = np.random.default_rng(0).random((10, 16)).astype(np.float32)
    if isinstance(module, TinyConv):
        X = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    common = dict(n_augmentations=0, device="cpu", random_state=0)
    auto = MeanTTAEmbedder(module, **common).fit(X)
    assert auto.precision_ == chosen
    forced = MeanTTAEmbedder(module, precision=chosen, **common).fit(X)
    assert np.isnan(forced.precision_agreement_)
    np.testing.assert_allclose(auto.transform(X), forced.transform(X), rtol=1e-6, atol=1e-6)


def test_finetune_and_ensiam_predict_in_what_the_check_of_their_trained_networks_chose(
    native_bf16_device, images
):
    X, y = images
    clf = FineTuneClassifier(TinyConv(), max_steps=2, batch_size=6, device="cpu", random_state=0)
    clf.fit(X, y)
    assert clf.precision_ == "bfloat16" and clf.precision_agreement_ >= AUTO_MIN_COSINE
    in_bf16 = clf.predict_proba(X)
    in_float32 = clf.set_params(precision="float32").predict_proba(X)  # same fitted network
    assert in_bf16.dtype == np.float64 and not np.array_equal(in_bf16, in_float32)
    np.testing.assert_allclose(in_bf16, in_float32, atol=0.02)
    pre = _tiny_ensiam(max_epochs=1).fit(X)
    assert pre.precision_ == "bfloat16" and pre.precision_agreement_ >= AUTO_MIN_COSINE
    Z = pre.transform(X)
    Z32 = pre.set_params(precision="float32").transform(X)
    assert Z.dtype == np.float32 and not np.array_equal(Z, Z32)
    assert _cosines(Z, Z32).min() >= AUTO_MIN_COSINE


class ViewFlatten(nn.Module):
    """A CNN flattening with ``.view``, which a channels_last activation refuses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(256, 6)
        self.embedding_dim = 6

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


@pytest.mark.parametrize("native", [True, False])
def test_auto_keeps_the_default_layout_for_a_module_refusing_channels_last(
    monkeypatch, auto_precision, native
):
    monkeypatch.setattr(_compute, "native_bf16", lambda device: native)
    X = np.random.default_rng(0).integers(0, 256, (10, 8, 8), dtype=np.uint8)
    for n_augmentations in (0, 2):
        common = dict(n_augmentations=n_augmentations, device="cpu", random_state=0)
        auto = MeanTTAEmbedder(ViewFlatten(), **common).fit(X)
        assert auto.precision_ == "float32" and not auto._precision_choice.channels_last
        exact = MeanTTAEmbedder(auto.backbone_, precision="float32", **common).fit(X)
        np.testing.assert_array_equal(auto.transform(X), exact.transform(X))


def test_a_forced_precision_is_not_kept_when_auto_is_asked_after_fit(native_bf16_device):
    """set_params(precision="auto") after a forced fit: auto's rule, not the forced type."""
    X = np.random.default_rng(0).random((10, 16)).astype(np.float32)
    common = dict(n_augmentations=0, device="cpu", random_state=0)
    exact = MeanTTAEmbedder(CancelsOut(), precision="float32", **common).fit(X).transform(X)
    for forced in ("float16", "bfloat16"):
        emb = MeanTTAEmbedder(CancelsOut(), precision=forced, **common).fit(X)
        np.testing.assert_array_equal(emb.set_params(precision="auto").transform(X), exact)


def test_the_environment_variable_at_fit_does_not_decide_auto_after_it(monkeypatch, images):
    X, _ = images
    monkeypatch.setenv(PRECISION_ENV, "float16")
    emb = MeanTTAEmbedder(TinyConv(), n_augmentations=0, device="cpu", random_state=0).fit(X)
    assert emb.precision_ == "float16"
    monkeypatch.delenv(PRECISION_ENV)
    monkeypatch.setattr(_compute, "native_bf16", lambda device: False)
    assert emb._inference_settings(emb.backbone_, "cpu")[0] == torch.float32


class BigLogits(nn.Module):
    """A backbone whose outputs (~1e6) overflow float16 (past 65504) but not float32."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 4)
        self.embedding_dim = 4

    def forward(self, x):
        return self.lin(x.flatten(1)) * 1e6


def test_finetune_float16_overflow_is_computed_again_in_float32():
    X = np.random.default_rng(0).random((12, 16)).astype(np.float32)
    y = np.arange(12) % 3
    common = dict(max_steps=1, batch_size=6, lr=1e-12, device="cpu", random_state=0)
    module = BigLogits()  # one module: the estimators deep-copy it
    p16 = FineTuneClassifier(module, precision="float16", **common).fit(X, y).predict_proba(X)
    p32 = FineTuneClassifier(module, precision="float32", **common).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(p16, p32, atol=1e-6)


def test_logits_are_compared_without_their_shared_offset(native_bf16_device):
    """A head bias of 40 makes raw cosines agree while bf16 moves the argmax."""
    head = nn.Linear(8, 3)
    with torch.no_grad():
        head.bias.fill_(40.0)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    assert choose_precision("auto", head, lambda: x, "cpu").name == "bfloat16"
    assert choose_precision("auto", head, lambda: x, "cpu", centre=True).name == "float32"


class BlurBuffer(nn.Module):
    """A conv module with a fixed 4-D filter buffer (BlurPool-style)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.register_buffer("filt", torch.rand(8, 8, 3, 3))

    def forward(self, x):
        return nn.functional.conv2d(self.conv(x), self.filt).mean(dim=(2, 3))


def test_channels_last_is_undone_on_buffers_too(native_bf16_device):
    module, x = BlurBuffer(), torch.rand(2, 3, 12, 12)
    with torch.inference_mode(), fast_inference(module, "cpu", torch.bfloat16) as forward:
        forward(x)
    assert module.filt.is_contiguous() and module.conv.weight.is_contiguous()
    choose_precision("auto", module, lambda: x, "cpu")
    assert module.filt.is_contiguous() and module.conv.weight.is_contiguous()


def test_bf16_chosen_on_one_device_is_not_forced_on_another(monkeypatch, auto_precision):
    """Fitted where bf16 is native, moved to a device where it is not: float32 there."""
    monkeypatch.setattr(_compute, "native_bf16", lambda device: torch.device(device).type == "cuda")
    bf16 = PrecisionChoice("auto", "bfloat16", True, 0.9999)
    assert inference_settings("auto", bf16, "cuda", TinyConv()) == (torch.bfloat16, True)
    assert inference_settings("auto", bf16, "cpu", TinyConv()) == (torch.float32, True)
    # pickled before the check existed: the rule without a check (float32 layout as before)
    assert inference_settings("auto", None, "cpu", TinyConv()) == (torch.float32, False)


def test_float16_returns_float32_close_to_float32(images):
    X, _ = images
    common = dict(n_augmentations=0, device="cpu", random_state=0)
    module = TinyConv()
    Z32 = MeanTTAEmbedder(module, precision="float32", **common).fit_transform(X)
    Z16 = MeanTTAEmbedder(module, precision="float16", **common).fit_transform(X)
    assert Z16.dtype == np.float32 and not np.array_equal(Z16, Z32)
    assert _cosines(Z16, Z32).min() >= 0.9999


class ViewMLP(nn.Module):
    """An MLP on images, flattening with ``.view``: no convolution, nothing to re-lay."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 6)
        self.embedding_dim = 6

    def forward(self, x):
        return self.fc(x.view(x.size(0), -1))


def test_auto_runs_a_module_without_convolutions_in_bf16_in_its_own_layout(native_bf16_device):
    X = np.random.default_rng(0).integers(0, 256, (10, 8, 8), dtype=np.uint8)
    auto = MeanTTAEmbedder(ViewMLP(), n_augmentations=0, device="cpu", random_state=0).fit(X)
    assert auto.precision_ == "bfloat16" and auto.precision_agreement_ >= AUTO_MIN_COSINE
    assert not auto._precision_choice.channels_last
