"""Entry point of the ``robustlayers`` command: builds the parser from the subcommand modules."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = ("models", "layers", "data", "evaluate", "train", "runs", "diagnose", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustlayers",
        description="Layer-wise adversarial robustness: which layers carry a classifier's "
        "robustness, and training methods that act on chosen layers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"robustlayers.cli.{name}_cmd")
        command = module.add_parser(sub)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"robustlayers {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
