"""The ``repens`` command: ``plugins``, ``embed``, ``rank`` and ``demo``.

Every failure the user can cause (bad path, unreadable image, unknown name)
ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import _plugins
from .datasets import IMAGE_EXTENSIONS, load_image_folder


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_plugins(args) -> int:
    sections = [
        ("Backbones", "backbone", _plugins.list_backbones),
        ("Augmentation policies", "augmentation policy", _plugins.list_augmentation_policies),
        ("Aggregations", "aggregation", _plugins.list_aggregations),
    ]
    for title, kind, lister in sections:
        names = lister(args.filter)
        print(f"{title} ({len(names)}):")
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"  {name:<{width}}  [{_plugins.plugin_of(kind, name)}]")
    return 0


def _collect_images(paths) -> list[str]:
    """Expand files and folders (recursively, sorted) into image file paths."""
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise CLIError(f"folder {raw!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
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
    if len(shape) != 3:
        raise CLIError(f"--input-shape must be C,H,W (e.g. 3,224,224), got {text!r}")
    return shape


def _embedder(backbone, weights, args, policy="identity", n_views=0, aggregation="mean"):
    from .embedders import MeanTTAEmbedder

    if weights is not None and not os.path.isfile(weights):
        raise CLIError(f"weights file {weights!r} does not exist")
    _plugins._lookup("backbone", backbone)  # unknown names fail before any image is read
    return MeanTTAEmbedder(
        backbone=backbone,
        backbone_params={"weights": weights} if weights else None,
        policy=policy,
        n_augmentations=n_views,
        aggregation=aggregation,
        input_shape=_parse_shape(args.input_shape),
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.seed,
        verbose=True,
    )


def _cmd_embed(args) -> int:
    files = _collect_images(args.paths)
    out = Path(args.output)
    if out.suffix not in (".npy", ".csv", ".parquet"):
        raise CLIError(f"-o/--output must end in .npy, .csv or .parquet, got {args.output!r}")
    _check_writer_available(out)  # before any image is embedded, not after
    if (args.policy is None) != (args.n_augmentations == 0):
        raise CLIError("--policy and -S/--n-augmentations go together: give both (e.g. "
                       "--policy crop_flip -S 10) or neither (the plain embedding)")
    embedder = _embedder(args.backbone, args.weights, args, args.policy or "identity",
                         args.n_augmentations, args.aggregation)
    embeddings = embedder.fit_transform(files)
    _write_embeddings(out, files, embeddings)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
    return 0


def _check_writer_available(out: Path):
    from importlib.util import find_spec

    if out.suffix in (".csv", ".parquet") and find_spec("pandas") is None:
        raise CLIError(f"writing {out.suffix} needs pandas: pip install pandas (or use .npy)")
    if out.suffix == ".parquet" and not (find_spec("pyarrow") or find_spec("fastparquet")):
        raise CLIError("writing .parquet needs pyarrow: pip install pyarrow (or use .npy / .csv)")


def _write_embeddings(out: Path, files, embeddings):
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        import numpy as np

        np.save(out, embeddings)
        out.with_suffix(".files.txt").write_text("\n".join(files) + "\n")
        return
    import pandas as pd

    frame = pd.DataFrame(embeddings, columns=[f"emb{i}" for i in range(embeddings.shape[1])])
    frame.insert(0, "file", files)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)


def _parse_candidate(text):
    name, _, weights = text.partition(":")
    if not name:
        raise CLIError(f"--candidate must be NAME or NAME:WEIGHTS, got {text!r}")
    return name, (weights or None)


def _cmd_rank(args) -> int:
    from .selection import KNNModelSelector

    folder = load_image_folder(args.folder)
    candidates = []
    for text in args.candidate:
        name, weights = _parse_candidate(text)
        label = text if weights is None else f"{name}:{Path(weights).name}"
        candidates.append((label, _embedder(name, weights, args)))
    selector = KNNModelSelector(candidates, n_neighbors=args.n_neighbors,
                                n_select=len(candidates), verbose=True)
    selector.fit(folder.paths, folder.target)
    print(f"leave-one-out {args.n_neighbors}-NN accuracy on {len(folder.paths)} images, "
          f"{len(folder.target_names)} classes:")
    width = max(len(name) for name in selector.ranking_)
    for rank, name in enumerate(selector.ranking_, 1):
        print(f"{rank:>3}. {name:<{width}}  {selector.scores_[name]:.4f}")
    return 0


def _cmd_demo(args) -> int:
    from ._demo import run_demo

    return run_demo(dataset=args.dataset, quick=args.quick, output=args.output,
                    data_home=args.data_home)


def _add_runtime_options(parser):
    parser.add_argument("--input-shape", default=None, help="C,H,W to resize images to "
                        "(default: the first image's size and mode)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the augmentations")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repens", description="Ensembles of neural-network representations for scikit-learn."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    plugins = sub.add_parser("plugins", help="list registered backbones, policies and aggregations")
    plugins.add_argument("--filter", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    plugins.set_defaults(func=_cmd_plugins)

    embed = sub.add_parser("embed", help="embed images (files or folders) with a backbone")
    embed.add_argument("paths", nargs="+", help="image files or folders")
    embed.add_argument("--backbone", required=True, help="registered backbone name")
    embed.add_argument("--weights", default=None, help="local weights file for the backbone")
    embed.add_argument("--policy", default=None,
                       help="test-time augmentation policy (with -S; default: none)")
    embed.add_argument("-S", "--n-augmentations", type=int, default=0,
                       help="number of augmented views to average (0: plain embedding)")
    embed.add_argument("--aggregation", default="mean", help="mean, gem, median, max, ...")
    embed.add_argument("-o", "--output", required=True, help="out.npy, out.csv or out.parquet")
    _add_runtime_options(embed)
    embed.set_defaults(func=_cmd_embed)

    rank = sub.add_parser("rank", help="rank backbones by leave-one-out kNN on a labelled folder")
    rank.add_argument("folder", help="folder with one sub-folder of images per class")
    rank.add_argument("--candidate", action="append", required=True,
                      help="NAME or NAME:WEIGHTS (repeat for each candidate)")
    rank.add_argument("-k", "--n-neighbors", type=int, default=1)
    _add_runtime_options(rank)
    rank.set_defaults(func=_cmd_rank)

    demo = sub.add_parser("demo", help="run all five methods end to end and write a report")
    demo.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    demo.add_argument("--quick", action="store_true", help="sub-minute smoke run")
    demo.add_argument("--output", default=None, help="report folder (default: ./repens_report)")
    demo.add_argument("--data-home", default=None, help="folder of the Fashion-MNIST IDX files")
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
    except Exception as exc:  # one line for the user, never a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"repens {args.command}: error: {message}", file=sys.stderr)
        if os.environ.get("REPENS_DEBUG"):
            raise
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
