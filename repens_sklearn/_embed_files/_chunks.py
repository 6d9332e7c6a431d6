"""Embedding the chunks of a job, in this process or on joblib workers, and reading parts back."""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._fingerprint import fingerprint
from .._images import check_decodes


class _UnreadableFile(Exception):
    """Raised where a chunk is embedded (maybe on a worker); the driver adds the context."""

    def __init__(self, path, index, reason):
        super().__init__(path, index, reason)
        self.path, self.index, self.reason = path, index, reason


@dataclass
class _ChunkDone:
    index: int
    n_files: int
    skipped: list


def _with_readable_files(fn, paths, start, on_error):
    """``fn(files)`` on ``paths``; on failure find the undecodable files and skip or raise.

    Returns ``(result, kept, skipped)``: ``kept`` the positions in ``paths``
    given to ``fn``, ``skipped`` a list of ``(position, reason)``. Files are
    only decoded one by one when ``fn`` fails, so a clean chunk costs nothing more.
    """
    kept, skipped = list(range(len(paths))), []
    while kept:
        try:
            return fn([paths[i] for i in kept]), kept, skipped
        except Exception as exc:
            bad = [(i, reason) for i in kept if (reason := check_decodes(paths[i])) is not None]
            if not bad:
                raise  # not a file's fault: the embedder's own error
            if on_error == "raise":
                i, reason = bad[0]
                raise _UnreadableFile(paths[i], start + i, reason) from exc
            skipped += bad
            bad_set = {i for i, _ in bad}
            kept = [i for i in kept if i not in bad_set]
        # The failed attempt's DataLoader sits in the traceback's frames: free it now, or a
        # worker forked for the next attempt collects it and prints "can only test a child
        # process" tracebacks on a successful run.
        gc.collect()
    return None, kept, skipped


def _embed_chunk(embedder, parts, index, start, paths, on_error):
    """Embed one chunk and save it as ``parts/part-<index>.npz``; a :class:`_ChunkDone`."""
    files = str(fingerprint(paths))  # before reading: a file changed meanwhile is redone
    out, kept, skipped = _with_readable_files(embedder.transform, paths, start, on_error)
    out = np.empty((0, 0), dtype=np.float32) if out is None else np.asarray(out)
    if out.ndim != 2 or out.shape[0] != len(kept) or out.dtype.kind not in "fiu":
        raise ValueError(
            f"embedder.transform must return a numeric array (n_files, D); for "
            f"{len(kept)} files it returned {out.dtype} {out.shape}"
        )
    parts = Path(parts)
    tmp = parts / f"part-{index:06d}.tmp{os.getpid()}-{threading.get_ident()}.npz"
    np.savez(
        tmp,
        embeddings=out,
        rows=np.asarray(kept, dtype=np.int64),
        skipped_rows=np.asarray([i for i, _ in skipped], dtype=np.int64),
        skipped_reasons=np.asarray([r for _, r in skipped], dtype=str),
        files_fingerprint=np.asarray(files),
    )
    os.replace(tmp, parts / f"part-{index:06d}.npz")
    return _ChunkDone(index, len(paths), [(paths[i], r) for i, r in skipped])


_local = threading.local()


def _embed_chunk_task(embedder_file, index, start, paths, on_error):
    """One chunk on a joblib worker; the saved embedder is loaded once per worker thread.

    Only the chunk's own paths travel with the task, never the whole list.
    """
    key = (str(embedder_file), os.stat(embedder_file).st_mtime_ns)
    if getattr(_local, "key", None) != key:
        _local.key, _local.embedder = None, None  # drop the previous one first
        _local.embedder, _local.key = _load_embedder(embedder_file), key
    return _embed_chunk(_local.embedder, Path(embedder_file).parent, index, start, paths, on_error)


def _load_embedder(embedder_file):
    import joblib

    return joblib.load(embedder_file)


def _run_chunks(job, embedder, todo, on_error, n_jobs, verbose, manifest):
    """Embed the chunks ``todo``, recording progress in ``manifest`` after each one."""
    from tqdm.auto import tqdm

    n_todo_files = sum(len(job.chunk(i)[1]) for i in todo)
    # what earlier runs did, from their parts (the manifest may lag a part behind)
    earlier = [_part_info(job, i) for i in sorted(set(range(job.n_chunks)) - set(todo))]
    manifest["files_done"] = len(job.paths) - n_todo_files
    manifest["skipped"] = [
        [job.paths[info["start"] + i], r]
        for info in earlier
        for i, r in zip(info["skipped_rows"], info["skipped_reasons"])
    ]
    bar = tqdm(
        total=len(job.paths),
        initial=len(job.paths) - n_todo_files,
        unit="file",
        desc="embedding",
        disable=not verbose,
        leave=False,
        dynamic_ncols=True,
    )
    n_done = job.n_chunks - len(todo)
    try:
        for result in _chunk_results(job, embedder, todo, on_error, n_jobs):
            n_done += 1
            manifest["chunks_done"] = n_done
            manifest["files_done"] = manifest.get("files_done", 0) + result.n_files
            manifest["skipped"] = manifest.get("skipped", []) + [list(s) for s in result.skipped]
            job.write_manifest(manifest)
            bar.update(result.n_files)
    except _UnreadableFile as exc:
        raise job.unreadable(exc) from exc.__cause__
    finally:
        bar.close()
        _local.key, _local.embedder = None, None


def _chunk_results(job, embedder, todo, on_error, n_jobs):
    """A :class:`_ChunkDone` per chunk as it finishes: in this process, or through joblib."""
    from joblib import Parallel, delayed, effective_n_jobs

    if effective_n_jobs(n_jobs) == 1:
        return (_embed_chunk(embedder, job.parts, i, *job.chunk(i), on_error) for i in todo)
    return Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_embed_chunk_task)(job.embedder_file, i, *job.chunk(i), on_error) for i in todo
    )


# ------------------------------------------------------------------ reading parts
def _part_info(job, index):
    """What a part holds (shape, dtype, skipped rows, files fingerprint), without its rows."""
    start, _ = job.chunk(index)
    path = job.part_path(index)
    try:
        with np.load(path, allow_pickle=False) as part:
            skipped_rows, reasons = part["skipped_rows"], part["skipped_reasons"]
            files = str(part["files_fingerprint"]) if "files_fingerprint" in part else None
            shape, dtype = _npz_member_header(part, "embeddings.npy")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"part {str(path)!r} of chunk {index} is missing: resume the run to embed it"
        ) from None
    return {
        "start": start,
        "shape": shape,
        "dtype": dtype,
        "files": files,
        "skipped_rows": skipped_rows.tolist(),
        "skipped_reasons": reasons.tolist(),
    }


def _npz_member_header(npz, member):
    """``(shape, dtype)`` of an array in an open ``.npz`` without loading it."""
    with npz.zip.open(member) as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _part_files_fingerprint(path):
    """The fingerprint of a part's files, recorded when it was embedded (None if unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as part:
            return str(part["files_fingerprint"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged or older part: embedded again


def _iter_parts(job, dtype):
    """``(files, embeddings)`` per chunk, in order, one chunk in memory at a time."""
    for index in range(job.n_chunks):
        start, paths = job.chunk(index)
        with np.load(job.part_path(index), allow_pickle=False) as part:
            rows, emb = part["rows"], part["embeddings"]
        if len(rows):
            yield [paths[i] for i in rows], np.ascontiguousarray(emb, dtype=dtype)
