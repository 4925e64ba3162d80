"""Option helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys

from robustlayers.data import list_datasets
from robustlayers.devices import DEVICE_CHOICES, resolve_device  # noqa: F401 (re-exported)
from robustlayers.runs.paths import check_output_path  # noqa: F401 (re-exported)


def add_dataset_option(parser, *, default: str | None = None, required: bool = False) -> None:
    parser.add_argument("--dataset", default=default, required=required,
                        help=f"dataset ({', '.join(list_datasets())})")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")


def default_dataset_for(model_name: str) -> str:
    """The dataset a zoo model is shown with when none is given: the embedded Fashion-MNIST for
    the small CNN, CIFAR-10 (shapes only, no files needed) for the CIFAR architectures."""
    return "fashion-mnist" if model_name == "smallcnn" else "cifar10"


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def format_table(rows: list[dict], columns: list[str]) -> str:
    """An aligned plain-text table of ``rows`` restricted to ``columns`` (no final newline)."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print :func:`format_table`."""
    print(format_table(rows, columns))


def add_device_option(parser, *, default: str = "auto") -> None:
    """``--device auto|cpu|cuda`` (resolved with :func:`resolve_device`)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=default,
                        help="auto (default): cuda when available, else cpu")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default (``(default: X)``) unless the help text already
    names it or there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default is None or default is False \
                or default is argparse.SUPPRESS or default == []:
            return text
        return text + " (default: %(default)s)"


def add_normalize_option(parser) -> None:
    """``--normalize dataset|none|MEAN/STD`` for commands that load a checkpoint file."""
    parser.add_argument(
        "--normalize", default=None, metavar="dataset|none|MEAN/STD",
        help="input normalisation the checkpoint was trained with: dataset (the dataset's "
        "mean/std), none (raw [0, 1] inputs, e.g. TRADES/MART checkpoints) or per-channel "
        "MEAN/STD such as 0.4914,0.4822,0.4465/0.2471,0.2435,0.2616. Default: what the "
        "checkpoint stores, else the dataset's (with a note on stderr)")


def add_quiet_option(parser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress on stderr (bars, loading notes)")
