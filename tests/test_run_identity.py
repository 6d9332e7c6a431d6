"""One rule for what identifies a run: a resumed EnSiam checkpoint and a resumed embed_files job.

A runtime parameter (``num_workers``, ``device``, ... at any depth) never blocks a resume;
a parameter that changes the result blocks both, in the same words.
"""

import numpy as np
import pytest
from conftest import ENSIAM_SMALL, grey_png_files

from repens_sklearn import EnSiamPretrainer, MeanTTAEmbedder, embed_files
from repens_sklearn._embed_files import ResumeMismatchError

N_FILES, CHUNK = 12, 4  # three chunks
ENSIAM = {**ENSIAM_SMALL, "max_epochs": 1}


@pytest.fixture
def paths(tmp_path):
    return grey_png_files(tmp_path / "imgs", N_FILES)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(24, 6)).astype(np.float32)


def _embedder(**params):
    return MeanTTAEmbedder(
        **{
            "backbone": "convnet_small",
            "n_augmentations": 0,
            "input_shape": (1, 8, 8),
            "batch_size": 16,
            "random_state": 0,
            **params,
        }
    )


def _interrupt_embed_files(monkeypatch, paths, output, **params):
    """An embed_files run of ``_embedder(**params)`` that crashes after its first chunk."""
    real, calls = MeanTTAEmbedder.transform, {"n": 0}

    def transform(self, X):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("simulated crash")
        return real(self, X)

    monkeypatch.setattr(MeanTTAEmbedder, "transform", transform)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_files(_embedder(**params), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()


def test_one_list_of_runtime_parameters_serves_both():
    from repens_sklearn import _embed_files, exceptions
    from repens_sklearn._fingerprint import RUNTIME_PARAMS, run_identity

    assert _embed_files.RUNTIME_PARAMS is RUNTIME_PARAMS
    assert {"device", "n_jobs", "num_workers", "verbose"} <= set(RUNTIME_PARAMS)
    assert "batch_size" not in RUNTIME_PARAMS  # random views and training depend on it
    assert "num_workers" not in run_identity(EnSiamPretrainer())
    assert "num_workers" not in run_identity(MeanTTAEmbedder())
    assert _embed_files.ResumeMismatchError is exceptions.ResumeMismatchError


def test_num_workers_does_not_block_an_embed_files_resume(tmp_path, paths, monkeypatch):
    reference = embed_files(_embedder(), paths, tmp_path / "ref.npy", chunk_size=CHUNK)
    output = tmp_path / "emb.npy"
    _interrupt_embed_files(monkeypatch, paths, output, num_workers=0)
    report = embed_files(_embedder(num_workers=1), paths, output, chunk_size=CHUNK, resume=True)
    assert report.n_chunks_resumed == 1
    np.testing.assert_array_equal(np.load(output), np.load(reference.output))


def test_num_workers_does_not_block_an_ensiam_resume(tmp_path, X):
    first = EnSiamPretrainer(**ENSIAM, checkpoint_dir=tmp_path, num_workers=0).fit(X)
    resumed = EnSiamPretrainer(**ENSIAM, checkpoint_dir=tmp_path, num_workers=1).fit(X)
    assert resumed.n_epochs_ == 1 and len(resumed.history_) == 1
    np.testing.assert_array_equal(resumed.transform(X), first.transform(X))


def test_runtime_parameters_of_a_fitted_backbone_do_not_block_an_ensiam_resume(tmp_path, X):
    # the same weights: changing where the backbone runs is not another run
    backbone = EnSiamPretrainer(**ENSIAM).fit(X)
    params = {**ENSIAM, "backbone": backbone, "backbone_params": None, "checkpoint_dir": tmp_path}
    first = EnSiamPretrainer(**params).fit(X)
    backbone.set_params(num_workers=1, verbose=0, device="cpu")
    resumed = EnSiamPretrainer(**params).fit(X)
    assert len(resumed.history_) == 1
    np.testing.assert_array_equal(resumed.transform(X), first.transform(X))


def test_a_result_changing_parameter_blocks_both_in_the_same_words(tmp_path, paths, X, monkeypatch):
    words = "different batch_size (it used 16, this call 4)"
    checkpoint = tmp_path / "ckpt"
    EnSiamPretrainer(**ENSIAM, checkpoint_dir=checkpoint).fit(X)
    with pytest.raises(ValueError) as ensiam:
        EnSiamPretrainer(**{**ENSIAM, "batch_size": 4}, checkpoint_dir=checkpoint).fit(X)
    assert str(ensiam.value) == (
        f"checkpoint_dir={str(checkpoint)!r} holds a checkpoint of "
        f"another run: {words}; remove it or use another directory"
    )

    output = tmp_path / "emb.npy"
    _interrupt_embed_files(monkeypatch, paths, output)
    with pytest.raises(ResumeMismatchError) as stream:
        embed_files(_embedder(batch_size=4), paths, output, chunk_size=CHUNK, resume=True)
    assert str(stream.value) == (
        f"cannot resume {str(output)!r}: its MeanTTAEmbedder has {words}. Pass what the "
        f"interrupted run was given, or delete {str(output) + '.parts'!r} and "
        f"{str(output) + '.manifest.json'!r} to start over"
    )


def test_a_dict_parameter_is_named_with_its_values(tmp_path, paths, monkeypatch):
    # braces in a value are not option names of the message's template
    output = tmp_path / "emb.npy"
    _interrupt_embed_files(monkeypatch, paths, output, backbone_params={"width": 8})
    with pytest.raises(ResumeMismatchError) as info:
        embed_files(
            _embedder(backbone_params={"width": 4}), paths, output, chunk_size=CHUNK, resume=True
        )
    assert (
        "its MeanTTAEmbedder has different backbone_params (it used {'width': 8}, this "
        "call {'width': 4})"
    ) in str(info.value)


def test_run_differences_words():
    from repens_sklearn._fingerprint import run_differences

    saved = {
        "a": {"fingerprint": "1", "value": 16},
        "b": {"fingerprint": "2"},
        "c": {"fingerprint": "3", "value": "w.pt"},
        "d": {"fingerprint": "4", "value": 1},
    }
    current = {
        "a": {"fingerprint": "5", "value": 4},
        "b": {"fingerprint": "6"},
        "c": {"fingerprint": "7", "value": "w.pt"},
        "d": {"fingerprint": "4", "value": 1},
    }
    assert run_differences(saved, saved) == ""
    assert run_differences(saved, current) == (
        "different a (it used 16, this call 4), different b, different c"
    )
    assert run_differences({}, {"e": {"fingerprint": "8", "value": 0}}) == "different e"
