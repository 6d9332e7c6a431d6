"""The ``repens`` command."""

from __future__ import annotations

import argparse
import sys

from . import _plugins


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repens", description="Ensembles of neural-network representations for scikit-learn."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list registered backbones, policies and aggregations")
    plugins.add_argument("--filter", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    plugins.set_defaults(func=_cmd_plugins)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        print(f"repens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
