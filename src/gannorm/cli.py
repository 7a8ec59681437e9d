"""The ``gannorm`` command line."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .normalizations import METHODS


def _cmd_list(args: argparse.Namespace) -> int:
    print("normalization methods (gannorm.normalize(model, NAME, **options)):")
    for e in METHODS.entries():
        print(f"  {e.name:<17} {e.description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(seed=args.seed, width=args.width)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gannorm",
        description="GAN training that does not blow up: spectral normalization and its successors.",
        epilog="Run 'gannorm COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"gannorm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list the registered normalization methods")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("demo", help="a short tour of the normalizations on the SNGAN CNN discriminator")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--width", type=float, default=1.0, help="channel-width multiplier (default 1.0, the official net)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"gannorm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
