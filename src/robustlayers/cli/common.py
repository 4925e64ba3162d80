"""Option helpers shared by the subcommands."""

from __future__ import annotations

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


def print_table(rows: list[dict], columns: list[str]) -> None:
    """An aligned plain-text table of ``rows`` restricted to ``columns``."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def add_device_option(parser, *, default: str = "auto") -> None:
    """``--device auto|cpu|cuda`` (resolved with :func:`resolve_device`)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=default,
                        help="auto (default): cuda when available, else cpu")
