"""Who is training a run, and whether that process is still alive.

A training process writes ``owner.json`` into its run directory (host, pid, process start time,
heartbeat) and refreshes the heartbeat every :data:`HEARTBEAT_SECONDS` from a daemon thread. A
run without ``result.json`` is ``running`` while its owner lives and ``dead`` once it is gone:
on the same host, when the pid no longer exists or belongs to another process (another start
time); on another host, when the heartbeat is older than :data:`STALE_SECONDS`. A dead run is
continued with ``robustlayers train --resume RUN`` (or by starting its config again).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

from robustlayers.runs.atomic import atomic_write_json

OWNER_FILE = "owner.json"
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 120.0


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux /proc; None where unknown)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "process_start": _process_start(os.getpid()), "started": time.time(),
            "heartbeat": time.time()}


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return time.time() - float(owner.get("heartbeat", 0)) < STALE_SECONDS
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    start = _process_start(pid)
    return start is None or owner.get("process_start") in (None, start)


def owner_alive(run_path: str | os.PathLike) -> bool:
    """Whether the process recorded in ``owner.json`` still trains the run (True when there is
    no record: a run made by an older version, or one being created)."""
    import json

    try:
        owner = json.loads((Path(run_path) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return True
    return _alive(owner)


@contextlib.contextmanager
def heartbeat(run_path: str | os.PathLike, every: float = HEARTBEAT_SECONDS):
    """Own the run for the duration: write ``owner.json`` and refresh its heartbeat."""
    path = Path(run_path) / OWNER_FILE
    record = owner_record()
    atomic_write_json(path, record)
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            record["heartbeat"] = time.time()
            try:
                atomic_write_json(path, record)
            except OSError:  # a full disk must not kill training; the next beat retries
                pass

    thread = threading.Thread(target=beat, name="robustlayers-heartbeat", daemon=True)
    thread.start()
    try:
        yield record
    finally:
        stop.set()
        thread.join(timeout=every + 1)
