"""embed_files: chunked output, resume after an interruption, unreadable files, Dask."""

import json

import numpy as np
import pytest
from conftest import crash_transform_after, grey_png_files, loopback_dask_cluster
from PIL import Image

from repens_sklearn import MeanTTAEmbedder, embed_files
from repens_sklearn._embed_files import (
    InterruptedRunError,
    OutputExistsError,
    ResumeMismatchError,
    UnreadableImageError,
)

N_FILES, CHUNK = 40, 8  # five chunks


@pytest.fixture
def paths(tmp_path):
    return grey_png_files(tmp_path / "imgs", N_FILES)


def _embedder(**params):
    params = {
        "backbone": "convnet_small",
        "n_augmentations": 0,
        "input_shape": (1, 8, 8),
        "batch_size": 16,
        "random_state": 0,
        **params,
    }
    return MeanTTAEmbedder(**params)


def _tta_embedder():
    return _embedder(policy="crop_flip", n_augmentations=2)


def _read(output):
    import pandas as pd

    if output.suffix == ".npy":
        return output.with_suffix(".files.txt").read_text().split(), np.load(output)
    frame = pd.read_parquet(output) if output.suffix == ".parquet" else pd.read_csv(output)
    return list(frame["file"]), frame.iloc[:, 1:].to_numpy()


@pytest.mark.parametrize("suffix", [".parquet", ".npy", ".csv"])
def test_rows_are_the_embeddings_in_file_order(tmp_path, paths, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix != ".npy":
        pytest.importorskip("pandas")
    embedder = _embedder().fit(paths)
    output = tmp_path / f"emb{suffix}"
    report = embed_files(embedder, paths, output, chunk_size=CHUNK)
    files, values = _read(output)
    assert files == paths
    np.testing.assert_allclose(values, embedder.transform(paths), rtol=1e-6, atol=1e-6)
    assert (report.n_files, report.n_embedded, report.embedding_dim) == (N_FILES, N_FILES, 128)
    assert (report.n_chunks, report.n_chunks_resumed, report.skipped) == (5, 0, [])
    manifest = json.loads((tmp_path / f"emb{suffix}.manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["chunks_done"] == 5
    assert manifest["embedder"]["class"] == "MeanTTAEmbedder"
    assert not (tmp_path / f"emb{suffix}.parts").exists()  # parts removed once assembled


def test_unfitted_embedder_is_fitted_on_the_first_chunk(tmp_path, paths):
    embedder = _embedder()
    embed_files(embedder, paths, tmp_path / "emb.npy", chunk_size=CHUNK)
    assert embedder.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), embedder.transform(paths))


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
@pytest.mark.parametrize("make", [_embedder, _tta_embedder], ids=["plain", "tta"])
def test_interrupted_and_resumed_equals_uninterrupted_byte_for_byte(
    tmp_path, paths, suffix, make, monkeypatch
):
    pytest.importorskip("pyarrow")
    reference = tmp_path / f"ref{suffix}"
    embed_files(make(), paths, reference, chunk_size=CHUNK)

    output = tmp_path / "run" / f"emb{suffix}"
    crash_transform_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_files(make(), paths, output, chunk_size=CHUNK)
    assert not output.exists()
    manifest = json.loads(output.with_name(output.name + ".manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["chunks_done"] == 2
    assert manifest["files_done"] == 2 * CHUNK
    monkeypatch.undo()

    report = embed_files(make(), paths, output, chunk_size=CHUNK, resume=True)
    assert report.n_chunks_resumed == 2 and report.n_embedded == N_FILES
    assert output.read_bytes() == reference.read_bytes()
    if suffix == ".npy":
        assert (
            output.with_suffix(".files.txt").read_bytes()
            == reference.with_suffix(".files.txt").read_bytes()
        )


def test_resume_embeds_only_the_missing_chunks(tmp_path, paths, monkeypatch):
    output = tmp_path / "emb.npy"
    crash_transform_after(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()
    calls = crash_transform_after(monkeypatch, 100)
    embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True)
    assert calls["n"] == 2  # chunks 3 and 4
    # resuming a complete output returns at once
    monkeypatch.undo()
    calls = crash_transform_after(monkeypatch, 0)
    report = embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True)
    assert calls["n"] == 0 and report.n_chunks_resumed == report.n_chunks == 5
    # ... unless it is another job's: refused, and redone only with overwrite=True
    monkeypatch.undo()
    with pytest.raises(
        OutputExistsError,
        match="holds another job's embeddings: it embedded "
        "40 files, this call gives 38: pass overwrite=True",
    ):
        embed_files(_embedder(), paths[:-2], output, chunk_size=CHUNK, resume=True)
    report = embed_files(
        _embedder(), paths[:-2], output, chunk_size=CHUNK, resume=True, overwrite=True
    )
    assert report.n_chunks_resumed == 0 and np.load(output).shape == (N_FILES - 2, 128)


def test_resume_uses_the_interrupted_runs_embedder(tmp_path, paths, monkeypatch):
    # random_state=None: a refit would draw other weights; the saved embedder is used instead
    first = _embedder(random_state=None)
    output = tmp_path / "emb.npy"
    crash_transform_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        embed_files(first, paths, output, chunk_size=CHUNK)
    monkeypatch.undo()
    embed_files(_embedder(random_state=None), paths, output, chunk_size=CHUNK, resume=True)
    np.testing.assert_array_equal(np.load(output), first.transform(paths))


def test_runtime_parameters_may_change_on_resume(tmp_path, paths, monkeypatch):
    output = tmp_path / "emb.npy"
    crash_transform_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()
    report = embed_files(
        _embedder(verbose=True, device="cpu"), paths, output, chunk_size=CHUNK, resume=True
    )
    assert report.n_chunks_resumed == 1


def test_an_interrupted_run_is_never_discarded_silently(tmp_path, paths, monkeypatch):
    output = tmp_path / "emb.npy"
    crash_transform_after(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()
    with pytest.raises(InterruptedRunError, match=r"2 of 5 chunks done\): pass resume=True"):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(paths=lambda p: p[:-1]), "it embedded 40 files, this call gives 39"),
        (dict(paths=lambda p: p[::-1]), "not the same files in the same order"),
        (dict(chunk_size=4), "it used chunk_size=8, this call 4"),
        (
            dict(embedder=lambda: _embedder(batch_size=4)),
            r"its MeanTTAEmbedder has different batch_size \(it used 16, this call 4\)",
        ),
    ],
)
def test_resume_checks_it_is_the_same_job(tmp_path, paths, monkeypatch, change, message):
    output = tmp_path / "emb.npy"
    crash_transform_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()
    new_paths = change.get("paths", lambda p: p)(paths)
    embedder = change.get("embedder", _embedder)()
    with pytest.raises(ResumeMismatchError, match=message):
        embed_files(
            embedder, new_paths, output, chunk_size=change.get("chunk_size", CHUNK), resume=True
        )


def _truncate(paths, index):
    """Replace file ``index`` by a JPEG cut in half: a valid header, broken pixels."""
    from pathlib import Path

    rng = np.random.default_rng(1)
    jpeg = Path(paths[index]).with_suffix(".jpg")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    Path(paths[index]).unlink()
    return [str(jpeg) if i == index else p for i, p in enumerate(paths)]


def test_truncated_file_keeps_the_work_done_and_can_be_skipped(tmp_path, paths):
    paths = _truncate(paths, 21)  # in chunk 2
    output = tmp_path / "emb.npy"
    with pytest.raises(UnreadableImageError) as info:
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    message = str(info.value)
    assert repr(paths[21]) in message and "(paths[21])" in message and "truncated" in message
    assert "The 2 of 5 chunks done are kept" in message
    assert "on_error='skip' with resume=True" in message

    report = embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True, on_error="skip")
    assert report.n_chunks_resumed == 2 and report.n_embedded == N_FILES - 1
    assert [p for p, _ in report.skipped] == [paths[21]]
    assert "truncated" in report.skipped[0][1]
    assert report.skipped_summary().startswith(f"1 unreadable file skipped: {paths[21]} (")
    files = output.with_suffix(".files.txt").read_text().split()
    assert files == paths[:21] + paths[22:]
    manifest = json.loads((tmp_path / "emb.npy.manifest.json").read_text())
    assert manifest["skipped"] == [list(item) for item in report.skipped]

    fresh = tmp_path / "fresh.npy"
    embed_files(_embedder(), paths, fresh, chunk_size=CHUNK, on_error="skip")
    assert fresh.read_bytes() == output.read_bytes()


def test_skip_missing_and_non_image_files(tmp_path, paths):
    (tmp_path / "imgs" / "003.png").unlink()
    (tmp_path / "imgs" / "030.png").write_bytes(b"not an image")
    report = embed_files(
        _embedder().fit(paths[:1]), paths, tmp_path / "emb.npy", chunk_size=CHUNK, on_error="skip"
    )
    assert [p for p, _ in report.skipped] == [paths[3], paths[30]]
    assert report.n_embedded == N_FILES - 2
    expected = _embedder().fit(paths[:1]).transform(paths[:3] + paths[4:30] + paths[31:])
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), expected, rtol=1e-6, atol=1e-6)


def test_an_embedder_error_that_is_no_files_fault_propagates(tmp_path, paths, monkeypatch):
    crash_transform_after(monkeypatch, 0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_files(_embedder().fit(paths), paths, tmp_path / "emb.npy", on_error="skip")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(output="emb.txt"), ValueError, "output must end in .parquet, .npy, .csv"),
        (dict(paths=[]), ValueError, "paths is empty"),
        (dict(paths="a.png"), TypeError, "paths must be a list of image file paths, got str"),
        (dict(chunk_size=0), ValueError, "chunk_size must be an int >= 1, got 0"),
        (dict(on_error="ignore"), ValueError, "on_error must be 'raise' or 'skip', got 'ignore'"),
        (dict(resume="yes"), ValueError, "resume must be True or False, got 'yes'"),
        (dict(embedder=object()), TypeError, "embedder must have a transform method"),
    ],
)
def test_errors_name_the_parameter(tmp_path, paths, kwargs, error, message):
    args = {"embedder": _embedder(), "paths": paths, "output": tmp_path / "emb.npy", **kwargs}
    if isinstance(args["output"], str):
        args["output"] = tmp_path / args["output"]
    with pytest.raises(error, match=message):
        embed_files(args.pop("embedder"), args.pop("paths"), args.pop("output"), **args)


def test_parallel_jobs_give_the_sequential_output(tmp_path, paths):
    from joblib import parallel_config

    embed_files(_tta_embedder(), paths, tmp_path / "seq.npy", chunk_size=CHUNK)
    with parallel_config(backend="threading"):
        report = embed_files(
            _tta_embedder(), paths, tmp_path / "par.npy", chunk_size=CHUNK, n_jobs=2
        )
    assert report.n_embedded == N_FILES
    assert (tmp_path / "par.npy").read_bytes() == (tmp_path / "seq.npy").read_bytes()


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_output(tmp_path, paths):
    pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    from joblib import parallel_config

    local = embed_files(_tta_embedder(), paths, tmp_path / "local.parquet", chunk_size=CHUNK)
    with loopback_dask_cluster() as (client, tasks):
        with parallel_config(backend="dask"):
            report = embed_files(
                _tta_embedder(), paths, tmp_path / "dask.parquet", chunk_size=CHUNK, n_jobs=-1
            )
        assert len(client.scheduler_info()["workers"]) == 2
    workers = {task["worker"] for task in tasks.data}
    assert len(tasks.data) >= 5 and len(workers) == 2
    assert report.n_embedded == local.n_embedded == N_FILES
    assert (tmp_path / "dask.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
