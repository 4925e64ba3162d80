"""Loading datasets from the publishers' files into in-memory tensors.

``load_dataset`` finds the files (``data_dir`` or its ``<subdir>``; without ``data_dir`` the
dataset's default folder, then ``$ROBUSTLAYERS_DATA_DIR`` or ``~/.cache/robustlayers/data``),
reads them with :mod:`robustlayers.data.readers`, and returns a :class:`TensorData` of float32
NCHW images in [0, 1] and int64 labels. A ``subset`` is taken from the raw uint8 arrays, before
the conversion to float32. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import numbers

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import readers
from .download import download_dataset
from .registry import (CIFAR10C_CORRUPTIONS, SPLITS, DataError, DatasetInfo, candidate_dirs,
                       get_dataset_info, how_to_get, user_data_root)

PathLike = str | os.PathLike


@dataclass(frozen=True, eq=False)
class TensorData:
    """Images ``x`` (float32, NCHW, [0, 1]), labels ``y`` (int64) and the dataset's info.

    ``split`` and ``source`` (the folder the files were read from) are recorded for run records.
    """

    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo
    split: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"TensorData needs x (N, C, H, W) and y (N,), got "
                             f"{tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> "TensorData":
        """A copy with ``x`` and ``y`` on ``device``."""
        return replace(self, x=self.x.to(device), y=self.y.to(device))

    def subset(self, n: int, seed: int = 0) -> "TensorData":
        """A seeded, class-agnostic random subset of ``n`` examples (kept in dataset order).

        Deterministic in (n, seed): the indices are the first ``n`` of a permutation drawn from a
        CPU ``torch.Generator`` seeded with ``seed``, then sorted.
        """
        idx = subset_indices(len(self), n, seed)
        if idx is None:
            return self
        idx = idx.to(self.x.device)
        return replace(self, x=self.x[idx], y=self.y[idx])


def subset_indices(total: int, n: int, seed: int = 0) -> torch.Tensor | None:
    """The sorted indices of a seeded random subset of ``n`` of ``total`` examples (the first
    ``n`` of a permutation drawn from a CPU generator seeded with ``seed``); None when
    ``n == total`` (everything, in order). DataError unless n is an int in 1..total."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 < n <= total:
        raise DataError(f"subset size must be an int in 1..{total} (the number of examples to "
                        f"keep), got {n!r}")
    n = int(n)
    if n == total:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=gen)[:n].sort().values


def _to_tensor_data(images: np.ndarray, labels: np.ndarray, info: DatasetInfo, split: str,
                    source: Path, *, subset: int | None = None, seed: int = 0) -> TensorData:
    """Check the raw uint8 arrays, keep the ``subset`` (:func:`subset_indices`) and only then
    convert the kept images to float32 in [0, 1], so a subset never costs the whole split."""
    if tuple(images.shape[1:]) != info.shape:
        raise DataError(f"{source}: images have shape {tuple(images.shape[1:])}, "
                        f"{info.name} needs {info.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataError(f"{source}: labels outside 0..{info.num_classes - 1}")
    if subset is not None:
        idx = subset_indices(len(labels), subset, seed)
        if idx is not None:
            images, labels = images[idx.numpy()], labels[idx.numpy()]
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return TensorData(x=x, y=y, info=info, split=split, source=str(source))


def _present(folder: Path, fname: str) -> Path | None:
    """The file ``fname`` in ``folder``; IDX files may also be stored uncompressed."""
    for cand in (fname, fname[:-3]) if fname.endswith(".gz") else (fname,):
        if (folder / cand).is_file():
            return folder / cand
    return None


def locate(info: DatasetInfo, split: str, data_dir: PathLike | None = None,
           files: tuple[str, ...] | None = None) -> Path:
    """The first candidate folder holding all of ``split``'s files (or ``files``).

    Raises :class:`DataError` naming every folder looked at, what was missing there and how to
    get the data.
    """
    needed = files if files is not None else info.files_for(split)
    report = []
    for folder in candidate_dirs(info, data_dir):
        missing = [f for f in needed if _present(folder, f) is None]
        if not missing:
            return folder
        if not folder.is_dir():
            report.append(f"{folder} (no such folder)")
        else:
            report.append(f"{folder} (missing {', '.join(missing[:4])}"
                          f"{', ...' if len(missing) > 4 else ''})")
    raise DataError(f"{info.name} {split} data not found. Looked in: {'; '.join(report)}. "
                    f"To get it: {how_to_get(info)}.")


def find_files(info: DatasetInfo, split: str, data_dir: PathLike | None = None, *,
               download: bool = False, files: tuple[str, ...] | None = None) -> Path:
    """:func:`locate`, and when that fails and ``download`` is set, download then locate again.

    Downloads go to ``data_dir`` (as ``data_dir/<subdir>``) or, without one, to
    ``$ROBUSTLAYERS_DATA_DIR`` / ``~/.cache/robustlayers/data``.
    """
    try:
        return locate(info, split, data_dir, files)
    except DataError as missing:
        if not download:
            raise
        root = Path(data_dir).expanduser() if data_dir is not None else user_data_root()
        try:
            download_dataset(info.name, root, split=None if info.archive else split)
        except DataError as failed:
            raise DataError(f"{missing} Download attempt: {failed}") from failed
        return locate(info, split, root, files)


def read_split(info: DatasetInfo, split: str, folder: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The raw uint8 images (N, C, H, W) and int64 labels of ``split`` read from ``folder``."""
    return _read_split(info, split, Path(folder))


def _read_split(info: DatasetInfo, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    names = info.files_for(split)
    if info.name in ("fashion-mnist", "mnist"):
        images_path, labels_path = (_present(folder, f) or folder / f for f in names)
        return readers.read_idx_pair(images_path, labels_path)
    if info.name in ("cifar10", "cifar100"):
        key = b"labels" if info.name == "cifar10" else b"fine_labels"
        parts = [readers.read_cifar_batch(folder / f, label_key=key) for f in names]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    if info.name == "svhn":
        return readers.read_svhn_mat(folder / names[0])
    raise DataError(f"no reader for {info.name}")


def _check_split(info: DatasetInfo, split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    if info.name == "cifar10-c":
        raise DataError("cifar10-c has no train/test splits: use load_corruption(data_dir, "
                        f"corruption, severity) with a corruption from CIFAR10C_CORRUPTIONS "
                        f"({', '.join(CIFAR10C_CORRUPTIONS[:3])}, ...) and severity 1-5 "
                        "(or None for all five)")


def load_dataset(name: str, split: str = "train", *, data_dir: PathLike | None = None,
                 download: bool = False, subset: int | None = None, seed: int = 0) -> TensorData:
    """Load ``split`` of dataset ``name`` as a :class:`TensorData` (float32 NCHW in [0, 1]).

    ``data_dir`` may be the folder holding the publisher's files or its parent. When the files
    are missing, :class:`DataError` names every folder looked at and how to get the data, unless
    ``download=True``: then the publisher's URL is tried (into ``data_dir``, or
    ``$ROBUSTLAYERS_DATA_DIR`` / ``~/.cache/robustlayers/data`` without one). ``subset`` keeps a
    seeded random ``subset`` examples (see :meth:`TensorData.subset`).
    """
    info = get_dataset_info(name)
    _check_split(info, split)
    folder = find_files(info, split, data_dir, download=download)
    images, labels = _read_split(info, split, folder)
    return _to_tensor_data(images, labels, info, split, folder, subset=subset, seed=seed)


def load_corruption(data_dir: PathLike | None, corruption: str, severity: int | None = None,
                    *, subset: int | None = None, seed: int = 0,
                    download: bool = False) -> TensorData:
    """One CIFAR-10-C corruption (SPECTRUM §9) as a :class:`TensorData`.

    ``severity`` 1..5 selects the block of 10 000 test images at that severity; ``None`` returns
    all five blocks (50 000 images, the SPECTRUM protocol). Labels come from ``labels.npy``.
    """
    info = get_dataset_info("cifar10-c")
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise DataError(f"unknown CIFAR-10-C corruption {corruption!r}; valid choices: "
                        f"{', '.join(CIFAR10C_CORRUPTIONS)}")
    if severity is not None and (isinstance(severity, bool) or severity not in range(1, 6)):
        raise DataError(f"severity must be 1, 2, 3, 4, 5 or None (all), got {severity!r}")
    needed = ("labels.npy", f"{corruption}.npy")
    folder = find_files(info, "test", data_dir, download=download, files=needed)
    images, labels = readers.read_cifar10c(folder, corruption, severity)
    split = f"{corruption}-{severity if severity is not None else 'all'}"
    return _to_tensor_data(images, labels, info, split, folder, subset=subset, seed=seed)


def available_corruptions(data_dir: PathLike | None = None) -> dict[str, str]:
    """CIFAR-10-C corruptions present: name → folder (empty dict when none are found)."""
    info = get_dataset_info("cifar10-c")
    found: dict[str, str] = {}
    for folder in candidate_dirs(info, data_dir):
        if (folder / "labels.npy").is_file():
            for c in CIFAR10C_CORRUPTIONS:
                if c not in found and (folder / f"{c}.npy").is_file():
                    found[c] = str(folder)
    return found
