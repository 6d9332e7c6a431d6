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

One concern per module:

- ``_embed``: :func:`embed_files` itself (start, resume, run, assemble) and its report;
- ``_job``: the job (paths, output, chunks) and its manifest, what makes a run the same job;
- ``_chunks``: embedding one chunk (on a joblib worker too) and reading parts back;
- ``_writers``: the output formats and the assembly of parts into one file.

Its errors live in :mod:`repens_sklearn.exceptions` (:class:`EmbedFilesError` and
subclasses); what identifies a run, in :mod:`repens_sklearn._fingerprint`.
"""

from .._fingerprint import RUNTIME_PARAMS
from .._fingerprint import run_fingerprint as embedder_fingerprint
from ..exceptions import (
    EmbedFilesError,
    InterruptedRunError,
    OutputExistsError,
    ResumeMismatchError,
    UnreadableImageError,
    UnwritableNameError,
)
from ._embed import EmbedReport, embed_files
from ._writers import FORMATS, check_writer_available

LIBRARY_WORDS = EmbedFilesError.library_words  # how the library calls the options it names

__all__ = [
    "FORMATS",
    "LIBRARY_WORDS",
    "RUNTIME_PARAMS",
    "EmbedFilesError",
    "EmbedReport",
    "InterruptedRunError",
    "OutputExistsError",
    "ResumeMismatchError",
    "UnreadableImageError",
    "UnwritableNameError",
    "check_writer_available",
    "embed_files",
    "embedder_fingerprint",
]
