"""``metrics.jsonl``: one JSON object per line, appended with flush + fsync.

A crash while appending can leave a torn last line without its newline; readers drop it (and
say so), and the next append first cuts it off so that it never ends up glued to a good row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from robustlayers.errors import RunStoreError
from robustlayers.runs.atomic import atomic_write_bytes, dumps_json


def repair_tail(path: Path) -> str | None:
    """Make ``path`` end with a newline: a torn last line is cut off (returns a message saying
    so); a complete row that only lost its newline gets it back. ``None`` if nothing dropped."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    keep = data[: data.rfind(b"\n") + 1]
    try:
        json.loads(data[len(keep):])
    except ValueError:
        atomic_write_bytes(path, keep)
        return f"{path}: dropped a torn last line ({len(data) - len(keep)} bytes)"
    atomic_write_bytes(path, data + b"\n")
    return None


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` as one JSON line, flushed and fsync'ed."""
    line = dumps_json(dict(row), indent=None).encode("utf-8") + b"\n"
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows, warnings)``: every row in order; a torn last line is dropped with a warning and a
    bad line anywhere else (not JSON, or not an object with an int ``epoch``) is a
    RunStoreError naming the file and its line number."""
    if not path.is_file():
        return [], []
    lines = path.read_bytes().split(b"\n")
    rows, notes = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            if number == len(lines):  # no newline after it: a torn write
                notes.append(f"{path}: ignored a torn last line {raw[:60]!r}")
                continue
            raise RunStoreError(f"{path} line {number} is not valid JSON: {raw[:80]!r}") from None
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise RunStoreError(f"{path} line {number} is not a metrics row (a JSON object with "
                                f"an int 'epoch'): {raw[:80]!r}")
        rows.append(row)
    return rows, notes


def rewrite_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace the file with ``rows`` atomically."""
    text = "".join(dumps_json(dict(row), indent=None) + "\n" for row in rows)
    atomic_write_bytes(path, text.encode("utf-8"))
