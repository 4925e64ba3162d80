"""A study's work as tasks: training runs and evaluations, with the tasks each one needs first.

A *train* task is a run config (:class:`~robustlayers.train.TrainConfig` keys). Its directory
is known before it runs — a run's identity is its config — so a stage-2 run names its stage-1
run in ``init_from`` at planning time, and a re-run of the study finds every finished run again.
An *evaluate* task calls a named function on finished runs and keeps its JSON answer in the
study folder (``evaluations/<key>-<hash>.json``), so it too is done once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

from robustlayers.errors import ConfigError

KINDS = ("train", "evaluate")
_KEY = re.compile(r"^[A-Za-z0-9][][A-Za-z0-9_.=+,:/-]*$")


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of a study. ``key`` names it in the plan, the tables and study.json;
    ``spec`` is the run config (train) or ``{"fn": "module:function", "args": {...}}``
    (evaluate); ``needs`` are the keys of the tasks that must finish first."""

    key: str
    kind: str
    spec: dict
    needs: tuple[str, ...] = ()
    label: str = ""

    def to_dict(self) -> dict:
        return {"key": self.key, "kind": self.kind, "spec": self.spec,
                "needs": list(self.needs), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict) -> "Task":
        return cls(data["key"], data["kind"], data["spec"], tuple(data.get("needs", ())),
                   data.get("label", ""))


def spec_hash(spec: dict) -> str:
    """8 hex digits of the SHA-256 of a task spec (JSON, sorted keys)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def train_task(key: str, config: dict, *, needs=(), label: str = "") -> Task:
    return Task(key, "train", dict(config), tuple(needs), label)


def evaluate_task(key: str, fn: str, args: dict, *, needs=(), label: str = "") -> Task:
    """An evaluation: ``fn`` ("package.module:function") is called with ``**args`` and returns a
    JSON-ready dict."""
    return Task(key, "evaluate", {"fn": fn, "args": dict(args)}, tuple(needs), label)


def run_path_of(task: Task) -> Path:
    """The run directory a train task trains into (before it exists)."""
    from robustlayers.train.runner import planned_run_path

    return planned_run_path(task.spec)


def evaluation_path(task: Task, study_dir: Path) -> Path:
    """Where an evaluate task keeps its answer: named by its key and the hash of its spec, so a
    changed evaluation is computed again and an unchanged one is reused."""
    safe = task.key.replace("/", "__").replace(":", "_")
    return Path(study_dir) / "evaluations" / f"{safe}-{spec_hash(task.spec)}.json"


def check_plan(tasks: list[Task]) -> list[Task]:
    """The tasks in an order where every task comes after the ones it needs; ConfigError for
    duplicate or malformed keys, unknown kinds, unknown needs and cycles."""
    by_key: dict[str, Task] = {}
    for task in tasks:
        if not _KEY.match(task.key):
            raise ConfigError(f"task key {task.key!r} must start with a letter or digit and "
                              f"hold only letters, digits and _ . = + , : / - [ ]")
        if task.kind not in KINDS:
            raise ConfigError(f"task {task.key!r}: kind {task.kind!r} is not one of "
                              f"{', '.join(KINDS)}")
        if task.key in by_key:
            raise ConfigError(f"two tasks share the key {task.key!r}")
        by_key[task.key] = task
    for task in tasks:
        missing = [n for n in task.needs if n not in by_key]
        if missing:
            raise ConfigError(f"task {task.key!r} needs {missing[0]!r}, which is not in the "
                              f"plan")
    ordered, state = [], {}

    def visit(key: str, chain: tuple[str, ...]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise ConfigError(f"tasks need each other in a cycle: {' -> '.join(chain + (key,))}")
        state[key] = "visiting"
        for need in by_key[key].needs:
            visit(need, chain + (key,))
        state[key] = "done"
        ordered.append(by_key[key])

    for task in tasks:
        visit(task.key, ())
    return ordered


def dependents(tasks: list[Task], key: str) -> set[str]:
    """Every task that needs ``key``, directly or through others."""
    out: set[str] = set()
    frontier = {key}
    while frontier:
        frontier = {t.key for t in tasks if set(t.needs) & frontier} - out
        out |= frontier
    return out
