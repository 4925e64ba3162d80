"""Output paths checked before any work starts.

An evaluation that runs for an hour and then cannot write its result, or a run whose hidden
temporary twin (``.tmp-NAME-xxxxxxxx``, see :mod:`robustlayers.runs.rundir`; ``.NAME.xxxxxxxx.tmp``,
see :mod:`robustlayers.runs.atomic`) has a name too long for the filesystem, fails late; this
module fails early, with an :class:`~robustlayers.errors.OutputPathError` naming the path and the
problem. Nothing is created: writability is probed with a temporary file that is removed again.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from robustlayers.errors import OutputPathError, describe_value

# Longest extra characters a temporary twin adds to a name: ".tmp-" + name + "-" + 8 random
# characters (tempfile.mkdtemp) or "." + name + "." + 8 random + ".tmp" (tempfile.mkstemp).
TWIN_EXTRA = 14
# Room kept for what is written inside an output folder, e.g.
# "checkpoints/.tmp-epoch-0001-PID-TOKEN/.model.safetensors.<8 random>.tmp".
INNER_RESERVE = 96
KINDS = ("dir", "file")


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or unknown name
        return default


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.exists(candidate):  # False (not an error) for a name too long
            return candidate
    return Path(path.anchor or ".")


def _check_lengths(path: Path, anchor: Path, kind: str) -> None:
    name_max = _limit(anchor, "PC_NAME_MAX", 255)
    path_max = _limit(anchor, "PC_PATH_MAX", 4096)
    for part in path.parts:
        if len(part.encode()) > name_max:
            raise OutputPathError(
                f"output {kind} {str(path)!r}: the name {part[:40]!r}… has {len(part.encode())} "
                f"bytes; this filesystem allows {name_max} per name")
    name = path.name.encode()
    if name and len(name) + TWIN_EXTRA > name_max:
        raise OutputPathError(
            f"output {kind} name {path.name[:40]!r}… is too long: {len(name)} bytes, and the "
            f"hidden temporary copy written first adds {TWIN_EXTRA} (this filesystem allows "
            f"{name_max}); use a name of at most {name_max - TWIN_EXTRA} bytes")
    reserve = INNER_RESERVE if kind == "dir" else TWIN_EXTRA
    total = len(os.fsencode(os.path.abspath(path))) + reserve
    if total > path_max:
        raise OutputPathError(
            f"output {kind} path is too long ({total - reserve} bytes + {reserve} for the files "
            f"written under it > {path_max}): {str(path)[:60]!r}…; choose a shorter path")


def _probe_writable(folder: Path, path: Path, kind: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".robustlayers-probe-")
    except OSError as err:
        reason = {errno.EROFS: "is on a read-only filesystem",
                  errno.EACCES: "is not writable", errno.EPERM: "is not writable"}.get(
                      err.errno, f"cannot be written ({err.strerror})")
        raise OutputPathError(f"output {kind} {str(path)!r}: folder {str(folder)!r} {reason}; "
                              "choose another --out or fix its permissions") from None
    os.close(fd)
    os.unlink(probe)


def check_output_path(path: str | os.PathLike, kind: str = "dir") -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` ("dir" or "file"):
    not a file where a folder is expected nor the reverse, inside a writable folder (the nearest
    existing one when it does not exist yet; parents are created later), its name and the names
    of its hidden temporary twins within the filesystem's NAME_MAX and PATH_MAX. Returns
    ``Path(path)``; raises :class:`~robustlayers.errors.OutputPathError`. Creates nothing."""
    if kind not in KINDS:
        raise OutputPathError(f"check_output_path kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise OutputPathError(f"output {kind} must be a non-empty path, got {describe_value(path)}")
    path = Path(path).expanduser()
    if "\0" in str(path):
        raise OutputPathError(f"output {kind} {str(path)!r} contains a NUL character")
    anchor = _existing_ancestor(path)
    _check_lengths(path, anchor, kind)
    if anchor == path:
        if kind == "dir" and not path.is_dir():
            raise OutputPathError(f"output folder {str(path)!r} exists and is a file; a folder "
                                  "is expected there")
        if kind == "file" and path.is_dir():
            raise OutputPathError(f"output file {str(path)!r} is an existing folder; give a file "
                                  "name, e.g. {}/result.json".format(path))
        folder = path if kind == "dir" else path.parent
    else:
        if not anchor.is_dir():
            raise OutputPathError(f"output {kind} {str(path)!r}: {str(anchor)!r} is a file, so "
                                  "no folder can be made under it")
        folder = anchor
    _probe_writable(folder, path, kind)
    return path


__all__ = ["check_output_path", "TWIN_EXTRA", "INNER_RESERVE"]
