"""embed_files itself: start or resume a job, run its chunks, assemble the output, report."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

import numpy as np

from .._fingerprint import RUNTIME_PARAMS, run_fingerprint
from .._images import check_decodes, check_on_error
from .._member_fitting import is_fitted
from .._warnings import warn
from ..exceptions import InterruptedRunError
from ._chunks import _load_embedder, _run_chunks, _UnreadableFile, _with_readable_files
from ._job import _EMBEDDER_FILE, _Job
from ._writers import _assemble


@dataclass
class EmbedReport:
    """What :func:`embed_files` did.

    Attributes
    ----------
    output : str
        The file written (for ``.npy``, the file list is ``<stem>.files.txt``).
    manifest : str
        The JSON manifest beside it (job, progress, skipped files).
    n_files : int
        Files asked for.
    n_embedded : int
        Rows written (``n_files - len(skipped)``).
    embedding_dim : int
        Columns of the embeddings.
    skipped : list of (str, str)
        Files left out (``on_error="skip"``) with the reason, in file order.
    n_chunks : int
        Chunks of the job.
    n_chunks_resumed : int
        Chunks found done by an earlier, interrupted run (0 for a fresh run).
    """

    output: str
    manifest: str
    n_files: int
    n_embedded: int
    embedding_dim: int
    skipped: list = field(default_factory=list)
    n_chunks: int = 0
    n_chunks_resumed: int = 0

    def skipped_summary(self, n_names=3) -> str:
        """``"2 unreadable files skipped: a.jpg (reason), b.jpg (reason)"``, or ``""``."""
        if not self.skipped:
            return ""
        names = ", ".join(f"{p} ({r})" for p, r in self.skipped[:n_names])
        more = (
            f", ... ({len(self.skipped) - n_names} more in {self.manifest})"
            if len(self.skipped) > n_names
            else ""
        )
        plural = "s" if len(self.skipped) != 1 else ""
        return f"{len(self.skipped)} unreadable file{plural} skipped: {names}{more}"


def embed_files(
    embedder,
    paths,
    output,
    *,
    chunk_size=1024,
    resume=False,
    on_error="raise",
    overwrite=False,
    n_jobs=None,
    verbose=False,
):
    """Embed image files into ``.parquet``, ``.npy`` or ``.csv``, chunk by chunk, resumably.

    Memory does not grow with the number of files: each chunk of
    ``chunk_size`` files is embedded by one ``embedder.transform`` call and
    saved at once as a part file in ``<output>.parts/``; the output is
    assembled from the parts, one chunk at a time, when all are done. The
    manifest ``<output>.manifest.json`` records the job, how far it got and the
    files skipped. After an interruption (a crash, a kill, an unreadable file
    with ``on_error="raise"``), ``resume=True`` embeds only the missing chunks,
    with the embedder the interrupted run saved, and the output is the same,
    byte for byte, as that of an uninterrupted run.

    Parameters
    ----------
    embedder : transformer
        A fitted transformer that maps a list of image paths to an array
        ``(n, D)``, such as :class:`~repens_sklearn.MeanTTAEmbedder`. An
        unfitted one is fitted on the first chunk's files (right for
        ``MeanTTAEmbedder``, whose ``fit`` only builds the backbone; fit
        learning estimators yourself); when none of the first chunk's files
        can be read (``on_error="skip"``), on the first chunk with a readable
        file. The fitted embedder is saved in ``<output>.parts/`` and a
        resumed run uses that copy.
    paths : list of str or path-like
        The image files, in the order of the output's rows.
    output : str or path
        ``.parquet`` (columns ``file``, ``emb0`` ... ``emb{D-1}``; one row group
        per chunk; needs pyarrow), ``.npy`` (the array; the files are listed
        one per line, ``"\\n"``-separated, in ``<stem>.files.txt``, names that
        are not UTF-8 as their raw bytes: read it with
        ``open(f, encoding="utf-8", errors="surrogateescape")``) or ``.csv``
        (as parquet; needs pandas). Written to a temporary name and renamed
        when complete. A file name that the format cannot hold is refused
        before any work: a name with a line break in ``.npy``, a name that is
        not UTF-8 in ``.parquet`` and ``.csv``.
    chunk_size : int, default=1024
        Files per chunk: the unit of work, of saving and of resuming. The rows
        do not depend on it for deterministic embedders; with random
        test-time augmentation (``n_augmentations > 0``) every chunk draws its
        views afresh from ``random_state``, so keep the same ``chunk_size`` (and
        ``batch_size``) to reproduce a run.
    resume : bool, default=False
        Continue the interrupted run of this output (same files in the same
        order, same ``chunk_size``, same embedder parameters; the runtime ones,
        ``RUNTIME_PARAMS`` of :mod:`repens_sklearn._fingerprint` - ``device``,
        ``verbose``, ``num_workers``, ``n_jobs``, ``memory``, ``callbacks``,
        ``checkpoint_dir`` - may differ and are taken from ``embedder``; the
        same rule as a resumed ``EnSiamPretrainer`` checkpoint). With nothing
        to resume it starts afresh; with a complete output it returns at once.
        With ``resume=False`` an interrupted run on disk is an error, so that
        work is never thrown away by mistake. Chunks whose files changed (size
        or modification time) since they were embedded are embedded again.
    on_error : {"raise", "skip"}, default="raise"
        A file that cannot be decoded (missing, not an image, truncated):
        ``"raise"`` stops with :class:`UnreadableImageError` naming it (the
        chunks done stay on disk: fix the file, or resume with ``"skip"``);
        ``"skip"`` leaves it out of the output's rows and file list and records
        it in :attr:`EmbedReport.skipped` and the manifest.
    overwrite : bool, default=False
        Replace an existing ``output`` that is not this job's (another job's
        finished output, or a file this function did not write). Without it
        such a file is an :class:`OutputExistsError`; this job's own finished
        output is simply written again (or, with ``resume=True``, kept when
        none of its files changed).
    n_jobs : int, default=None
        Chunks embedded at once through ``joblib.Parallel`` (``None``: one, in
        this process). Each job loads the saved embedder once and writes its
        own parts; the output is the same as with one job.
    verbose : bool, default=False
        A progress bar over files.

    Returns
    -------
    report : EmbedReport
        Rows written, skipped files, chunks resumed.

    Notes
    -----
    **On a Dask cluster.** Chunks are independent tasks, so joblib's Dask
    backend spreads them over the workers; each worker loads the fitted
    embedder once from ``<output>.parts/`` and writes its own part files, and
    the client assembles one output, identical to a local run::

        from dask.distributed import Client
        from joblib import parallel_config

        client = Client("tcp://scheduler-host:8786")   # an existing cluster
        # or: client = Client(LocalCluster(n_workers=4))
        with parallel_config(backend="dask"):
            embed_files(embedder, paths, "/shared/emb.parquet", n_jobs=-1)

    The image files and the output folder must be visible to the workers
    under the same paths (a shared filesystem). Install Dask with
    ``pip install "repens-sklearn[dask]"``; it is imported only when asked for.

    Examples
    --------
    >>> from repens_sklearn import MeanTTAEmbedder, embed_files
    >>> embedder = MeanTTAEmbedder("convnet_small", n_augmentations=0,
    ...                            input_shape=(3, 64, 64), random_state=0)
    >>> report = embed_files(embedder, paths, "emb.parquet",
    ...                      on_error="skip", resume=True)  # doctest: +SKIP
    >>> report.n_embedded, report.skipped_summary()  # doctest: +SKIP
    (4998, '2 unreadable files skipped: a.jpg (OSError: ...), b.jpg (...)')
    """
    job = _Job.create(paths, output, chunk_size)
    _check_flags(on_error, resume=resume, overwrite=overwrite)
    manifest = job.read_manifest()
    if not overwrite:
        job.check_output_is_ours(manifest, embedder)
    job.clear_temporary_files()  # what a crash during a write left
    if resume and _output_is_current(job, manifest, embedder):
        return _report(job, manifest, n_resumed=job.n_chunks)  # nothing left to do
    done = job.done_chunks()
    if done and not resume:
        raise InterruptedRunError(parts=str(job.parts), n_done=len(done), n_chunks=job.n_chunks)
    if resume and (done or job.embedder_file.exists()) and manifest is not None:
        job.check_same_job(manifest, embedder)
        embedder = _resumed_embedder(job.embedder_file, embedder)
        done -= job.drop_changed_parts(done)
    else:
        done = set()
        _start_fresh(job, embedder, on_error)
        manifest = job.read_manifest()
    if verbose and done:
        print(
            f"resuming {job.output}: {len(done)} of {job.n_chunks} chunks already done",
            file=sys.stderr,
        )
    _run_chunks(
        job, embedder, sorted(set(range(job.n_chunks)) - done), on_error, n_jobs, verbose, manifest
    )
    return _report(job, _assemble(job, manifest), n_resumed=len(done))


def _check_flags(on_error, **flags):
    check_on_error(on_error)
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def _output_is_current(job, manifest, embedder):
    """Whether this job's complete output is on disk with none of its files changed since."""
    if (
        manifest is None
        or manifest.get("status") != "complete"
        or not job.output.exists()
        or not job.is_same_job(manifest, embedder)
    ):
        return False
    changed = job.changed_chunks(manifest.get("chunk_files"), range(job.n_chunks))
    if changed:
        warn(
            f"the files of {len(changed)} of {job.n_chunks} chunks of {str(job.output)!r} "
            f"changed (size or modification time) since it was written, the first "
            f"{job.paths[job.chunk(changed[0])[0]]!r}: embedding them all again",
            UserWarning,
        )
    return not changed


def _report(job, manifest, n_resumed):
    return EmbedReport(
        output=str(job.output),
        manifest=str(job.manifest_path),
        n_files=len(job.paths),
        n_embedded=int(manifest["n_embedded"]),
        embedding_dim=int(manifest["embedding_dim"]),
        skipped=[tuple(item) for item in manifest.get("skipped", [])],
        n_chunks=job.n_chunks,
        n_chunks_resumed=int(n_resumed),
    )


def _start_fresh(job, embedder, on_error):
    """Clear old state, fit the embedder if needed, save it and write the manifest."""
    import joblib

    _check_is_transformer(embedder)
    if job.parts.exists():
        shutil.rmtree(job.parts)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    fingerprints = [str(run_fingerprint(embedder))]  # as given, and as fitted below
    if not is_fitted(embedder):
        _fit_on_first_readable_chunk(job, embedder, on_error)
        fingerprints.append(str(run_fingerprint(embedder)))
    job.parts.mkdir(parents=True)
    tmp = job.parts / (_EMBEDDER_FILE + ".tmp")
    joblib.dump(embedder, tmp)
    os.replace(tmp, job.embedder_file)
    job.write_manifest(job.new_manifest(embedder, fingerprints))


def _check_is_transformer(embedder):
    if not callable(getattr(embedder, "transform", None)):
        raise TypeError(f"embedder must have a transform method, got {type(embedder).__name__}")
    if not callable(getattr(embedder, "fit", None)):
        raise TypeError(
            f"embedder must be a scikit-learn transformer (fit/transform), got "
            f"{type(embedder).__name__}"
        )


def _fit_on_first_readable_chunk(job, embedder, on_error):
    """Fit ``embedder`` on the first chunk, or with ``"skip"`` the first with a readable file."""
    for index in range(job.n_chunks):
        start, paths = job.chunk(index)
        try:
            _, kept, _ = _with_readable_files(embedder.fit, paths, start, on_error)
        except _UnreadableFile as exc:
            raise job.unreadable(exc) from exc.__cause__
        if kept:
            return
    raise ValueError(
        f"none of the {len(job.paths)} files could be read as an image (first: "
        f"{job.paths[0]!r}: {check_decodes(job.paths[0])})"
    )


def _resumed_embedder(embedder_file, embedder):
    """The interrupted run's embedder, with this call's runtime parameters."""
    saved = _load_embedder(embedder_file)
    ours = embedder.get_params(deep=False) if hasattr(embedder, "get_params") else {}
    theirs = saved.get_params(deep=False) if hasattr(saved, "get_params") else {}
    runtime = {name: ours[name] for name in RUNTIME_PARAMS if name in ours and name in theirs}
    if runtime:
        saved.set_params(**runtime)
    return saved
