"""Option helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys

from robustlayers.data import get_dataset_info, list_datasets


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


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def add_device_option(parser, *, default: str = "auto") -> None:
    """``--device auto|cpu|cuda`` (resolved with :func:`resolve_device`)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=default,
                        help="auto (default): cuda when available, else cpu")


def resolve_device(name: str | None = "auto"):
    """The ``torch.device`` for ``name``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when
    available, else cpu; ``None`` means auto). An unknown name, or ``"cuda"`` on a machine
    without a usable CUDA device, raises ValueError naming the valid choices."""
    import torch

    if name is None:
        name = "auto"
    if not isinstance(name, str) or name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; valid choices "
                         "here: cpu, auto")
    return torch.device(name)


def dataset_info_or_error(name: str):
    return get_dataset_info(name)
