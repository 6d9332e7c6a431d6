"""Embed a list of image files to disk chunk by chunk: flat memory, resumable, parallel.

:func:`embed_files` cuts the file list into fixed chunks, embeds each chunk with
one ``transform`` call and saves it as a part file in a folder next to the
output (``<output>.parts/``); a small JSON manifest (``<output>.manifest.json``)
records the job and how far it got. When every chunk is done the parts are
copied, in file order and one chunk at a time, into the output. A chunk is done
exactly when its part file ``part-NNNNNN.npz`` exists (parts are written to a
temporary name and renamed; temporary files a crash leaves are cleared), so an
interrupted run resumes at the first missing chunk and, the chunks being the
same, writes the same bytes as an uninterrupted run. Each part records the
fingerprint of its files (:func:`~repens_sklearn._fingerprint.fingerprint`: path,
size, modification time), so a chunk whose files changed since is embedded again.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from ._fingerprint import fingerprint
from ._fitted import is_fitted
from ._warnings import warn
from .datasets import _check_image_decodes, _check_on_error

FORMATS = (".parquet", ".npy", ".csv")
_MANIFEST_KEY = "repens_embed_files"
_MANIFEST_VERSION = 2  # 2: paths and embedder by fingerprint, per-chunk file identity
_PART_NAME = re.compile(r"part-(\d{6,})\.npz")  # a finished part; anything else is not one
# Parameters that change where or how fast an embedder runs, not what it computes:
# a resumed run may set them differently from the interrupted one.
RUNTIME_PARAMS = ("device", "verbose", "num_workers", "n_jobs")
_EMBEDDER_FILE = "embedder.joblib"

# How options are called in the library; the `repens` command renders the same
# errors with its own option names.
# A word may use the error's fields: "where" places an unreadable file in the list.
LIBRARY_WORDS = {"resume": "resume=True", "skip": "on_error='skip'", "chunk_size": "chunk_size",
                 "overwrite": "overwrite=True", "where": "paths[{index}]"}


class EmbedFilesError(Exception):
    """An error of :func:`embed_files` whose hint names options (library or CLI words)."""

    template = "{message}"

    def __init__(self, **fields):
        self.fields = fields
        super().__init__(self.render(LIBRARY_WORDS))

    def __reduce__(self):  # picklable although __init__ takes keywords only
        return _rebuild_error, (type(self), self.fields)

    def render(self, words) -> str:
        """The message with the options called by ``words`` (see :data:`LIBRARY_WORDS`)."""
        fields = dict(self.fields)
        if "index" in fields:
            fields["number"] = fields["index"] + 1
        words = {k: _format_if_possible(v, fields) for k, v in words.items()}
        fields = {k: v.format(**words) if k == "what" else v for k, v in fields.items()}
        return self.template.format(**fields, **words)


def _format_if_possible(text, fields):
    try:
        return text.format(**fields)
    except KeyError:  # a word for another error's fields
        return text


def _rebuild_error(cls, fields):
    return cls(**fields)


class UnreadableImageError(EmbedFilesError, ValueError):
    """A file could not be decoded and ``on_error="raise"``; the chunks done are kept."""

    template = ("cannot read image {path!r} ({where}): {reason}. The {n_done} of "
                "{n_chunks} chunks done are kept in {parts!r}: fix or remove the file, or pass "
                "{skip} with {resume} to leave it out and continue")


class InterruptedRunError(EmbedFilesError, FileExistsError):
    """An interrupted run is on disk and ``resume=False``."""

    template = ("{parts!r} holds an interrupted run of this output ({n_done} of {n_chunks} "
                "chunks done): pass {resume} to continue it, or delete that folder to start over")


class ResumeMismatchError(EmbedFilesError, ValueError):
    """``resume=True`` but the job differs from the interrupted one."""

    template = ("cannot resume {output!r}: {what}. Pass what the interrupted run was given, "
                "or delete {parts!r} and {manifest!r} to start over")


class UnwritableNameError(EmbedFilesError, ValueError):
    """A file name the output format cannot hold; refused before any work is done."""

    template = "file name {path!r} ({where}) {reason}"


class OutputExistsError(EmbedFilesError, FileExistsError):
    """The output exists and is not this job's: it is only replaced when asked to."""

    template = ("{output!r} already exists and {what}: pass {overwrite} to replace it, or "
                "choose another output")


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
        more = f", ... ({len(self.skipped) - n_names} more in {self.manifest})" \
            if len(self.skipped) > n_names else ""
        plural = "s" if len(self.skipped) != 1 else ""
        return f"{len(self.skipped)} unreadable file{plural} skipped: {names}{more}"


def embed_files(embedder, paths, output, *, chunk_size=1024, resume=False, on_error="raise",
                overwrite=False, n_jobs=None, verbose=False):
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
        order, same ``chunk_size``, same embedder parameters; those in
        ``RUNTIME_PARAMS`` - ``device``, ``verbose``, ``num_workers``,
        ``n_jobs`` - may differ and are taken from ``embedder``). With nothing
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
    _check_on_error(on_error)
    for name, value in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    manifest = job.read_manifest()
    if not overwrite:
        job.check_output_is_ours(manifest, embedder)
    job.clear_temporary_files()  # what a crash during a write left
    if resume and manifest is not None and manifest.get("status") == "complete" \
            and job.output.exists() and job.is_same_job(manifest, embedder):
        changed = job.changed_chunks(manifest.get("chunk_files"), range(job.n_chunks))
        if not changed:
            return job.report(manifest, n_resumed=job.n_chunks)  # nothing left to do
        warn(f"the files of {len(changed)} of {job.n_chunks} chunks of {str(job.output)!r} "
             f"changed (size or modification time) since it was written, the first "
             f"{job.paths[job.chunk(changed[0])[0]]!r}: embedding them all again",
             UserWarning)
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
    n_resumed = len(done)
    if verbose and n_resumed:
        print(f"resuming {job.output}: {n_resumed} of {job.n_chunks} chunks already done",
              file=sys.stderr)
    _run_chunks(job, embedder, sorted(set(range(job.n_chunks)) - done), on_error, n_jobs,
                verbose, manifest)
    manifest = _assemble(job, manifest)
    return job.report(manifest, n_resumed=n_resumed)


def embedder_fingerprint(embedder) -> str:
    """What identifies an embedder's results: its fingerprint without the runtime parameters."""
    return str(fingerprint(embedder, ignore_params=RUNTIME_PARAMS))


# ------------------------------------------------------------------------ the job
@dataclass
class _Job:
    paths: list
    output: Path
    chunk_size: int
    paths_fingerprint: str

    @classmethod
    def create(cls, paths, output, chunk_size):
        if isinstance(paths, (str, os.PathLike)) or not hasattr(paths, "__len__"):
            raise TypeError(f"paths must be a list of image file paths, got {type(paths).__name__}")
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("paths is empty: there is nothing to embed")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        output = Path(output)
        if output.suffix.lower() not in FORMATS:
            raise ValueError(f"output must end in {', '.join(FORMATS)}, got {str(output)!r}")
        check_writer_available(output.suffix.lower())
        _check_names_fit(paths, output.suffix.lower())
        return cls(paths, output, int(chunk_size), str(fingerprint(paths, files=None)))

    @property
    def format(self):
        return self.output.suffix.lower()

    @property
    def n_chunks(self):
        return math.ceil(len(self.paths) / self.chunk_size)

    @property
    def parts(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    @property
    def manifest_path(self) -> Path:
        return self.output.with_name(self.output.name + ".manifest.json")

    @property
    def embedder_file(self) -> Path:
        return self.parts / _EMBEDDER_FILE

    @property
    def files_list(self) -> Path:
        return self.output.with_suffix(".files.txt")

    def chunk(self, index):
        start = index * self.chunk_size
        return start, self.paths[start:start + self.chunk_size]

    def part_path(self, index) -> Path:
        return self.parts / f"part-{index:06d}.npz"

    def done_chunks(self) -> set:
        """Chunks with a finished part file (``part-NNNNNN.npz``; temporary names do not count)."""
        if not self.parts.is_dir():
            return set()
        done = set()
        for entry in os.scandir(self.parts):
            match = _PART_NAME.fullmatch(entry.name)
            if match and int(match[1]) < self.n_chunks:
                done.add(int(match[1]))
        return done

    def clear_temporary_files(self):
        """Remove the temporary parts and files that an interrupted write left behind."""
        if self.parts.is_dir():
            for entry in os.scandir(self.parts):
                if ".tmp" in entry.name and entry.is_file():
                    os.remove(entry.path)
        for path in (self.output.with_name(self.output.name + ".partial"),
                     self.files_list.with_name(self.files_list.name + ".partial")):
            if path.is_file():
                os.remove(path)

    def chunk_files(self, index) -> str:
        """The fingerprint of the files of chunk ``index``: paths, sizes, modification times."""
        return str(fingerprint(self.chunk(index)[1]))

    def changed_chunks(self, recorded, indices) -> list:
        """The chunks among ``indices`` whose files differ from ``recorded`` (str index -> hex)."""
        recorded = recorded or {}
        return [i for i in indices if recorded.get(str(i)) != self.chunk_files(i)]

    def drop_changed_parts(self, done) -> set:
        """Delete the parts whose files changed since they were embedded; their indices."""
        recorded = {str(i): _part_files_fingerprint(self.part_path(i)) for i in done}
        changed = self.changed_chunks(recorded, sorted(done))
        for i in changed:
            os.remove(self.part_path(i))
        if changed:
            warn(f"the files of {len(changed)} of the {len(done)} chunks done changed (size or "
                 f"modification time) since they were embedded, the first "
                 f"{self.paths[self.chunk(changed[0])[0]]!r}: embedding those chunks again",
                 UserWarning)
        return set(changed)

    def check_output_is_ours(self, manifest, embedder):
        """Raise :class:`OutputExistsError` when ``output`` exists and is not this job's."""
        if not self.output.exists():
            return
        if manifest is None:
            raise OutputExistsError(
                output=str(self.output), what=f"has no manifest {str(self.manifest_path)!r}, "
                "so it is not known to be this job's output")
        try:
            self.check_same_job(manifest, embedder)
        except ResumeMismatchError as exc:
            raise OutputExistsError(output=str(self.output),
                                    what=f"holds another job's embeddings: {exc.fields['what']}"
                                    ) from None

    def read_manifest(self):
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and _MANIFEST_KEY in manifest else None

    def write_manifest(self, manifest):
        _atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1) + "\n")

    def identity(self):
        return {"format": self.format, "n_files": len(self.paths),
                "paths_fingerprint": self.paths_fingerprint, "chunk_size": self.chunk_size}

    def is_same_job(self, manifest, embedder):
        try:
            self.check_same_job(manifest, embedder)
        except ResumeMismatchError:
            return False  # a complete output of another job: it is simply redone
        return True

    def check_same_job(self, manifest, embedder):
        fields = {"output": str(self.output), "parts": str(self.parts),
                  "manifest": str(self.manifest_path)}
        old = manifest.get("job", {})
        new = self.identity()
        if manifest.get(_MANIFEST_KEY) != _MANIFEST_VERSION:
            raise ResumeMismatchError(what="its manifest was written by another version of "
                                      "repens_sklearn", **fields)
        if old.get("n_files") != new["n_files"]:
            raise ResumeMismatchError(what=f"it embedded {old.get('n_files')} files, this call "
                                      f"gives {new['n_files']}", **fields)
        if old.get("paths_fingerprint") != new["paths_fingerprint"]:
            raise ResumeMismatchError(what=f"the {new['n_files']} paths are not the same files "
                                      "in the same order", **fields)
        if old.get("chunk_size") != new["chunk_size"]:
            raise ResumeMismatchError(what=f"it used {{chunk_size}}={old.get('chunk_size')}, "
                                      f"this call {new['chunk_size']}", **fields)
        if old.get("format") != new["format"]:  # pragma: no cover - the name fixes the suffix
            raise ResumeMismatchError(what=f"it wrote {old.get('format')}", **fields)
        saved = manifest.get("embedder", {})
        kind = type(embedder).__name__
        if saved.get("class") != kind:
            raise ResumeMismatchError(what=f"it used a {saved.get('class')}, this call a {kind}",
                                      **fields)
        params = _simple_params(embedder)
        for name, value in saved.get("params", {}).items():
            if name in params and params[name] != value:
                raise ResumeMismatchError(
                    what=f"it used a {kind} with {name}={value!r}, this call {name}="
                         f"{params[name]!r}", **fields)
        if embedder_fingerprint(embedder) not in saved.get("fingerprints", []):
            raise ResumeMismatchError(
                what=f"its {kind} differs from this call's (in module weights, fitted state or "
                     "a parameter that is not a plain value)", **fields)

    def unreadable(self, exc):
        return UnreadableImageError(path=exc.path, index=exc.index, reason=exc.reason,
                                    n_files=len(self.paths), n_done=len(self.done_chunks()),
                                    n_chunks=self.n_chunks, parts=str(self.parts))

    def report(self, manifest, n_resumed):
        return EmbedReport(
            output=str(self.output), manifest=str(self.manifest_path),
            n_files=len(self.paths), n_embedded=int(manifest["n_embedded"]),
            embedding_dim=int(manifest["embedding_dim"]),
            skipped=[tuple(item) for item in manifest.get("skipped", [])],
            n_chunks=self.n_chunks, n_chunks_resumed=int(n_resumed),
        )


def _simple_params(embedder) -> dict:
    """The estimator's parameters that JSON can hold, minus the runtime ones (JSON-normalised)."""
    params = {}
    get_params = getattr(embedder, "get_params", None)
    for name, value in (get_params(deep=False) if callable(get_params) else {}).items():
        if name in RUNTIME_PARAMS:
            continue
        try:
            params[name] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            continue  # objects (modules, callables) are not compared
    return params


def _atomic_write_text(path: Path, text: str):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _start_fresh(job, embedder, on_error):
    """Clear old state, fit the embedder if needed, save it and write the manifest."""
    import joblib

    if not callable(getattr(embedder, "transform", None)):
        raise TypeError(f"embedder must have a transform method, got {type(embedder).__name__}")
    if not callable(getattr(embedder, "fit", None)):
        raise TypeError(f"embedder must be a scikit-learn transformer (fit/transform), got "
                        f"{type(embedder).__name__}")
    if job.parts.exists():
        shutil.rmtree(job.parts)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    fingerprints = [embedder_fingerprint(embedder)]  # as given, and as fitted below
    if not is_fitted(embedder):
        _fit_on_first_readable_chunk(job, embedder, on_error)
        fingerprints.append(embedder_fingerprint(embedder))
    job.parts.mkdir(parents=True)
    tmp = job.parts / (_EMBEDDER_FILE + ".tmp")
    joblib.dump(embedder, tmp)
    os.replace(tmp, job.embedder_file)
    job.write_manifest({
        _MANIFEST_KEY: _MANIFEST_VERSION, "status": "running", "output": str(job.output),
        "job": job.identity(),
        "embedder": {"class": type(embedder).__name__, "params": _simple_params(embedder),
                     "fingerprints": fingerprints, "repr": repr(embedder)[:2000]},
        "chunks_done": 0, "files_done": 0, "skipped": [],
    })


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
    raise ValueError(f"none of the {len(job.paths)} files could be read as an image (first: "
                     f"{job.paths[0]!r}: {_check_image_decodes(job.paths[0])})")


def _check_names_fit(paths, suffix):
    """Refuse, before any work, a file name that the output's file column or list cannot hold."""
    for index, path in enumerate(paths):
        if suffix == ".npy" and path.splitlines() != [path]:
            reason = ("has a line break, which the one-name-per-line file list of .npy output "
                      "cannot hold: write .parquet or .csv (any UTF-8 name), or rename the file")
        elif suffix != ".npy" and not _is_utf8(path):
            reason = (f"is not UTF-8 (its bytes: {os.fsencode(path)!r}), which the file column "
                      f"of {suffix} output cannot hold: write .npy (its file list keeps the "
                      "bytes), or rename the file")
        else:
            continue
        raise UnwritableNameError(path=path, index=index, n_files=len(paths), reason=reason)


def _is_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes of a non-UTF-8 name
        return False
    return True


def _resumed_embedder(embedder_file, embedder):
    """The interrupted run's embedder, with this call's runtime parameters."""
    saved = _load_embedder(embedder_file)
    ours = embedder.get_params(deep=False) if hasattr(embedder, "get_params") else {}
    theirs = saved.get_params(deep=False) if hasattr(saved, "get_params") else {}
    runtime = {name: ours[name] for name in RUNTIME_PARAMS if name in ours and name in theirs}
    if runtime:
        saved.set_params(**runtime)
    return saved


def _load_embedder(embedder_file):
    import joblib

    return joblib.load(embedder_file)


# ----------------------------------------------------------------- the chunks
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
            bad = [(i, reason) for i in kept
                   if (reason := _check_image_decodes(paths[i])) is not None]
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
            f"{len(kept)} files it returned {out.dtype} {out.shape}")
    parts = Path(parts)
    tmp = parts / f"part-{index:06d}.tmp{os.getpid()}-{threading.get_ident()}.npz"
    np.savez(tmp, embeddings=out, rows=np.asarray(kept, dtype=np.int64),
             skipped_rows=np.asarray([i for i, _ in skipped], dtype=np.int64),
             skipped_reasons=np.asarray([r for _, r in skipped], dtype=str),
             files_fingerprint=np.asarray(files))
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
    return _embed_chunk(_local.embedder, Path(embedder_file).parent, index, start, paths,
                        on_error)


def _run_chunks(job, embedder, todo, on_error, n_jobs, verbose, manifest):
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    n_todo_files = sum(len(job.chunk(i)[1]) for i in todo)
    # what earlier runs did, from their parts (the manifest may lag a part behind)
    earlier = [_part_info(job, i) for i in sorted(set(range(job.n_chunks)) - set(todo))]
    manifest["files_done"] = len(job.paths) - n_todo_files
    manifest["skipped"] = [[job.paths[info["start"] + i], r] for info in earlier
                           for i, r in zip(info["skipped_rows"], info["skipped_reasons"])]
    bar = tqdm(total=len(job.paths), initial=len(job.paths) - n_todo_files, unit="file",
               desc="embedding", disable=not verbose, leave=False, dynamic_ncols=True)
    n_done = job.n_chunks - len(todo)
    try:
        if effective_n_jobs(n_jobs) == 1:
            results = (_embed_chunk(embedder, job.parts, i, *job.chunk(i), on_error)
                       for i in todo)
        else:
            results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(_embed_chunk_task)(job.embedder_file, i, *job.chunk(i), on_error)
                for i in todo)
        for result in results:
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


# ------------------------------------------------------------------- assembling
def _assemble(job, manifest):
    """Copy the parts, in chunk order, into the output; the completed manifest."""
    infos = [_part_info(job, i) for i in range(job.n_chunks)]
    dims = {info["shape"][1] for info in infos if info["shape"][0] > 0}
    if len(dims) > 1:
        raise ValueError(f"the parts in {str(job.parts)!r} have different widths {sorted(dims)}: "
                         "they were not made by one embedder; delete the folder and start over")
    n_rows = sum(info["shape"][0] for info in infos)
    skipped = [[job.paths[info["start"] + i], r]
               for info in infos for i, r in zip(info["skipped_rows"], info["skipped_reasons"])]
    if n_rows == 0:
        raise ValueError(f"none of the {len(job.paths)} files could be read "
                         f"(first: {skipped[0][0]!r}: {skipped[0][1]})")
    dim = dims.pop()
    dtype = np.result_type(*[info["dtype"] for info in infos if info["shape"][0] > 0])
    writer = {".npy": _write_npy, ".parquet": _write_parquet, ".csv": _write_csv}[job.format]
    tmp = job.output.with_name(job.output.name + ".partial")
    writer(tmp, job, _iter_parts(job, dtype), n_rows, dim, dtype)
    os.replace(tmp, job.output)
    manifest.update(status="complete", chunks_done=job.n_chunks, files_done=len(job.paths),
                    n_embedded=int(n_rows), embedding_dim=int(dim), skipped=skipped,
                    chunk_files={str(i): info["files"] for i, info in enumerate(infos)})
    job.write_manifest(manifest)
    shutil.rmtree(job.parts, ignore_errors=True)
    return manifest


def _part_info(job, index):
    start, _ = job.chunk(index)
    path = job.part_path(index)
    try:
        with np.load(path, allow_pickle=False) as part:
            skipped_rows, reasons = part["skipped_rows"], part["skipped_reasons"]
            files = str(part["files_fingerprint"]) if "files_fingerprint" in part else None
            # the shape and dtype of the embeddings without loading them
            with part.zip.open("embeddings.npy") as f:
                fmt = np.lib.format
                version = fmt.read_magic(f)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"part {str(path)!r} of chunk {index} is missing: resume the run "
                                "to embed it") from None
    return {"start": start, "shape": shape, "dtype": dtype, "files": files,
            "skipped_rows": skipped_rows.tolist(), "skipped_reasons": reasons.tolist()}


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


def _write_npy(tmp, job, parts, n_rows, dim, dtype):
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": (int(n_rows), int(dim))}
    files_tmp = job.files_list.with_name(job.files_list.name + ".partial")
    with open(tmp, "wb") as f, open(files_tmp, "w", encoding="utf-8",
                                    errors="surrogateescape") as listing:
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


def check_writer_available(suffix):
    """Raise ImportError naming the package a format needs, before any work is done."""
    from importlib.util import find_spec

    if suffix in (".csv",) and find_spec("pandas") is None:
        raise ImportError("writing .csv needs pandas: pip install pandas (or use .npy)")
    if suffix == ".parquet" and find_spec("pyarrow") is None:
        raise ImportError("writing .parquet needs pyarrow: pip install pyarrow (or use .npy)")
