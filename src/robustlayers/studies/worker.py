"""What runs one task, in whichever process the executor chose (a pool worker, a Ray task).

Everything crosses process boundaries as plain dicts: the task (``Task.to_dict()``) in, an
outcome dict out — ``{"key", "status", "path", "seconds", "error"}`` with status ``done``,
``reused`` or ``failed``. An expected failure is an outcome, not an exception, so one failing
run never takes the others down.
"""

from __future__ import annotations

import importlib
import time
import traceback
from pathlib import Path

from robustlayers.errors import RunInterrupted
from robustlayers.studies.tasks import Task, evaluation_path, run_path_of

FINISHED = ("finished", "diverged")
"""Run statuses that count as done (a diverged run is a result: SPECTRUM-style sweeps keep it)."""


def already_done(task: Task, study_dir: Path) -> Path | None:
    """The path of a task's finished output (a finished run, a stored evaluation), or None."""
    if task.kind == "evaluate":
        path = evaluation_path(task, study_dir)
        return path if path.is_file() else None
    from robustlayers.runs import RunDir

    path = run_path_of(task)
    if (path / "config.json").is_file():
        try:
            if RunDir.open(path).status in FINISHED:
                return path
        except (ValueError, OSError):
            return None
    return None


def call_function(name: str, args: dict) -> dict:
    """``module:function`` imported and called with ``**args``."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)(**args)


def run_task(task: dict, study_dir: str, threads: int | None = None) -> dict:
    """Run ``task`` (a dict) and return its outcome dict; never raises for a failing task."""
    import torch

    if threads:
        torch.set_num_threads(max(1, int(threads)))
    task_ = Task.from_dict(task)
    started = time.perf_counter()
    try:
        done = already_done(task_, Path(study_dir))
        if done is not None:
            return _outcome(task_, "reused", done, started)
        if task_.kind == "train":
            from robustlayers.train import train

            run = train(dict(task_.spec, quiet=True))
            status = "done" if run.status in FINISHED else "failed"
            error = None if status == "done" else f"run ended {run.status}"
            return _outcome(task_, status, run.path, started, error)
        from robustlayers.runs import atomic_write_json

        result = call_function(task_.spec["fn"], task_.spec["args"])
        path = evaluation_path(task_, Path(study_dir))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"task": task_.to_dict(), "result": result})
        return _outcome(task_, "done", path, started)
    except KeyboardInterrupt:
        raise
    except RunInterrupted:  # the run stopped on Ctrl-C / SIGTERM: the study stops too
        raise KeyboardInterrupt() from None
    except Exception as err:  # noqa: BLE001 - a failing task is reported, not raised
        text = f"{type(err).__name__}: {err}"
        return _outcome(task_, "failed", None, started, text,
                        detail=traceback.format_exc(limit=8))


def _outcome(task: Task, status: str, path, started: float, error: str | None = None,
             detail: str | None = None) -> dict:
    out = {"key": task.key, "kind": task.kind, "status": status,
           "path": str(path) if path is not None else None,
           "seconds": round(time.perf_counter() - started, 3), "error": error}
    if detail:
        out["traceback"] = detail
    return out
