"""The ``repens`` command: ``plugins``, ``embed``, ``rank`` and ``demo``.

Every failure the user can cause (bad path, unreadable image, unknown name)
ends in one line on stderr and exit status 2, never a traceback; messages name
the command's options (``--data-home``, ``repens plugins``), not the library's.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
from pathlib import Path

from . import _plugins
from ._images import IMAGE_EXTENSIONS, check_decodes, default_input_shape, iter_image_files
from ._plugins import matches  # noqa: F401 - its old home was here
from .datasets import load_image_folder
from .exceptions import ImageDecodeError, ImageFolderError, UnknownNameError

# How the command calls the options that library errors mention (see _embed_files.LIBRARY_WORDS).
CLI_WORDS = {
    "resume": "--resume",
    "skip": "--skip-unreadable",
    "chunk_size": "--chunk-size",
    "overwrite": "--overwrite",
    "where": "file {number} of {n_files}",
}
INLINE_NAMES = 12  # `repens plugins` shows a plugin's names inline up to this many


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _note(command, message):
    print(f"repens {command}: note: {message}", file=sys.stderr)


# ------------------------------------------------------------------ repens plugins
_SECTIONS = [
    ("Backbones", "backbone", _plugins.list_backbones),
    ("Augmentation policies", "augmentation policy", _plugins.list_augmentation_policies),
    ("Aggregations", "aggregation", _plugins.list_aggregations),
]


def _cmd_plugins(args) -> int:
    if args.filter or args.all:
        return _list_names(args.filter)
    sections = []
    for title, kind, lister in _SECTIONS:
        by_plugin = {}
        for name in lister():
            by_plugin.setdefault(_plugins.plugin_of(kind, name), []).append(name)
        sections.append((title, by_plugin))
    width = max((len(p) + 2 for _, groups in sections for p in groups), default=0)
    for title, by_plugin in sections:
        print(f"{title} ({sum(len(m) for m in by_plugin.values())}):")
        for plugin, members in by_plugin.items():
            print(f"  {'[' + plugin + ']':<{width}}  {len(members):>5}  {_shown(members)}")
    print(
        "\nList names with: repens plugins --filter PATTERN (e.g. 'resnet*', which also "
        "matches timm/resnet*), or all of them with: repens plugins --all"
    )
    return 0


def _shown(members):
    """A plugin's names inline when they are few, else the command that lists them."""
    if len(members) <= INLINE_NAMES:
        return ", ".join(members)
    prefix = os.path.commonprefix(members)
    if "/" in prefix:
        return f"list them with: repens plugins --filter '{prefix.split('/')[0]}/*'"
    return "list them with: repens plugins --all"


def _list_names(patterns):
    total = 0
    for title, kind, lister in _SECTIONS:
        names = lister(patterns)  # the library's filter: repens_sklearn._plugins.matches
        total += len(names)
        print(f"{title} ({len(names)}):")
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"  {name:<{width}}  [{_plugins.plugin_of(kind, name)}]")
    if patterns and total == 0:
        shown = " or ".join(repr(p) for p in patterns)
        print(
            f"\nno registered name matches {shown}; patterns are fnmatch globs "
            "(e.g. 'resnet*'); repens plugins --all lists every name"
        )
    return 0


def _check_name(kind, name, option):
    """The registered object ``name``; unknown, it is said in the command's words."""
    try:
        return _plugins._lookup(kind, name)
    except UnknownNameError as exc:
        hint = (
            f" Closest registered names: {', '.join(exc.suggestions)}." if exc.suggestions else ""
        )
        stem = name.split("/")[-1].rstrip("0123456789_") or name
        raise CLIError(
            f"Unknown {kind} {name!r} ({option}).{hint} See them with: repens "
            f"plugins --filter '{stem}*' (or --all for all {exc.n_registered})"
        ) from None


# -------------------------------------------------------------------- embedding
def _collect_images(paths) -> list[str]:
    """Expand files and folders (recursively, sorted, hidden files left out) into image files."""
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list(iter_image_files(path))
            if not found:
                raise CLIError(
                    f"folder {raw!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                    "hidden files and folders are left out"
                )
            files += found
        elif path.is_file():
            files.append(str(path))
        else:
            raise CLIError(f"path {raw!r} does not exist")
    return files


def _parse_shape(text):
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--input-shape must be C,H,W (e.g. 3,224,224), got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1 or shape[0] not in (1, 3, 4):
        raise CLIError(
            f"--input-shape must be C,H,W with C in 1, 3, 4 (e.g. 3,224,224), got {text!r}"
        )
    return shape


def _input_shape(args, files, skip_unreadable):
    """--input-shape, else the size most images have (from their headers, not their pixels).

    A backbone with a ``pretrained_cfg`` reads files at its own resolution whatever
    this says; the channel count also sets a fresh backbone's input channels.
    """
    shape = _parse_shape(args.input_shape)
    if shape is not None:
        return shape
    try:
        return default_input_shape(files, on_error="skip" if skip_unreadable else "raise")
    except ImageDecodeError as exc:
        if skip_unreadable:  # no file's header could be read
            raise CLIError(
                f"none of the {len(files)} files is a readable image (first: {exc})"
            ) from None
        raise CLIError(f"{exc} (--skip-unreadable leaves such files out)") from None


def _weights_default(factory):
    """True / False when the factory's signature says it loads weights by default; else None."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if "pretrained" in params:
        return bool(params["pretrained"].default)
    if "weights" in params:
        return params["weights"].default is not None
    return None


def _accepts(factory, name):
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _embedder(
    backbone,
    weights,
    args,
    input_shape,
    policy="identity",
    n_views=0,
    aggregation="mean",
    command="embed",
):
    from .embedders import MeanTTAEmbedder

    factory = _check_name(
        "backbone", backbone, "--backbone" if command == "embed" else "--candidate"
    )
    if weights is not None:
        if not os.path.isfile(weights):
            raise CLIError(f"weights file {weights!r} does not exist")
        if not _accepts(factory, "weights"):
            raise CLIError(f"backbone {backbone!r} takes no weights file (--weights)")
    elif _weights_default(factory) is False:
        _note(
            command,
            f"backbone {backbone!r} has no pretrained weights of its own and no "
            f"--weights was given: using random weights (seeded by --seed "
            f"{args.seed})",
        )
    return MeanTTAEmbedder(
        backbone=backbone,
        backbone_params={"weights": weights} if weights else None,
        policy=policy,
        n_augmentations=n_views,
        aggregation=aggregation,
        input_shape=input_shape,
        img_size=args.img_size,
        preprocess=not args.no_preprocess,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        random_state=args.seed,
    )


def _check_output(text):
    from ._embed_files import FORMATS, check_writer_available

    out = Path(text)
    if out.suffix.lower() not in FORMATS:
        raise CLIError(f"-o/--output must end in .npy, .csv or .parquet, got {text!r}")
    check_writer_available(out.suffix.lower())  # before any image is embedded, not after
    return out


def _cmd_embed(args) -> int:
    from ._embed_files import EmbedFilesError, embed_files

    files = _collect_images(args.paths)
    out = _check_output(args.output)
    if (args.policy is None) != (args.n_augmentations == 0):
        raise CLIError(
            "--policy and -S/--n-augmentations go together: give both (e.g. "
            "--policy crop_flip -S 10) or neither (the plain embedding)"
        )
    if args.policy is not None:
        _check_name("augmentation policy", args.policy, "--policy")
    _check_name("aggregation", args.aggregation, "--aggregation")
    shape = _input_shape(args, files, args.skip_unreadable)
    embedder = _embedder(
        args.backbone,
        args.weights,
        args,
        shape,
        args.policy or "identity",
        args.n_augmentations,
        args.aggregation,
    )
    run = functools.partial(
        embed_files,
        embedder,
        files,
        out,
        chunk_size=args.chunk_size,
        resume=args.resume,
        overwrite=args.overwrite,
        on_error="skip" if args.skip_unreadable else "raise",
        verbose=not args.quiet,
    )
    try:
        report = _on_dask(args.dask_scheduler, run) if args.dask_scheduler else run()
    except EmbedFilesError as exc:
        raise CLIError(exc.render(CLI_WORDS)) from exc
    except KeyboardInterrupt:
        parts = out.with_name(out.name + ".parts")
        if parts.is_dir():
            print(
                f"repens embed: the chunks done are kept in {parts}; run the same command "
                "with --resume to continue",
                file=sys.stderr,
            )
        raise
    if report.n_chunks_resumed == report.n_chunks and args.resume:
        print(
            f"{out} is already complete ({report.n_embedded} x {report.embedding_dim}): "
            "nothing to do"
        )
    else:
        resumed = (
            f", {report.n_chunks_resumed} of {report.n_chunks} chunks from the interrupted run"
            if report.n_chunks_resumed
            else ""
        )
        listing = (
            f" (files listed in {out.with_suffix('.files.txt')})"
            if out.suffix.lower() == ".npy"
            else ""
        )
        print(
            f"wrote {report.n_embedded} x {report.embedding_dim} embeddings to "
            f"{out}{listing}{resumed}"
        )
    if report.skipped:
        print(f"repens embed: {report.skipped_summary()}", file=sys.stderr)
    return 0


def _on_dask(address, run):
    """``run(n_jobs=-1)`` with joblib's Dask backend on the scheduler at ``address``."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise CLIError(
            "--dask-scheduler needs Dask: pip install 'repens-sklearn[dask]' (dask[distributed])"
        ) from None
    from joblib import parallel_config

    try:
        client = Client(address, timeout="30s")
    except (OSError, ValueError) as exc:
        raise CLIError(f"--dask-scheduler {address!r}: cannot connect: {exc}") from None
    with client, parallel_config(backend="dask"):
        return run(n_jobs=-1)


# ------------------------------------------------------------------- ranking
def _parse_candidate(text):
    name, _, weights = text.partition(":")
    if not name:
        raise CLIError(f"--candidate must be NAME or NAME:WEIGHTS, got {text!r}")
    return name, (weights or None)


def _load_labelled_folder(folder, skip_unreadable):
    on_error = "skip" if skip_unreadable else "raise"
    try:
        data = load_image_folder(folder, on_error=on_error)
    except FileNotFoundError:
        raise CLIError(f"folder {folder!r} does not exist") from None
    except ImageFolderError as exc:
        raise CLIError(exc.describe("--skip-unreadable")) from None
    skipped = list(data.skipped)
    if skip_unreadable:  # headers were checked; pixels too, as the embedding would
        keep = []
        for i, path in enumerate(data.paths):
            reason = check_decodes(path)
            if reason is None:
                keep.append(i)
            else:
                skipped.append((path, reason))
        data.paths = [data.paths[i] for i in keep]
        data.target = data.target[keep]
    present = sorted(set(data.target.tolist()))
    if len(present) < 2:
        only = data.target_names[present[0]] if present else None
        raise CLIError(
            f"folder {folder!r} has one class, {only!r}: repens rank needs at "
            "least two sub-folders, one per class, of labelled images"
        )
    return data, skipped


def _cmd_rank(args) -> int:
    from .selection import TransferabilitySelector

    data, skipped = _load_labelled_folder(args.folder, args.skip_unreadable)
    if args.n_neighbors >= len(data.paths):
        raise CLIError(
            f"-k/--n-neighbors must be between 1 and {len(data.paths) - 1} (the "
            f"images but one), got {args.n_neighbors}"
        )
    shape = _parse_shape(args.input_shape) or data.input_shape
    candidates = []
    for text in args.candidate:
        name, weights = _parse_candidate(text)
        label = text if weights is None else f"{name}:{Path(weights).name}"
        embedder = _embedder(name, weights, args, shape, command="rank")
        candidates.append((label, embedder.set_params(verbose=not args.quiet)))
    selector = TransferabilitySelector(
        candidates, n_neighbors=args.n_neighbors, n_select=len(candidates), verbose=not args.quiet
    )
    try:
        selector.fit(data.paths, data.target)
    except ImageDecodeError as exc:
        raise CLIError(f"{exc} (--skip-unreadable leaves such files out)") from None
    print(
        f"leave-one-out {args.n_neighbors}-NN accuracy on {len(data.paths)} images, "
        f"{len(data.target_names)} classes:"
    )
    width = max(len(name) for name in selector.ranking_)
    for rank, name in enumerate(selector.ranking_, 1):
        print(f"{rank:>3}. {name:<{width}}  {selector.scores_[name]:.4f}")
    if skipped:
        names = ", ".join(p for p, _ in skipped[:3])
        print(
            f"repens rank: {len(skipped)} unreadable file(s) skipped: {names}"
            f"{', ...' if len(skipped) > 3 else ''}",
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from ._demo import run_demo
    from .datasets import FASHION_MNIST_HOME, _fashion_mnist_missing

    if args.dataset == "fashion-mnist":
        missing = _fashion_mnist_missing(args.data_home)
        if missing:
            home = args.data_home or FASHION_MNIST_HOME
            raise CLIError(
                f"Fashion-MNIST file {missing[0]}[.gz] not found in {home!r}: install "
                "the data with `sudo apt-get install dataset-fashion-mnist` "
                "(Debian/Ubuntu), or point --data-home at a folder holding the IDX "
                "files"
            )
    return run_demo(
        dataset=args.dataset,
        quick=args.quick,
        output=args.output,
        data_home=args.data_home,
        threads=args.threads or None,
    )


# ------------------------------------------------------------------- parser
def _add_runtime_options(parser):
    parser.add_argument(
        "--input-shape",
        default=None,
        metavar="C,H,W",
        help="channels,height,width every image is resized to (default: the "
        "size most of the images have, RGB unless all are grey; a "
        "backbone with a pretrained_cfg uses its own resolution)",
    )
    parser.add_argument(
        "--img-size",
        type=_count(1),
        default=None,
        metavar="PX",
        help="feed a pretrained backbone at PX x PX instead of its own "
        "resolution (e.g. 96 on a CPU)",
    )
    parser.add_argument(
        "--no-preprocess",
        action="store_true",
        help="feed a pretrained backbone the pixels as they are (no resize to "
        "its resolution, no normalization)",
    )
    parser.add_argument(
        "--batch-size",
        type=_count(1),
        default=64,
        metavar="N",
        help="images per forward pass (views with -S; default: %(default)s)",
    )
    parser.add_argument(
        "--num-workers",
        type=_count(0),
        default=_default_workers(),
        metavar="N",
        help="processes decoding image files while the model runs (0: decode "
        "in the main process; default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the random initial weights of a backbone used without "
        "--weights and the augmentation draws of -S (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out image files that cannot be decoded (reported at the "
        "end) instead of stopping at the first",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _count(minimum):
    """An argparse type: an int of at least ``minimum``, said in the option's terms."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _default_workers():
    """Parallel decoding by default, leaving a core to the model (at most 4 processes)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="repens", description="Ensembles of neural-network representations for scikit-learn."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = (
        "List the registered backbones, augmentation policies and aggregations: by "
        "default how many each plugin gives; the names with --filter or --all."
    )
    plugins = sub.add_parser(
        "plugins", help="list registered backbones, policies and aggregations", description=text
    )
    plugins.add_argument(
        "--filter",
        action="append",
        default=None,
        metavar="PATTERN",
        help="list the names matching an fnmatch pattern, case-insensitively; "
        "'resnet*' also matches timm/resnet* (repeatable)",
    )
    plugins.add_argument("--all", action="store_true", help="list every name")
    plugins.set_defaults(func=_cmd_plugins)

    text = (
        "Embed image files (and folders, recursively) with a backbone into .parquet, "
        ".npy or .csv. Files are embedded chunk by chunk, so memory stays flat; an "
        "interrupted run continues with --resume."
    )
    embed = sub.add_parser(
        "embed", help="embed images (files or folders) with a backbone", description=text
    )
    embed.add_argument(
        "paths",
        nargs="+",
        help="image files or folders (searched recursively; hidden files and folders left out)",
    )
    embed.add_argument(
        "--backbone", required=True, help="registered backbone name (see: repens plugins)"
    )
    embed.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="local weights file for the backbone (default: its own weights, "
        "random for backbones that have none)",
    )
    embed.add_argument(
        "--policy", default=None, help="test-time augmentation policy, with -S (default: none)"
    )
    embed.add_argument(
        "-S",
        "--n-augmentations",
        type=_count(0),
        default=0,
        metavar="S",
        help="number of augmented views to average (0: plain embedding)",
    )
    embed.add_argument(
        "--aggregation",
        default="mean",
        help="how the views are combined: mean, gem, median, max, ... (default: %(default)s)",
    )
    embed.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="out.parquet (columns file, emb0, ...), out.npy (+ out.files.txt) or out.csv",
    )
    embed.add_argument(
        "--chunk-size",
        type=_count(1),
        default=1024,
        metavar="N",
        help="files embedded and saved at a time: memory and the work lost to "
        "an interruption grow with it (default: %(default)s)",
    )
    embed.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="ADDRESS",
        help="embed the chunks on the workers of a running Dask cluster (e.g. "
        "tcp://host:8786); files and output must be on a filesystem they "
        "share (needs pip install 'repens-sklearn[dask]')",
    )
    embed.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run of this output (same files, options "
        "and --chunk-size); the result is that of an uninterrupted run",
    )
    embed.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output that another job (other files or "
        "options) or another program wrote; without it that is an error",
    )
    _add_runtime_options(embed)
    embed.set_defaults(func=_cmd_embed)

    text = (
        "Rank backbones by leave-one-out k-nearest-neighbour accuracy of their embeddings "
        "on a labelled image folder (one sub-folder per class), best first."
    )
    rank = sub.add_parser(
        "rank", help="rank backbones by leave-one-out kNN on a labelled folder", description=text
    )
    rank.add_argument("folder", help="folder with one sub-folder of images per class")
    rank.add_argument(
        "--candidate",
        action="append",
        required=True,
        metavar="NAME[:WEIGHTS]",
        help="a backbone name, optionally with a weights file (repeat for each candidate)",
    )
    rank.add_argument(
        "-k",
        "--n-neighbors",
        type=_count(1),
        default=1,
        metavar="K",
        help="neighbours that vote for each image's class (default: %(default)s)",
    )
    _add_runtime_options(rank)
    rank.set_defaults(func=_cmd_rank)

    text = (
        "Run the five methods end to end on Fashion-MNIST (or digits) and write a report: "
        "findings, table and figures. A line per stage; progress bars on a terminal."
    )
    demo = sub.add_parser(
        "demo", help="run all five methods end to end and write a report", description=text
    )
    demo.add_argument(
        "--dataset",
        choices=("auto", "digits", "fashion-mnist"),
        default="auto",
        help="auto: Fashion-MNIST when its files are there (where the papers' "
        "effects show), else digits with a hint; digits: scikit-learn's 8x8 "
        "digits; fashion-mnist: the Debian package dataset-fashion-mnist or "
        "--data-home (default: %(default)s)",
    )
    demo.add_argument("--quick", action="store_true", help="smoke run (under a minute)")
    demo.add_argument(
        "--output", default=None, metavar="FOLDER", help="report folder (default: ./repens_report)"
    )
    demo.add_argument(
        "--data-home",
        default=None,
        metavar="FOLDER",
        help="folder of the Fashion-MNIST IDX files (default: /usr/share/datasets/fashion-mnist)",
    )
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch and BLAS threads for the run; the demo's networks are small "
        "and one thread avoids oversubscribing a busy machine; 0 keeps the "
        "libraries' defaults (default: %(default)s)",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"repens {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `repens plugins | head`: the reader has gone, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # one line for the user, never a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"repens {args.command}: error: {message}", file=sys.stderr)
        if os.environ.get("REPENS_DEBUG"):
            raise
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
