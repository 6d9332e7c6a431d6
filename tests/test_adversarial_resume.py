"""Issue #21 sections 2 and 6: a reused checkpoint, cache or streamed job never returns
another run's result, and a streaming job recovers from what a crash or odd file names
leave behind.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ENSIAM_SMALL, crash_transform_after
from PIL import Image

from repens_sklearn import (
    ConcatEmbedder,
    EnSiamPretrainer,
    LearnedEnsembleEmbedder,
    MeanTTAEmbedder,
    TransferabilitySelector,
    embed_files,
)
from repens_sklearn._embed_files import OutputExistsError, ResumeMismatchError
from repens_sklearn._fingerprint import KeyedCache, file_identity, fingerprint
from repens_sklearn.cli import main

ENSIAM = {**ENSIAM_SMALL, "max_epochs": 1}


def _ensiam(**params):
    return EnSiamPretrainer(**{**ENSIAM, **params})


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(96, 6)).astype(np.float32)


def _save_image(path, seed, size=8):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def _overwrite(path, write):
    """Rewrite ``path`` with ``write(path)``; the mtime moves on, as any later write's does."""
    before = os.stat(path).st_mtime_ns
    write(path)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # coarse-clock filesystems: a later second


# ------------------------------------------------------------ the fingerprint
def test_fingerprint_sees_every_row_weights_and_file_identity(tmp_path, X):
    changed = X.copy()
    changed[-1, -1] += 1.0  # the last value of the last row only
    assert fingerprint(X) == fingerprint(X.copy()) and fingerprint(X) != fingerprint(changed)
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)  # same architecture, other weights
    assert repr(a) == repr(b) and fingerprint(a) != fingerprint(b)
    path = tmp_path / "img.png"
    _save_image(path, 0)
    before = fingerprint([str(path)])
    assert file_identity(path)[1:] == (path.stat().st_size, path.stat().st_mtime_ns)
    _overwrite(path, lambda p: _save_image(p, 1))
    assert fingerprint([str(path)]) != before
    assert fingerprint([str(path)], files=None) == fingerprint([str(path)], files=None)


def test_keyed_cache_runs_unhashable_arguments_uncached(tmp_path):
    import threading

    calls = []

    def lock_count(lock):
        calls.append(1)
        return len(calls)

    cached = KeyedCache(str(tmp_path), lock_count)
    assert not fingerprint(threading.Lock()).exact
    assert [cached(threading.Lock()), cached(threading.Lock())] == [1, 2]  # never a stale hit


# -------------------------------------------------------- EnSiam checkpoints
def test_ensiam_checkpoint_refused_for_data_differing_only_after_row_64(tmp_path, X):
    _ensiam(checkpoint_dir=tmp_path).fit(X)
    changed = X.copy()
    changed[90] += 1.0  # same length, same first 64 rows
    with pytest.raises(ValueError, match=r"holds a checkpoint of another run: different data;"):
        _ensiam(checkpoint_dir=tmp_path).fit(changed)
    _ensiam(checkpoint_dir=tmp_path).fit(X)  # the same data still resumes


def test_ensiam_checkpoint_refused_for_another_module_of_the_same_architecture(tmp_path, X):
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Linear(6, 8))
    second = torch.nn.Sequential(torch.nn.Linear(6, 8))
    assert repr(first) == repr(second)
    params = dict(backbone_params=None, checkpoint_dir=tmp_path)
    _ensiam(backbone=first, **params).fit(X)
    with pytest.raises(ValueError, match=r"checkpoint of another run: different backbone;"):
        _ensiam(backbone=second, **params).fit(X)
    resumed = _ensiam(backbone=first, **params).fit(X)  # the same weights resume
    assert resumed.n_epochs_ == 1


def test_ensiam_checkpoint_refused_for_an_overwritten_weights_file(tmp_path, X):
    weights = tmp_path / "w.pt"
    backbone = {"in_features": 6, "hidden_dim": 16, "embedding_dim": 8}
    _mlp_weights(weights, 0, **backbone)
    params = dict(
        backbone_params={**backbone, "weights": str(weights)}, checkpoint_dir=tmp_path / "ckpt"
    )
    _ensiam(**params).fit(X)
    _overwrite(weights, lambda p: _mlp_weights(p, 1, **backbone))
    with pytest.raises(ValueError, match=r"another run: different backbone_params;"):
        _ensiam(**params).fit(X)


def test_ensiam_checkpoint_refused_for_another_fitted_backbone(tmp_path, X):
    a = _ensiam().fit(X)
    b = _ensiam().fit(X + 1.0)  # the same parameters (and repr), other weights
    assert repr(a) == repr(b)
    params = dict(backbone_params=None, checkpoint_dir=tmp_path)
    _ensiam(backbone=a, **params).fit(X)
    with pytest.raises(ValueError, match=r"another run: different backbone;"):
        _ensiam(backbone=b, **params).fit(X)


# ---------------------------------------------------------- memory= caches
def _image_files(folder, n=12, size=8):
    folder.mkdir()
    paths = []
    for i in range(n):
        _save_image(folder / f"{i:02d}.png", i, size)
        paths.append(str(folder / f"{i:02d}.png"))
    return paths


def _mlp_weights(path, seed, in_features=64, hidden_dim=8, embedding_dim=4):
    from repens_sklearn import create_backbone

    torch.manual_seed(seed)
    torch.save(
        create_backbone(
            "mlp", in_features=in_features, hidden_dim=hidden_dim, embedding_dim=embedding_dim
        ).state_dict(),
        path,
    )


def _weighted_member(weights):
    return MeanTTAEmbedder(
        "mlp",
        backbone_params={
            "in_features": 64,
            "hidden_dim": 8,
            "embedding_dim": 4,
            "weights": str(weights),
        },
        n_augmentations=0,
        input_shape=(1, 8, 8),
        random_state=0,
    )


def test_concat_cache_misses_after_an_image_file_is_overwritten(tmp_path):
    paths = _image_files(tmp_path / "imgs")
    member = MeanTTAEmbedder("mlp", n_augmentations=0, input_shape=(1, 8, 8), random_state=0)
    cached = ConcatEmbedder([("m", member)], memory=str(tmp_path / "cache"))
    cached.fit_transform(paths)
    _overwrite(paths[3], lambda p: _save_image(p, 99))
    fresh = ConcatEmbedder([("m", member)]).fit_transform(paths)
    np.testing.assert_allclose(cached.fit_transform(paths), fresh, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cached.transform(paths), fresh, rtol=1e-6, atol=1e-6)


def test_concat_cache_misses_after_a_weights_file_is_overwritten(tmp_path):
    X = np.random.default_rng(0).random((10, 64), dtype=np.float32)
    weights = tmp_path / "w.pt"
    _mlp_weights(weights, 0)
    cached = ConcatEmbedder([("m", _weighted_member(weights))], memory=str(tmp_path / "cache"))
    old = cached.fit_transform(X)
    _overwrite(weights, lambda p: _mlp_weights(p, 1))
    fresh = ConcatEmbedder([("m", _weighted_member(weights))]).fit_transform(X)
    assert not np.allclose(old, fresh)
    np.testing.assert_allclose(cached.fit_transform(X), fresh, rtol=1e-6, atol=1e-6)


def test_concat_cache_misses_where_auto_precision_computes_otherwise(tmp_path, monkeypatch):
    """A cache filled where precision="auto" ran float32 is not served where it runs bf16."""
    X = np.random.default_rng(0).random((10, 64), dtype=np.float32)
    member = MeanTTAEmbedder("mlp", n_augmentations=0, random_state=0)  # precision="auto"
    cached = ConcatEmbedder([("m", member)], memory=str(tmp_path / "cache"))
    in_float32 = cached.fit_transform(X)
    monkeypatch.setenv("REPENS_SKLEARN_PRECISION", "bfloat16")  # another machine's "auto"
    in_bf16 = ConcatEmbedder([("m", member)]).fit_transform(X)
    assert not np.array_equal(in_float32, in_bf16)
    np.testing.assert_array_equal(cached.fit_transform(X), in_bf16)


def test_knn_selector_cache_misses_after_a_weights_file_is_overwritten(tmp_path):
    X = np.random.default_rng(0).random((24, 64), dtype=np.float32)
    y = np.repeat([0, 1, 2], 8)
    weights = tmp_path / "w.pt"
    _mlp_weights(weights, 0)

    def selector(**params):
        return TransferabilitySelector(
            [("w", _weighted_member(weights)), ("raw", "mlp")], n_select=1, random_state=0, **params
        )

    cached = selector(memory=str(tmp_path / "cache")).fit(X, y)
    _overwrite(weights, lambda p: _mlp_weights(p, 3))
    fresh = selector().fit(X, y)
    assert cached.fit(X, y).scores_ == fresh.scores_


def test_learned_ensemble_cache_misses_after_an_image_file_is_overwritten(tmp_path):
    paths = _image_files(tmp_path / "imgs")
    backbones = [
        ("m", MeanTTAEmbedder("mlp", n_augmentations=0, input_shape=(1, 8, 8), random_state=0))
    ]
    params = dict(
        hidden_dim=8, max_epochs=2, final_activation="identity", random_state=0, device="cpu"
    )
    cached = LearnedEnsembleEmbedder(backbones, memory=str(tmp_path / "cache"), **params)
    cached.fit(paths)
    _overwrite(paths[0], lambda p: _save_image(p, 77))
    fresh = LearnedEnsembleEmbedder(backbones, **params).fit(paths)
    np.testing.assert_allclose(
        cached.fit(paths).targets_.transform(paths),
        fresh.targets_.transform(paths),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(cached.embedding_, fresh.embedding_, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ embed_files jobs
N_FILES, CHUNK = 12, 4  # three chunks


@pytest.fixture
def paths(tmp_path):
    return _image_files(tmp_path / "imgs", N_FILES)


def _embedder(**params):
    return MeanTTAEmbedder(
        **{
            "backbone": "mlp",
            "n_augmentations": 0,
            "input_shape": (1, 8, 8),
            "random_state": 0,
            **params,
        }
    )


def _interrupt(monkeypatch, paths, output, n_chunks=2, **params):
    crash_transform_after(monkeypatch, n_chunks)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_files(_embedder(**params), paths, output, chunk_size=CHUNK)
    monkeypatch.undo()


def test_stale_temporary_part_is_cleared_and_the_run_resumes(tmp_path, paths, monkeypatch):
    reference = tmp_path / "ref.npy"
    embed_files(_embedder(), paths, reference, chunk_size=CHUNK)
    output = tmp_path / "emb.npy"
    _interrupt(monkeypatch, paths, output)
    parts = tmp_path / "emb.npy.parts"
    stale = parts / f"part-000002.tmp{os.getpid()}-140000.npz"  # a write cut short by a crash
    stale.write_bytes(b"half a zip")
    from repens_sklearn._embed_files import InterruptedRunError

    with pytest.raises(InterruptedRunError, match=r"\(2 of 3 chunks done\)"):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK)  # not "invalid literal"
    report = embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True)
    assert report.n_chunks_resumed == 2 and not stale.exists()
    assert output.read_bytes() == reference.read_bytes()


def _odd_name(folder, raw_name, seed=5):
    path = os.path.join(os.fsencode(folder), raw_name)
    _save_image(os.fsdecode(path), seed)
    return os.fsdecode(path)  # surrogate-escaped str for bytes that are not UTF-8


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_non_utf8_file_name_is_refused_up_front_for_tables(tmp_path, paths, suffix):
    pytest.importorskip("pyarrow" if suffix == ".parquet" else "pandas")
    odd = _odd_name(tmp_path / "imgs", b"old-archive-\xe9t\xe9.png")
    output = tmp_path / f"emb{suffix}"
    with pytest.raises(
        ValueError,
        match=rf"file name .*old-archive-.* \(paths\[12\]\) is not "
        rf"UTF-8 \(its bytes: b'.*old-archive-\\xe9t\\xe9.png'\), "
        rf"which the file column of \{suffix} output cannot hold: "
        rf"write .npy",
    ):
        embed_files(_embedder(), paths + [odd], output, chunk_size=CHUNK)
    assert not (tmp_path / f"emb{suffix}.parts").exists()  # refused before any work


def test_non_utf8_file_name_keeps_its_bytes_in_the_npy_file_list(tmp_path, paths):
    odd = _odd_name(tmp_path / "imgs", b"old-\xff.png")
    output = tmp_path / "emb.npy"
    embed_files(_embedder(), [odd] + paths, output, chunk_size=CHUNK)
    raw = output.with_suffix(".files.txt").read_bytes().split(b"\n")[:-1]
    assert raw == [os.fsencode(p) for p in [odd] + paths]
    assert os.path.isfile(raw[0])


def test_newline_in_a_file_name_never_shifts_the_file_list(tmp_path, paths):
    pytest.importorskip("pyarrow")
    odd = str(tmp_path / "imgs" / "two\nlines.png")
    _save_image(odd, 3)
    with pytest.raises(
        ValueError,
        match=r"'.*two\\nlines.png' \(paths\[1\]\) has a line break, "
        r"which the one-name-per-line file list of .npy",
    ):
        embed_files(_embedder(), [paths[0], odd] + paths[1:], tmp_path / "emb.npy")
    import pandas as pd

    embed_files(
        _embedder(), [paths[0], odd] + paths[1:], tmp_path / "emb.parquet", chunk_size=CHUNK
    )
    assert list(pd.read_parquet(tmp_path / "emb.parquet")["file"]) == [paths[0], odd] + paths[1:]


def test_finished_output_of_another_job_is_not_overwritten_silently(tmp_path, paths):
    output = tmp_path / "emb.npy"
    embed_files(_embedder(), paths, output, chunk_size=CHUNK)
    before = output.read_bytes()
    with pytest.raises(
        OutputExistsError,
        match=r"emb.npy' already exists and holds another "
        r"job's embeddings: it embedded 12 files, this "
        r"call gives 6: pass overwrite=True to replace",
    ):
        embed_files(_embedder(), paths[:6], output, chunk_size=CHUNK)
    with pytest.raises(
        OutputExistsError,
        match=r"its MeanTTAEmbedder has different random_state "
        r"\(it used 0, this call 1\)",
    ):
        embed_files(_embedder(random_state=1), paths, output, chunk_size=CHUNK)
    assert output.read_bytes() == before
    embed_files(_embedder(), paths, output, chunk_size=CHUNK)  # the same job: written again
    assert output.read_bytes() == before
    report = embed_files(_embedder(), paths[:6], output, chunk_size=CHUNK, overwrite=True)
    assert report.n_embedded == 6 and np.load(output).shape == (6, 64)


def test_a_file_not_written_by_embed_files_is_not_overwritten(tmp_path, paths):
    output = tmp_path / "precious.npy"
    np.save(output, np.arange(3))
    with pytest.raises(
        OutputExistsError,
        match=r"has no manifest .*precious.npy.manifest.json', "
        r"so it is not known to be this job's output",
    ):
        embed_files(_embedder(), paths, output)
    np.testing.assert_array_equal(np.load(output), np.arange(3))


def test_resume_refuses_another_module_of_the_same_architecture(tmp_path, paths, monkeypatch):
    torch.manual_seed(0)
    first, second = [
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)) for _ in range(2)
    ]
    output = tmp_path / "emb.npy"
    _interrupt(monkeypatch, paths, output, n_chunks=1, backbone=first)
    with pytest.raises(
        ResumeMismatchError,
        match=r"its MeanTTAEmbedder has different "
        r"backbone\. Pass what",
    ):
        embed_files(_embedder(backbone=second), paths, output, chunk_size=CHUNK, resume=True)
    report = embed_files(_embedder(backbone=first), paths, output, chunk_size=CHUNK, resume=True)
    assert report.n_chunks_resumed == 1


def test_resume_embeds_again_the_chunks_whose_files_changed(tmp_path, paths, monkeypatch):
    output = tmp_path / "emb.npy"
    _interrupt(monkeypatch, paths, output, n_chunks=2)
    _overwrite(paths[1], lambda p: _save_image(p, 123))  # chunk 0, already embedded
    with pytest.warns(
        UserWarning,
        match=r"the files of 1 of the 2 chunks done changed .* the "
        r"first '.*00.png': embedding those chunks again",
    ):
        report = embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True)
    assert report.n_chunks_resumed == 1
    np.testing.assert_allclose(
        np.load(output), _embedder().fit(paths).transform(paths), rtol=1e-6, atol=1e-6
    )
    # a complete output whose files changed is not returned as it is
    _overwrite(paths[11], lambda p: _save_image(p, 321))
    with pytest.warns(UserWarning, match=r"the files of 1 of 3 chunks of .*emb.npy' changed"):
        embed_files(_embedder(), paths, output, chunk_size=CHUNK, resume=True)
    np.testing.assert_allclose(
        np.load(output), _embedder().fit(paths).transform(paths), rtol=1e-6, atol=1e-6
    )


# -------------------------------------------------------------------- the CLI
def _cli_folder(tmp_path, n=6, broken=()):
    folder = tmp_path / "imgs"
    _image_files(folder, n)
    for i in broken:
        (folder / f"{i:02d}.png").write_bytes(b"not an image")
    return folder


def _cli(folder, output, *extra):
    return main(
        [
            "embed",
            str(folder),
            "--backbone",
            "mlp",
            "--input-shape",
            "1,8,8",
            "--chunk-size",
            "2",
            "--num-workers",
            "0",
            "-q",
            "-o",
            str(output),
            *extra,
        ]
    )


def test_cli_skip_unreadable_with_a_whole_unreadable_first_chunk(tmp_path, capsys):
    folder = _cli_folder(tmp_path, broken=(0, 1))
    assert _cli(folder, tmp_path / "emb.npy", "--skip-unreadable") == 0
    captured = capsys.readouterr()
    assert "fit it first" not in captured.err
    assert "wrote 4 x 64 embeddings" in captured.out
    assert "2 unreadable files skipped: " in captured.err
    names = (tmp_path / "emb.files.txt").read_text().split("\n")[:-1]
    assert [os.path.basename(n) for n in names] == ["02.png", "03.png", "04.png", "05.png"]


def test_cli_nothing_readable_says_so(tmp_path, capsys):
    folder = _cli_folder(tmp_path, n=2, broken=(0, 1))
    assert _cli(folder, tmp_path / "emb.npy", "--skip-unreadable") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "repens embed: error: none of the 2 files could be read as an image (first: '"
    )


def test_cli_successful_skip_unreadable_run_prints_no_traceback(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.jpg")
    truncated = folder / "3.jpg"  # a valid header: only decoding the pixels fails
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (folder / "4.jpg").write_bytes(b"not an image")
    argv = [
        "embed",
        str(folder),
        "--backbone",
        "mlp",
        "--chunk-size",
        "4",
        "--num-workers",
        "1",
        "-q",
        "--skip-unreadable",
        "-o",
        str(tmp_path / "emb.npy"),
    ]
    # A process of its own, as a user runs it, with the garbage collector running often:
    # the failed attempt's DataLoader, collected in the next one's forked worker, printed
    # "AssertionError: can only test a child process" tracebacks (when depended on timing).
    script = (
        "import gc, sys; gc.set_threshold(50); from repens_sklearn.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "can only test a child process" not in result.stderr
    assert "2 unreadable files skipped: " in result.stderr
    assert "wrote 4 x 64 embeddings" in result.stdout


def test_cli_refuses_another_jobs_output_without_overwrite(tmp_path, capsys):
    folder = _cli_folder(tmp_path)
    output = tmp_path / "emb.npy"
    assert _cli(folder, output) == 0
    before = output.read_bytes()
    assert _cli(folder, output, "--seed", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(
        "its MeanTTAEmbedder has different random_state (it used 0, this "
        "call 1): pass --overwrite to replace it, or choose another output"
    )
    assert output.read_bytes() == before
    assert _cli(folder, output, "--seed", "1", "--overwrite") == 0
    assert output.read_bytes() != before


def test_cli_non_utf8_name_is_refused_before_embedding(tmp_path, capsys):
    pytest.importorskip("pandas")
    folder = _cli_folder(tmp_path)
    _odd_name(folder, b"caf\xe9.png")
    assert _cli(folder, tmp_path / "emb.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(file 7 of 7) is not UTF-8 (its bytes: b'" in err and "caf\\xe9.png" in err
    assert "paths[" not in err and not (tmp_path / "emb.csv.parts").exists()
    assert _cli(folder, tmp_path / "emb.npy") == 0  # .npy keeps the bytes


# --- what a key must see (review of the fingerprint): state outside params and state_dict ---


def test_fingerprint_sees_the_object_of_a_bound_method():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    a = StandardScaler().fit(rng.normal(size=(20, 3)))
    b = StandardScaler().fit(rng.normal(size=(20, 3)) + 5)
    assert fingerprint(a.transform) != fingerprint(b.transform)
    assert fingerprint(a.transform) == fingerprint(a.transform)


def test_concat_cache_misses_for_a_function_transformer_of_another_fitted_object(tmp_path):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6))
    pa, pb = PCA(3).fit(X), PCA(3).fit(X[:, ::-1] * np.arange(1, 7))

    def embed(pca):
        member = [("f", FunctionTransformer(pca.transform))]
        return ConcatEmbedder(member, normalize=False, memory=str(tmp_path)).fit_transform(X)

    embed(pa)
    np.testing.assert_allclose(embed(pb), pb.transform(X), rtol=1e-6)


def test_fingerprint_sees_constants_of_nested_functions():
    def make(k):
        namespace = {}
        exec(f"def outer():\n    return lambda x: x * {k}\n", namespace)
        return namespace["outer"]

    assert fingerprint(make(2)) != fingerprint(make(3))


def test_fingerprint_sees_private_fitted_state():
    from sklearn.neighbors import KNeighborsTransformer

    rng = np.random.default_rng(0)
    a = KNeighborsTransformer(n_neighbors=3).fit(rng.normal(size=(10, 2)))
    b = KNeighborsTransformer(n_neighbors=3).fit(rng.normal(size=(10, 2)))
    assert fingerprint(a) != fingerprint(b)


def test_fingerprint_sees_non_persistent_buffers():
    def module(mean):
        m = torch.nn.Linear(2, 2)
        torch.nn.init.ones_(m.weight)
        torch.nn.init.zeros_(m.bias)
        m.register_buffer("mean", torch.tensor([mean]), persistent=False)
        return m

    assert fingerprint(module(0.0)) != fingerprint(module(1.0))
    assert fingerprint(module(0.0)) == fingerprint(module(0.0))
