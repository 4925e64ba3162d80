"""Writers of tiny files in the publishers' exact formats, shared by the data tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def write_idx(path: Path, arr: np.ndarray, *, gz: bool | None = None) -> Path:
    """IDX: 0x00 0x00, dtype code 0x08 (ubyte), ndim, big-endian uint32 dims, then the data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    payload = header + arr.tobytes()
    gz = path.suffix == ".gz" if gz is None else gz
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_idx_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray,
                    *, gz: bool = True) -> None:
    prefix = "train" if split == "train" else "t10k"
    ext = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz=gz)


def cifar_rows(images_nchw: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) → the publisher's (N, 3072) rows: R plane, G plane, B plane, row-major."""
    return np.ascontiguousarray(images_nchw.reshape(len(images_nchw), 3072), dtype=np.uint8)


def write_cifar_batch(path: Path, data: np.ndarray, labels, *, label_key: bytes = b"labels",
                      protocol: int = 2) -> Path:
    obj = {b"batch_label": b"testing batch", label_key: [int(v) for v in labels],
           b"data": data, b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# A pickle as written by Python 2 + numpy (the real CIFAR files): str keys are byte strings
# (SHORT_BINSTRING), the array is numpy.core.multiarray._reconstruct + BUILD with raw bytes.
def _s(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def py2_cifar_pickle(data: np.ndarray, labels, label_key: bytes = b"labels") -> bytes:
    dtype = (b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1) + b"\x87R"
             + b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _i(0) + b"\x85"
             + _s(b"b") + b"\x87R"
             + b"(" + _i(1) + _i(data.shape[0]) + _i(data.shape[1]) + b"\x86" + dtype + b"\x89"
             + _s(np.ascontiguousarray(data).tobytes()) + b"tb")
    return (b"\x80\x02}q\x00(" + _s(b"batch_label") + _s(b"training batch 1 of 5")
            + _s(label_key) + b"](" + b"".join(_i(int(v)) for v in labels) + b"e"
            + _s(b"data") + array + b"u.")


def write_cifar10(folder: Path, n: int = 4, seed: int = 0) -> dict:
    """cifar-10-batches-py/ with data_batch_1..5 and test_batch (n images each)."""
    rng = np.random.default_rng(seed)
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        if name == "data_batch_1":  # one file in the exact Python-2 form of the real files
            (folder / name).write_bytes(py2_cifar_pickle(cifar_rows(imgs), labels))
        else:
            write_cifar_batch(folder / name, cifar_rows(imgs), labels)
        out[name] = (imgs, labels)
    return out


def write_svhn(path: Path, images_nchw: np.ndarray, digits: np.ndarray) -> Path:
    """SVHN .mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0."""
    from scipy.io import savemat

    x = np.ascontiguousarray(images_nchw.transpose(2, 3, 1, 0))
    y = np.where(digits == 0, 10, digits).reshape(-1, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"X": x, "y": y})
    return path


def write_cifar10c(folder: Path, corruptions=("gaussian_noise",), per_severity: int = 3,
                   seed: int = 0) -> tuple[dict, np.ndarray]:
    """CIFAR-10-C/: <corruption>.npy (5*k, 32, 32, 3) uint8 and labels.npy."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = 5 * per_severity
    labels = rng.integers(0, 10, n).astype(np.int64)
    np.save(folder / "labels.npy", labels)
    arrays = {}
    for c in corruptions:
        arrays[c] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{c}.npy", arrays[c])
    return arrays, labels


@pytest.fixture
def fmt() -> SimpleNamespace:
    """The format writers, as one namespace."""
    return SimpleNamespace(
        write_idx=write_idx, write_idx_split=write_idx_split, cifar_rows=cifar_rows,
        write_cifar_batch=write_cifar_batch, py2_cifar_pickle=py2_cifar_pickle,
        write_cifar10=write_cifar10, write_svhn=write_svhn, write_cifar10c=write_cifar10c,
    )
