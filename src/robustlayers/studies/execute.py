"""Run a study's tasks: in this process, on a local process pool (``--jobs N``) or as Ray tasks.

One scheduler serves every executor: a task starts when the tasks it needs are done; finished
work (a finished run, a stored evaluation) is reused without starting anything; a failing task
is reported and retried once, and when it fails again the tasks that need it are skipped while
the others go on. Ctrl-C (or SIGTERM) stops the running tasks the way a run stops — marked
``interrupted``, their last checkpoint kept — so running the study again continues them.
Progress: one line per finished task and an overall bar with the estimated time left.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from robustlayers.errors import ConfigError
from robustlayers.studies.tasks import Task
from robustlayers.studies.worker import already_done, run_task

EXECUTORS = ("local", "ray")
RETRIES = 1


class StudyInterrupted(KeyboardInterrupt):
    """The study was stopped (Ctrl-C or SIGTERM); finished tasks are kept."""


def _threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


class InlineBackend:
    """``--jobs 1``: each task in this process, one after another."""

    def __init__(self, study_dir: Path):
        self.study_dir, self.results = study_dir, {}

    def submit(self, task: Task) -> int:
        handle = len(self.results) + 1 + max(self.results, default=0)
        self.results[handle] = run_task(task.to_dict(), str(self.study_dir))
        return handle

    def wait(self, handles):
        return [(h, self.results.pop(h)) for h in handles]

    def stop(self, handles):
        pass


class PoolBackend:
    """``--jobs N``: a pool of N worker processes (spawned: no state shared with this one),
    each with cores/N threads."""

    def __init__(self, study_dir: Path, jobs: int):
        self.study_dir, self.jobs = study_dir, jobs
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))

    def submit(self, task: Task):
        return self.pool.submit(run_task, task.to_dict(), str(self.study_dir),
                                _threads_per_job(self.jobs))

    def wait(self, handles):
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        return [(h, h.result()) for h in finished]

    def stop(self, handles):
        for process in list(getattr(self.pool, "_processes", {}).values()):
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # the run stops as interrupted
        self.pool.shutdown(wait=True, cancel_futures=True)


def check_executor(executor: str, jobs: int, address: str | None) -> None:
    """ConfigError for an unknown executor, a bad job count or an address without Ray."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    if address is not None and executor != "ray":
        raise ConfigError("--address goes with --executor ray")


def make_backend(executor: str, study_dir: Path, jobs: int, address: str | None):
    check_executor(executor, jobs, address)
    if executor == "ray":
        from robustlayers.studies.ray_backend import RayBackend

        return RayBackend(study_dir, address=address, jobs=jobs)
    return InlineBackend(study_dir) if jobs == 1 else PoolBackend(study_dir, jobs)


def execute(tasks: list[Task], study_dir: Path, *, executor: str = "local", jobs: int = 1,
            address: str | None = None, quiet: bool = False, on_outcome=None) -> dict:
    """Run ``tasks`` (ordered by :func:`~robustlayers.studies.tasks.check_plan`) and return
    ``{key: outcome}``; ``on_outcome(outcome)`` is called after each (to save progress)."""
    study_dir = Path(study_dir)
    backend = make_backend(executor, study_dir, jobs, address)
    outcomes: dict[str, dict] = {}
    for task in tasks:  # finished work needs no worker
        path = already_done(task, study_dir)
        if path is not None:
            outcomes[task.key] = {"key": task.key, "kind": task.kind, "status": "reused",
                                  "path": str(path), "seconds": 0.0, "error": None}
    todo = [t for t in tasks if t.key not in outcomes]
    bar = tqdm(total=len(tasks), initial=len(outcomes), desc="study", unit="task",
               disable=quiet, file=sys.stderr, dynamic_ncols=True)
    if outcomes and not quiet:
        bar.write(f"{len(outcomes)} of {len(tasks)} tasks already done; reusing them")
    running: dict = {}
    attempts: dict[str, int] = {}
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) \
        if _main_thread() else None
    try:
        while todo or running:
            _skip_blocked(tasks, todo, outcomes, bar, on_outcome)
            for task in [t for t in todo if _ready(t, outcomes)]:
                if len(running) >= max(1, jobs):
                    break
                todo.remove(task)
                attempts[task.key] = attempts.get(task.key, 0) + 1
                running[backend.submit(task)] = task
            if not running:
                if todo:  # cannot happen for a checked plan; never spin
                    raise RuntimeError(f"no task can start: {[t.key for t in todo]}")
                continue
            for handle, outcome in backend.wait(list(running)):
                task = running.pop(handle)
                if outcome["status"] == "failed" and attempts[task.key] <= RETRIES:
                    bar.write(f"failed  {task.key}: {outcome['error']} (retrying once)")
                    todo.insert(0, task)
                    continue
                outcome["attempts"] = attempts[task.key]
                outcomes[task.key] = outcome
                bar.update(1)
                bar.write(_line(len(outcomes), len(tasks), outcome))
                if on_outcome:
                    on_outcome(outcome)
    except KeyboardInterrupt:
        backend.stop(list(running))
        raise StudyInterrupted() from None
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


def _ready(task: Task, outcomes: dict) -> bool:
    return all(n in outcomes for n in task.needs)


def _skip_blocked(tasks, todo, outcomes, bar, on_outcome) -> None:
    """Mark the tasks that need a failed or skipped task as skipped."""
    for task in list(todo):
        bad = [n for n in task.needs if outcomes.get(n, {}).get("status") in ("failed",
                                                                              "skipped")]
        if bad:
            todo.remove(task)
            outcome = {"key": task.key, "kind": task.kind, "status": "skipped", "path": None,
                       "seconds": 0.0, "error": f"needs {bad[0]}, which "
                                                f"{outcomes[bad[0]]['status']}"}
            outcomes[task.key] = outcome
            bar.update(1)
            bar.write(_line(len(outcomes), len(tasks), outcome))
            if on_outcome:
                on_outcome(outcome)


def _line(done: int, total: int, outcome: dict) -> str:
    text = f"[{done}/{total}] {outcome['status']:7s} {outcome['key']}"
    if outcome["status"] in ("done", "reused"):
        text += f"  {outcome['seconds']:.1f} s"
    if outcome.get("error"):
        text += f"  ({outcome['error']})"
    return text


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


