"""The job of embed_files (paths, output, chunks), its manifest, and what makes it the same job."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

from .._fingerprint import fingerprint, run_differences, run_fingerprint, run_identity
from .._warnings import warn
from ..exceptions import (
    OutputExistsError,
    ResumeMismatchError,
    UnreadableImageError,
    UnwritableNameError,
)
from ._chunks import _part_files_fingerprint
from ._writers import FORMATS, check_writer_available

_MANIFEST_KEY = "repens_embed_files"
# 2: paths and embedder by fingerprint, per-chunk file identity; 3: embedder by run_identity
_MANIFEST_VERSION = 3
_PART_NAME = re.compile(r"part-(\d{6,})\.npz")  # a finished part; anything else is not one
_EMBEDDER_FILE = "embedder.joblib"


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

    # ---------------------------------------------------------------- layout
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
        return start, self.paths[start : start + self.chunk_size]

    def part_path(self, index) -> Path:
        return self.parts / f"part-{index:06d}.npz"

    # ---------------------------------------------------------- state on disk
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
        for path in (
            self.output.with_name(self.output.name + ".partial"),
            self.files_list.with_name(self.files_list.name + ".partial"),
        ):
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
            warn(
                f"the files of {len(changed)} of the {len(done)} chunks done changed (size or "
                f"modification time) since they were embedded, the first "
                f"{self.paths[self.chunk(changed[0])[0]]!r}: embedding those chunks again",
                UserWarning,
            )
        return set(changed)

    # --------------------------------------------------------------- manifest
    def read_manifest(self):
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and _MANIFEST_KEY in manifest else None

    def write_manifest(self, manifest):
        _atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1) + "\n")

    def new_manifest(self, embedder, fingerprints):
        """The manifest of a fresh run of ``embedder`` (``fingerprints``: as given, as fitted)."""
        identity = _embedder_identity(embedder)
        plain = {name: entry["value"] for name, entry in identity.items() if "value" in entry}
        return {
            _MANIFEST_KEY: _MANIFEST_VERSION,
            "status": "running",
            "output": str(self.output),
            "job": self.identity(),
            "embedder": {
                "class": type(embedder).__name__,
                "params": plain,  # for the reader
                "identity": identity,
                "fingerprints": fingerprints,
                "repr": repr(embedder)[:2000],
            },
            "chunks_done": 0,
            "files_done": 0,
            "skipped": [],
        }

    def identity(self):
        return {
            "format": self.format,
            "n_files": len(self.paths),
            "paths_fingerprint": self.paths_fingerprint,
            "chunk_size": self.chunk_size,
        }

    # ------------------------------------------------------------ same job?
    def check_output_is_ours(self, manifest, embedder):
        """Raise :class:`OutputExistsError` when ``output`` exists and is not this job's."""
        if not self.output.exists():
            return
        if manifest is None:
            raise OutputExistsError(
                output=str(self.output),
                what=f"has no manifest {str(self.manifest_path)!r}, "
                "so it is not known to be this job's output",
            )
        try:
            self.check_same_job(manifest, embedder)
        except ResumeMismatchError as exc:
            raise OutputExistsError(
                output=str(self.output),
                what=f"holds another job's embeddings: {exc.fields['what']}",
            ) from None

    def is_same_job(self, manifest, embedder):
        try:
            self.check_same_job(manifest, embedder)
        except ResumeMismatchError:
            return False  # a complete output of another job: it is simply redone
        return True

    def check_same_job(self, manifest, embedder):
        """Raise :class:`ResumeMismatchError` saying what differs from the job in ``manifest``."""
        what = _job_difference(manifest, self.identity()) or _embedder_difference(
            manifest.get("embedder", {}), embedder
        )
        if what:
            raise ResumeMismatchError(
                what=what,
                output=str(self.output),
                parts=str(self.parts),
                manifest=str(self.manifest_path),
            )

    def unreadable(self, exc):
        return UnreadableImageError(
            path=exc.path,
            index=exc.index,
            reason=exc.reason,
            n_files=len(self.paths),
            n_done=len(self.done_chunks()),
            n_chunks=self.n_chunks,
            parts=str(self.parts),
        )


def _job_difference(manifest, new):
    """What differs between the recorded job and ``new`` (``""``: nothing)."""
    old = manifest.get("job", {})
    if manifest.get(_MANIFEST_KEY) != _MANIFEST_VERSION:
        return "its manifest was written by another version of repens_sklearn"
    if old.get("n_files") != new["n_files"]:
        return f"it embedded {old.get('n_files')} files, this call gives {new['n_files']}"
    if old.get("paths_fingerprint") != new["paths_fingerprint"]:
        return f"the {new['n_files']} paths are not the same files in the same order"
    if old.get("chunk_size") != new["chunk_size"]:  # {chunk_size}: rendered as the caller's word
        return f"it used {{chunk_size}}={old.get('chunk_size')}, this call {new['chunk_size']}"
    if old.get("format") != new["format"]:  # pragma: no cover - the name fixes the suffix
        return f"it wrote {old.get('format')}"
    return ""


def _embedder_difference(saved, embedder):
    """What differs between the recorded embedder and ``embedder`` (``""``: nothing)."""
    kind = type(embedder).__name__
    if saved.get("class") != kind:
        return f"it used a {saved.get('class')}, this call a {kind}"
    differences = run_differences(saved.get("identity", {}), _embedder_identity(embedder))
    if differences:  # braces in values are not option words
        return f"its {kind} has {differences}".replace("{", "{{").replace("}", "}}")
    if str(run_fingerprint(embedder)) not in saved.get("fingerprints", []):
        return f"its {kind} differs from this call's in fitted state"
    return ""


def _embedder_identity(embedder):
    return run_identity(embedder) if hasattr(embedder, "get_params") else {}


def _atomic_write_text(path: Path, text: str):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_names_fit(paths, suffix):
    """Refuse, before any work, a file name that the output's file column or list cannot hold."""
    for index, path in enumerate(paths):
        if suffix == ".npy" and path.splitlines() != [path]:
            reason = (
                "has a line break, which the one-name-per-line file list of .npy output "
                "cannot hold: write .parquet or .csv (any UTF-8 name), or rename the file"
            )
        elif suffix != ".npy" and not _is_utf8(path):
            reason = (
                f"is not UTF-8 (its bytes: {os.fsencode(path)!r}), which the file column "
                f"of {suffix} output cannot hold: write .npy (its file list keeps the "
                "bytes), or rename the file"
            )
        else:
            continue
        raise UnwritableNameError(path=path, index=index, n_files=len(paths), reason=reason)


def _is_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes of a non-UTF-8 name
        return False
    return True
