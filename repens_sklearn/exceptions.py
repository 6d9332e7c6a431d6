"""The library's public exceptions and warnings, in one module (as ``sklearn.exceptions``).

Code that handles a library error (the ``repens`` CLI included) branches on these types,
never on the text of a message.
"""

from __future__ import annotations

__all__ = [
    "CandidateDroppedWarning",
    "CollapseWarning",
    "DuplicateNameWarning",
    "EmbedFilesError",
    "ImageDecodeError",
    "ImageFolderError",
    "InputRangeWarning",
    "InterruptedRunError",
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "OutputExistsError",
    "PluginLoadWarning",
    "ResumeMismatchError",
    "UnknownNameError",
    "UnreadableImageError",
    "UnwritableNameError",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (``EnSiamPretrainer``, ``FineTuneClassifier``).

    The message names where it happened (epoch / step) and the learning rate, so the
    user knows which setting diverged.
    """


class CollapseWarning(UserWarning):
    """The std of the L2-normalized projections fell towards 0 (SimSiam's collapse)."""


class NonFiniteOutputError(FloatingPointError):
    """A fitted model's outputs are NaN or infinite (e.g. ``FineTuneClassifier`` whose
    weights or inputs are so large that its logits overflow).

    The message names the model and how many samples are affected.
    """


class CandidateDroppedWarning(UserWarning):
    """``GreedyEnsembleClassifier`` left a candidate out: its training diverged
    (``NonFiniteLossError`` / ``NonFiniteOutputError``) or its validation
    probabilities are not finite probabilities. The message names the candidate and why.
    """


class ImageDecodeError(ValueError):
    """An image (a file or a PIL image) cannot be decoded as a viewer would show it.

    The file is unreadable, or its pixels have no scale we can tell (a float or
    32-bit integer grey image with negative, non-finite or too large values).
    The message names the image (its path or its index in X) and why.
    """


class InputRangeWarning(UserWarning):
    """Values outside the range an input is read in: a float image array outside [0, 1]
    fed to a pretrained backbone (whose mean / std apply to [0, 1] pixels).
    The message names the range found and the backbone.
    """


class ImageFolderError(ImageDecodeError):
    """``load_image_folder(on_error="raise")`` met a file it cannot read.

    Attributes
    ----------
    reason : str
        The decoder's message, naming the file.
    folder : str
        The image folder.
    """

    def __init__(self, reason, folder):
        self.reason, self.folder = reason, folder
        super().__init__(self.describe("on_error='skip'"))

    def __reduce__(self):
        return type(self), (self.reason, self.folder)

    def describe(self, skip_option):
        """The message, naming the option that leaves such files out as ``skip_option``."""
        return (
            f"{self.reason} (in image folder {self.folder!r}; {skip_option} leaves such files out)"
        )


class UnknownNameError(ValueError):
    """A name that no plugin registered (backbone, augmentation policy or aggregation).

    Attributes
    ----------
    kind : str
        ``"backbone"``, ``"augmentation policy"`` or ``"aggregation"``.
    name : str
        The name asked for.
    suggestions : list of str
        Registered names close to it, closest first (the registry's ``suggest``).
    n_registered : int
        How many names of this kind are registered.
    lister : str
        The function that lists them (``"list_backbones"``, ...).
    """

    def __init__(self, kind, name, suggestions, n_registered, lister):
        self.kind, self.name, self.lister = kind, name, lister
        self.suggestions, self.n_registered = list(suggestions), n_registered
        hint = f" Closest registered names: {self.suggestions}." if self.suggestions else ""
        super().__init__(
            f"Unknown {kind} {name!r}.{hint} Use repens_sklearn.{lister}() "
            f"to see all {n_registered}."
        )

    def __reduce__(self):
        return type(self), (self.kind, self.name, self.suggestions, self.n_registered, self.lister)


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded (or a hook of it raised, or is misspelt) and was skipped."""


class DuplicateNameWarning(UserWarning):
    """Two plugins registered the same name; the later one wins."""


# --------------------------------------------------------------- embed_files
class EmbedFilesError(Exception):
    """An error of :func:`~repens_sklearn.embed_files` whose hint names options.

    The message is ``template`` filled with the error's ``fields`` and with the
    names of the options it mentions: :attr:`library_words` in the library,
    other words through :meth:`render` (the ``repens`` command's ``--resume``).

    Attributes
    ----------
    fields : dict
        What the message says (``output``, ``parts``, ``path``, ``index``, ...).
    """

    template = "{message}"
    # How the library calls the options it names; a word may use the error's fields
    # ("where" places an unreadable file in the list).
    library_words = {
        "resume": "resume=True",
        "skip": "on_error='skip'",
        "chunk_size": "chunk_size",
        "overwrite": "overwrite=True",
        "where": "paths[{index}]",
    }

    def __init__(self, **fields):
        self.fields = fields
        super().__init__(self.render(self.library_words))

    def __reduce__(self):  # picklable although __init__ takes keywords only
        return _rebuild_error, (type(self), self.fields)

    def render(self, words) -> str:
        """The message with the options called by ``words`` (see :attr:`library_words`)."""
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

    template = (
        "cannot read image {path!r} ({where}): {reason}. The {n_done} of "
        "{n_chunks} chunks done are kept in {parts!r}: fix or remove the file, or pass "
        "{skip} with {resume} to leave it out and continue"
    )


class InterruptedRunError(EmbedFilesError, FileExistsError):
    """An interrupted run is on disk and ``resume=False``."""

    template = (
        "{parts!r} holds an interrupted run of this output ({n_done} of {n_chunks} "
        "chunks done): pass {resume} to continue it, or delete that folder to start over"
    )


class ResumeMismatchError(EmbedFilesError, ValueError):
    """``resume=True`` but the job differs from the interrupted one."""

    template = (
        "cannot resume {output!r}: {what}. Pass what the interrupted run was given, "
        "or delete {parts!r} and {manifest!r} to start over"
    )


class UnwritableNameError(EmbedFilesError, ValueError):
    """A file name the output format cannot hold; refused before any work is done."""

    template = "file name {path!r} ({where}) {reason}"


class OutputExistsError(EmbedFilesError, FileExistsError):
    """The output exists and is not this job's: it is only replaced when asked to."""

    template = (
        "{output!r} already exists and {what}: pass {overwrite} to replace it, or "
        "choose another output"
    )
