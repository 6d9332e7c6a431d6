"""The output formats of embed_files, and the assembly of a job's parts into one output file."""

from __future__ import annotations

import os
import shutil

import numpy as np

from ._chunks import _iter_parts, _part_info

FORMATS = (".parquet", ".npy", ".csv")


def check_writer_available(suffix):
    """Raise ImportError naming the package a format needs, before any work is done."""
    from importlib.util import find_spec

    if suffix in (".csv",) and find_spec("pandas") is None:
        raise ImportError("writing .csv needs pandas: pip install pandas (or use .npy)")
    if suffix == ".parquet" and find_spec("pyarrow") is None:
        raise ImportError("writing .parquet needs pyarrow: pip install pyarrow (or use .npy)")


def _assemble(job, manifest):
    """Copy the parts, in chunk order, into the output; the completed manifest."""
    infos = [_part_info(job, i) for i in range(job.n_chunks)]
    dims = {info["shape"][1] for info in infos if info["shape"][0] > 0}
    if len(dims) > 1:
        raise ValueError(
            f"the parts in {str(job.parts)!r} have different widths {sorted(dims)}: "
            "they were not made by one embedder; delete the folder and start over"
        )
    n_rows = sum(info["shape"][0] for info in infos)
    skipped = [
        [job.paths[info["start"] + i], r]
        for info in infos
        for i, r in zip(info["skipped_rows"], info["skipped_reasons"])
    ]
    if n_rows == 0:
        raise ValueError(
            f"none of the {len(job.paths)} files could be read "
            f"(first: {skipped[0][0]!r}: {skipped[0][1]})"
        )
    dim = dims.pop()
    dtype = np.result_type(*[info["dtype"] for info in infos if info["shape"][0] > 0])
    tmp = job.output.with_name(job.output.name + ".partial")
    _WRITERS[job.format](tmp, job, _iter_parts(job, dtype), n_rows, dim, dtype)
    os.replace(tmp, job.output)
    manifest.update(
        status="complete",
        chunks_done=job.n_chunks,
        files_done=len(job.paths),
        n_embedded=int(n_rows),
        embedding_dim=int(dim),
        skipped=skipped,
        chunk_files={str(i): info["files"] for i, info in enumerate(infos)},
    )
    job.write_manifest(manifest)
    shutil.rmtree(job.parts, ignore_errors=True)
    return manifest


def _write_npy(tmp, job, parts, n_rows, dim, dtype):
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": (int(n_rows), int(dim)),
    }
    files_tmp = job.files_list.with_name(job.files_list.name + ".partial")
    with (
        open(tmp, "wb") as f,
        open(files_tmp, "w", encoding="utf-8", errors="surrogateescape") as listing,
    ):
        np.lib.format.write_array_header_1_0(f, header)
        for files, emb in parts:
            f.write(emb.tobytes())
            listing.write("".join(p + "\n" for p in files))
    os.replace(files_tmp, job.files_list)


def _columns(dim):
    return ["file"] + [f"emb{i}" for i in range(dim)]


def _write_parquet(tmp, job, parts, n_rows, dim, dtype):
    import pyarrow as pa
    import pyarrow.parquet as pq

    value_type = pa.from_numpy_dtype(np.dtype(dtype))
    schema = pa.schema([("file", pa.string())] + [(c, value_type) for c in _columns(dim)[1:]])
    with pq.ParquetWriter(tmp, schema) as writer:
        for files, emb in parts:
            arrays = [pa.array(files, type=pa.string())] + [pa.array(emb[:, j]) for j in range(dim)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def _write_csv(tmp, job, parts, n_rows, dim, dtype):
    import pandas as pd

    with open(tmp, "w", encoding="utf-8", newline="") as f:
        for k, (files, emb) in enumerate(parts):
            frame = pd.DataFrame(emb, columns=_columns(dim)[1:])
            frame.insert(0, "file", files)
            frame.to_csv(f, index=False, header=k == 0)


_WRITERS = {".npy": _write_npy, ".parquet": _write_parquet, ".csv": _write_csv}
