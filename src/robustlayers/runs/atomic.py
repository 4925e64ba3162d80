"""Crash-safe file writes: a reader sees either the old file or the complete new one, never a
partial file.

Every writer goes through :func:`_atomic_open`: the data goes to a temporary file in the *same*
directory (so the final rename never crosses a filesystem), is flushed and fsync'ed, then
``os.replace`` swaps it in and the directory itself is fsync'ed so that the rename survives a
power cut. On any error the temporary file is removed and the old file is left untouched.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

# The process umask, read once at import, so that finished files get the usual permissions
# instead of mkstemp's private 0600.
_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that renames and new entries in it are durable.

    Silently a no-op on Windows (directories cannot be opened there) and on filesystems that
    do not support fsync on directories (EINVAL/ENOTSUP); every other error propagates.
    """
    if os.name == "nt":
        return
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextmanager
def _atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file object whose content replaces ``path`` atomically on success."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, rename)."""
    with _atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """``json.dumps`` ``default=`` hook: one-element tensors and numpy scalars become Python
    numbers, tensors/arrays become lists, paths become strings, sets sorted lists."""
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch.Tensor, numpy array/scalar
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text of ``obj`` (tensors/numpy/paths converted by :func:`to_jsonable`).

    Non-finite floats are written as ``NaN``/``Infinity`` (Python's json reads them back), so a
    diverged loss is recorded rather than crashing the run.
    """
    return json.dumps(obj, indent=indent, default=to_jsonable, allow_nan=True)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (with a trailing newline)."""
    atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with _atomic_open(path) as handle:
        torch.save(obj, handle)


def safetensors_bytes(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a name → tensor dict in the safetensors format (metadata values must be str)."""
    from safetensors.torch import save

    if metadata is not None:
        bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(v, str)}
        if bad:
            raise ValueError(f"safetensors metadata values must be str; got {bad}")
    return save(dict(tensors), metadata=dict(metadata) if metadata is not None else None)


def atomic_safetensors_save(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> None:
    """Save tensors as a ``.safetensors`` file atomically."""
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_safetensors_save",
    "safetensors_bytes",
    "dumps_json",
    "to_jsonable",
    "fsync_dir",
]
