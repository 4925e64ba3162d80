"""Readers for the publishers' exact file formats; each returns uint8 images NCHW + int64 labels.

- IDX (MNIST, Fashion-MNIST): big-endian header ``0x00 0x00 <dtype> <ndim>``, then ``ndim``
  big-endian uint32 dimensions, then the data, big-endian, row-major; gzip-compressed or raw.
  Images have magic 2051 (ubyte, 3 dims), labels magic 2049 (ubyte, 1 dim).
- CIFAR-10 / CIFAR-100 python batches: a pickled dict with bytes keys; ``b"data"`` is an
  (N, 3072) uint8 array whose rows hold the red, green and blue 32x32 planes row-major;
  ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100) is a list of ints. Read with a
  restricted unpickler that only rebuilds builtin containers and numpy arrays.
- SVHN cropped digits (``*_32x32.mat``): MATLAB file with ``X`` (32, 32, 3, N) uint8 and ``y``
  (N, 1), where label 10 means the digit 0.
- CIFAR-10-C: ``<corruption>.npy`` (50000, 32, 32, 3) uint8, severities 1-5 as consecutive blocks
  of 10000, and ``labels.npy``; loaded with ``allow_pickle=False``.

Any malformed, truncated or unexpected file raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np

from .registry import DataError

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz (or the gzip magic is present)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"corrupt or truncated gzip file {path}: {err}") from err
    return raw


def read_idx(path: str | Path, *, expect_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array with its native shape."""
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(buf)} bytes)")
    zero, code, ndim = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
    magic = int.from_bytes(buf[:4], "big")
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic number {magic:#010x})")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: IDX magic number {magic} where {expect_magic} was expected")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) - header != expected:
        raise DataError(f"{path}: IDX data has {len(buf) - header} bytes, header dims {dims} "
                        f"need {expected} (truncated or corrupt file)")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """IDX images (N, H, W) + labels (N,) → uint8 (N, 1, H, W) and int64 (N,)."""
    images = read_idx(images_path, expect_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=IDX_LABELS_MAGIC)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: {labels.shape} labels for {len(images)} images "
                        f"in {images_path}")
    return images[:, None], labels.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR pickles

def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r} in a CIFAR pickle")
    return text.encode("latin1")


def _array_globals() -> dict[tuple[str, str], object]:
    reconstruct = np.ndarray((0,)).__reduce__()[0]  # numpy's own _reconstruct, version-proof
    allowed: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "ndarray")] = np.ndarray
        allowed[(mod, "dtype")] = np.dtype
    # Protocol-5 pickles of contiguous arrays (written by numpy >= 1.16 under Python >= 3.8).
    try:
        from numpy._core.numeric import _frombuffer as frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer as frombuffer
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = frombuffer
    # Python-3 pickles with protocol <= 2 spell bytes as _codecs.encode(text, "latin1").
    allowed[("_codecs", "encode")] = _latin1_encode
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("dict", dict), ("list", list), ("str", str), ("bytes", bytes),
                          ("int", int), ("bytearray", bytearray)):
            allowed[(mod, name)] = obj
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only builtin containers and numpy array reconstruction.

    Any other global (``os.system``, ``builtins.eval``, ...) is refused before it is imported or
    called, so a malicious file cannot run code.
    """

    _allowed = _array_globals()

    def __init__(self, file, *, source: Path):
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refusing to load global {module}.{name} from a "
                            f"CIFAR pickle (only builtins and numpy arrays are allowed)") from None


def safe_unpickle(path: str | Path) -> object:
    """Load a CIFAR-style pickle through the restricted unpickler (``encoding="bytes"``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), source=path).load()
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{path}: corrupt or truncated CIFAR pickle ({type(err).__name__}: "
                        f"{err})") from err


def read_cifar_batch(path: str | Path, *, label_key: bytes = b"labels") -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """One CIFAR python batch → uint8 (N, 3, 32, 32) and int64 (N,) labels."""
    path = Path(path)
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR pickle, got {type(obj).__name__}")
    obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    if b"data" not in obj or label_key not in obj:
        raise DataError(f"{path}: CIFAR pickle lacks keys b'data' and {label_key!r} "
                        f"(has {sorted(obj)})")
    data = np.asarray(obj[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    try:
        labels = np.asarray(obj[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: {label_key!r} is not a list of integers") from err
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


# --------------------------------------------------------------------------- SVHN .mat

def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``*_32x32.mat`` → uint8 (N, 3, 32, 32) and int64 labels with 10 mapped to 0."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        mat = loadmat(str(path), variable_names=("X", "y"))
    except Exception as err:  # noqa: BLE001 - scipy raises many types for a bad file
        raise DataError(f"{path}: corrupt or unreadable .mat file ({type(err).__name__}: "
                        f"{err})") from err
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: SVHN .mat must hold variables X and y")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: X must be (32, 32, 3, N), got {x.shape}")
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: {len(y)} labels for {x.shape[3]} images")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise DataError(f"{path}: labels outside 0..10")
    labels[labels == 10] = 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False)
    return images, labels


# --------------------------------------------------------------------------- CIFAR-10-C .npy

def read_npy(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``; failures become :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: corrupt or truncated .npy file ({err})") from err


def read_cifar10c(folder: str | Path, corruption: str,
                  severity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10-C corruption: severity 1..5 (block ``severity-1`` of 5) or None for all."""
    folder = Path(folder)
    images_path, labels_path = folder / f"{corruption}.npy", folder / "labels.npy"
    images = read_npy(images_path, mmap=True)
    labels = read_npy(labels_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{images_path}: expected uint8 (N, 32, 32, 3), got "
                        f"{images.dtype} {images.shape}")
    n = images.shape[0]
    if n % 5 or labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{images_path}: {n} images (must be 5 equal severity blocks) with "
                        f"{labels.shape} labels in {labels_path}")
    block = slice(None) if severity is None else slice((severity - 1) * n // 5, severity * n // 5)
    try:
        chunk = np.array(images[block])
    except (OSError, ValueError) as err:
        raise DataError(f"{images_path}: cannot read severity block ({err})") from err
    return np.ascontiguousarray(chunk.transpose(0, 3, 1, 2)), labels[block].astype(np.int64)
