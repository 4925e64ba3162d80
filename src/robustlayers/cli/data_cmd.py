"""``robustlayers data DATASET``: where a dataset's files are, its sizes, shape and defaults."""

from __future__ import annotations

import argparse

import numpy as np

from robustlayers import data as rdata
from robustlayers.cli.common import print_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="describe a dataset: files found, sizes, shape, classes, defaults",
        description="Find a dataset's files (the publisher's layout), read them and print the "
        "train/test sizes, image shape, classes, mean/std and default attack budget. Datasets: "
        + ", ".join(rdata.list_datasets()) + ".",
    )
    parser.add_argument("dataset", nargs="?", default=rdata.DEFAULT_DATASET, metavar="DATASET",
                        help=f"one of {', '.join(rdata.list_datasets())} "
                        f"(default {rdata.DEFAULT_DATASET})")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder holding the files, or its parent (default: "
                        "$ROBUSTLAYERS_DATA_DIR, the dataset's default folder, then "
                        "~/.cache/robustlayers/data)")
    parser.add_argument("--download", action="store_true",
                        help="if the files are missing, fetch them from the publisher's URL")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _eps(value: float) -> dict:
    return {"value": value, "over_255": round(value * 255, 4)}


def _splits(info, data_dir, download: bool) -> dict:
    out = {}
    for split in info.splits:
        folder = rdata.find_files(info, split, data_dir, download=download)
        _, labels = rdata.read_split(info, split, folder)
        counts = np.bincount(labels, minlength=info.num_classes)
        out[split] = {"n": int(len(labels)), "source": str(folder),
                      "class_counts": [int(c) for c in counts]}
    return out


def _corruptions(data_dir, download: bool) -> dict:
    found = rdata.available_corruptions(data_dir)
    if not found:
        # Raises DataError naming the folders looked at (or downloads when asked).
        rdata.load_corruption(data_dir, rdata.CIFAR10C_CORRUPTIONS[0], 1, download=download)
        found = rdata.available_corruptions(data_dir)
    out = {}
    for name, folder in found.items():
        arr = rdata.read_npy(f"{folder}/{name}.npy", mmap=True)
        out[name] = {"n": int(arr.shape[0]), "per_severity": int(arr.shape[0]) // 5,
                     "source": folder}
    return out


def describe(name: str, data_dir=None, download: bool = False) -> dict:
    """The JSON-able description printed by ``robustlayers data``."""
    info = rdata.get_dataset_info(name)
    record = {
        "dataset": info.name, "format": info.format, "shape": list(info.shape),
        "num_classes": info.num_classes, "classes": list(info.classes),
        "mean": list(info.mean), "std": list(info.std),
        "default_eps": _eps(info.default_eps), "default_alpha": _eps(info.default_alpha),
        "augment": info.augment, "default_model": info.default_model, "url": info.url,
    }
    if info.name == "cifar10-c":
        record["corruptions"] = _corruptions(data_dir, download)
        record["missing_corruptions"] = [c for c in rdata.CIFAR10C_CORRUPTIONS
                                         if c not in record["corruptions"]]
    else:
        record["splits"] = _splits(info, data_dir, download)
    return record


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _print_text(rec: dict) -> None:
    classes = ", ".join(rec["classes"][:10]) + (", ..." if len(rec["classes"]) > 10 else "")
    eps, alpha = rec["default_eps"], rec["default_alpha"]
    print(f"{rec['dataset']}  [{rec['format']}]")
    for split, s in rec.get("splits", {}).items():
        print(f"  {split:<6} {s['n']:>7} examples   from {s['source']}")
    for name, c in rec.get("corruptions", {}).items():
        print(f"  {name:<18} {c['n']:>6} images ({c['per_severity']} per severity)   "
              f"from {c['source']}")
    if rec.get("missing_corruptions"):
        print(f"  missing corruptions: {', '.join(rec['missing_corruptions'])}")
    print(f"  shape    {tuple(rec['shape'])}")
    print(f"  classes  {rec['num_classes']}: {classes}")
    print(f"  mean     {_fmt(rec['mean'])}   std {_fmt(rec['std'])}")
    print(f"  default  eps {eps['value']:.4g} ({eps['over_255']:g}/255), "
          f"alpha {alpha['value']:.4g} ({alpha['over_255']:g}/255), augment {rec['augment']}, "
          f"model {rec['default_model']}")


def run(args: argparse.Namespace) -> int:
    record = describe(args.dataset, args.data_dir, args.download)
    if args.json:
        print_json(record)
    else:
        _print_text(record)
    return 0
