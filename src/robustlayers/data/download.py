"""Explicit downloads from the publishers' URLs (only when the user asks: ``download=True``).

Files are fetched with urllib and a short timeout, written to a temporary file in the target
folder and renamed into place, so an interrupted download never leaves a partial file under the
final name. Archives (CIFAR tar.gz, CIFAR-10-C tar) are unpacked into a temporary folder with
tarfile's ``data`` filter and the publisher's top folder is renamed into place. Any failure
(offline, HTTP error, bad archive) raises :class:`DataError` and removes what was written.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .registry import DataError, DatasetInfo, get_dataset_info

DEFAULT_TIMEOUT = 15.0
_CHUNK = 1 << 20


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Stream ``url`` to ``dest`` atomically (temporary file in dest's folder + rename)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": "robustlayers"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, (urllib.error.URLError, OSError, ValueError)):
            raise DataError(f"could not download {url}: {getattr(err, 'reason', err)}") from err
        raise


def _fetch_first(urls: list[str], dest: Path, timeout: float) -> None:
    errors = []
    for url in urls:
        try:
            _fetch(url, dest, timeout)
            return
        except DataError as err:
            errors.append(str(err))
    raise DataError("; ".join(errors))


def _extract(archive: Path, info: DatasetInfo, target: Path) -> None:
    """Unpack ``archive`` and move its ``info.subdir`` folder to ``target`` (atomic rename)."""
    tmpdir = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{info.subdir}.", suffix=".tmp"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmpdir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"downloaded archive for {info.name} is corrupt: {err}") from err
        inner = tmpdir / info.subdir
        if not inner.is_dir():
            raise DataError(f"downloaded archive for {info.name} has no {info.subdir}/ folder")
        os.replace(inner, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def download_dataset(name: str, data_dir: str | os.PathLike, *, split: str | None = None,
                     url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Fetch ``name`` from its publisher into ``data_dir``; returns the folder holding the files.

    Per-file datasets (IDX, SVHN) land in ``data_dir/<subdir>/`` (only ``split``'s files when a
    split is given); archive datasets are unpacked to ``data_dir/<subdir>/`` (the publisher's
    folder name, e.g. ``cifar-10-batches-py``). ``url`` overrides the publisher's URL (base URL for
    per-file datasets). Offline or on any error: :class:`DataError`, nothing left behind (folders
    this call created are removed again).
    """
    info = get_dataset_info(name)
    root = Path(data_dir).expanduser()
    target = root / info.subdir
    created = [p for p in (target, *target.parents) if not p.exists()][::-1]  # outermost first
    bases = [url] if url else [info.url, *info.mirrors]
    fetched: list[Path] = []
    try:
        if info.archive:
            if target.exists():
                raise DataError(f"{target} exists but is incomplete; remove it to download again")
            root.mkdir(parents=True, exist_ok=True)
            archive = root / f".{info.subdir}.archive"
            _fetch_first(bases, archive, timeout)
            try:
                _extract(archive, info, target)
            finally:
                archive.unlink(missing_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            splits = [split] if split else list(info.splits)
            for fname in [f for s in splits for f in info.files_for(s)]:
                if not (target / fname).exists():
                    urls = [b.rstrip("/") + "/" + fname for b in bases]
                    _fetch_first(urls, target / fname, timeout)
                    fetched.append(target / fname)
    except BaseException as err:
        _clean_up(fetched, created, target)
        if isinstance(err, DataError):
            raise DataError(f"{info.name}: download failed ({err}). Check the network, or "
                            f"download by hand from {info.url} into {target}") from err
        raise
    return target


def _clean_up(fetched: list[Path], created: list[Path], target: Path) -> None:
    """Remove what a failed download wrote: its files, then the folders it created."""
    for path in fetched:
        path.unlink(missing_ok=True)
    for path in reversed(created):
        if path == target:
            shutil.rmtree(path, ignore_errors=True)
        else:
            _rmdir_if_empty(path)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
