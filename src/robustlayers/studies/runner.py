"""Run a study: plan, print the plan, execute, analyse, write ``study.json`` and ``report.html``.

The study folder (``--out``, default ``studies/<name>-<preset>``) holds ``runs/`` (the runs,
each named by its config), ``evaluations/``, ``study.json`` (the plan, every task's outcome,
the tables, the claims with their verdicts, what produced them) and ``report.html``. Running the
same study into the same folder again reuses every finished run and evaluation; an interrupted
study continues where it stopped (``--resume FOLDER`` takes its options from study.json).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sys
import time
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.base import RUNTIME_OPTIONS, Results, Study
from robustlayers.studies.claims import count
from robustlayers.studies.cost import estimate_seconds
from robustlayers.studies.execute import StudyInterrupted, check_executor, execute
from robustlayers.studies.tasks import check_plan, evaluation_path, run_path_of

STUDY_FILE = "study.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def plan_study(study: Study, opts, out: Path, runs_root: Path | None = None) -> list:
    """The study's checked, ordered tasks (runs under ``runs_root``, default ``out/runs``);
    every run config validated (errors before any work)."""
    from robustlayers.train.runner import resolve_config

    tasks = check_plan(study.plan(opts, Path(runs_root or Path(out) / "runs").resolve()))
    for task in tasks:
        if task.kind == "train":
            try:
                resolve_config(task.spec)
            except ConfigError as err:
                raise ConfigError(f"study {study.name}, run {task.key}: {err}") from None
    return tasks


def describe_plan(study: Study, tasks: list, out: Path, *, estimate: bool = True) -> tuple:
    """(the plan as text lines, plan records with paths and estimated seconds)."""
    records, total = [], 0.0
    for task in tasks:
        seconds = estimate_seconds(task) if estimate else None
        total += seconds or 0.0
        path = run_path_of(task) if task.kind == "train" else evaluation_path(task, out)
        records.append(dict(task.to_dict(), path=str(path), estimated_s=seconds))
    runs = sum(t.kind == "train" for t in tasks)
    lines = [f"study {study.name} ({study.paper}): {runs} training runs, "
             f"{len(tasks) - runs} evaluations -> {Path(out).resolve()}"]
    for rec in records:
        needs = f"  after {', '.join(rec['needs'])}" if rec["needs"] else ""
        cost = f"  ~{rec['estimated_s']:.0f} s" if rec["estimated_s"] is not None else ""
        lines.append(f"  {rec['kind']:8s} {rec['key']}{cost}{needs}")
    if estimate:
        lines.append(f"estimated training cost on this machine: ~{total / 60:.1f} min with one "
                     f"job (measured forward-backward throughput; evaluations not counted)")
    return lines, records


def _identity(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in RUNTIME_OPTIONS}


def _executions(out: Path) -> list[dict]:
    """The executions recorded by earlier runs of the study in ``out`` (wall time, executor,
    tasks done and reused each), so that a re-run that only reuses keeps the first timing."""
    try:
        return list(json.loads((out / STUDY_FILE).read_text(encoding="utf-8"))
                    .get("executions", []))
    except (OSError, ValueError):
        return []


def _check_folder(out: Path, study: Study, preset: str, options: dict) -> None:
    path = out / STUDY_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("study") != study.name or _identity(saved.get("options", {})) != \
            _identity(options):
        diff = sorted(k for k in set(options) | set(saved.get("options", {}))
                      if k not in RUNTIME_OPTIONS
                      and options.get(k) != saved.get("options", {}).get(k))
        raise ConfigError(f"{out} holds study {saved.get('study')!r} with other options "
                          f"({', '.join(diff[:4]) or 'study name'}); choose another --out, or "
                          f"--resume {out} to continue that study")


def run_study(study: Study, opts, *, preset: str, out: str | Path, executor: str = "local",
              jobs: int = 1, address: str | None = None, dry_run: bool = False,
              quiet: bool = False, log=print, runs_root: str | Path | None = None) -> dict:
    """Plan and run ``study`` with options ``opts`` into ``out``; return the study record
    (what study.json holds). ``dry_run`` prints the plan and returns it without running.
    ``runs_root`` (default ``out/runs``) may be shared by several studies: a run one of them
    trained is found again by the others (the same config is the same run)."""
    from robustlayers.provenance import environment
    from robustlayers.runs import atomic_write_json

    out = Path(out)
    check_executor(executor, jobs, address)
    options = dataclasses.asdict(opts)
    _check_folder(out, study, preset, options)
    tasks = plan_study(study, opts, out, runs_root)
    lines, plan = describe_plan(study, tasks, out)
    for line in lines:
        log(line)
    record = {"study": study.name, "paper": study.paper, "summary": study.summary,
              "preset": preset, "options": options, "plan": plan, "status": "planned",
              "executor": {"name": executor, "jobs": jobs, "address": address},
              "runs_root": str(Path(runs_root or out / "runs").resolve()),
              "created": _now(), "environment": environment()}
    if dry_run:
        return record
    out.mkdir(parents=True, exist_ok=True)
    outcomes: dict = {}
    record.update(status="running", outcomes=outcomes, executions=_executions(out))

    def save(outcome=None):
        if outcome is not None:
            outcomes[outcome["key"]] = outcome
        record["updated"] = _now()
        atomic_write_json(out / STUDY_FILE, record)

    save()
    began = time.perf_counter()
    try:
        outcomes.update(execute(tasks, out, executor=executor, jobs=jobs, address=address,
                                quiet=quiet, on_outcome=save))
    except StudyInterrupted:
        record["status"] = "interrupted"
        save()
        print(f"study interrupted; finished runs are kept. Continue with: robustlayers study "
              f"--resume {out}", file=sys.stderr)
        raise
    record["wall_s"] = round(time.perf_counter() - began, 1)
    record["executions"].append({
        "finished": _now(), "wall_s": record["wall_s"], **record["executor"],
        **{s: sum(o["status"] == s for o in outcomes.values()) for s in ("done", "reused")}})
    record.update(study.analyse(opts, Results(tasks, outcomes)))
    failed = [k for k, o in outcomes.items() if o["status"] not in ("done", "reused")]
    record["status"] = "finished" if not failed else "partial"
    record["verdicts"] = count(record.get("claims", []))
    from robustlayers.studies.report import write_study_report

    save()
    record["report"] = str(write_study_report([record], out / "report.html"))
    save()
    return record
