"""``robustlayers runs``: list, show and compare the training runs under a runs root.

    robustlayers runs list [--root DIR] [--method M] [--status S] [--json]
    robustlayers runs show RUN [--root DIR] [--json]
    robustlayers runs compare RUN RUN... [--root DIR] [--json]

RUN is a run id (the run directory relative to the root, as ``runs list`` prints it) or a path
to a run directory. The root defaults to ``runs/``; the ROBUSTLAYERS_RUNS environment variable
overrides that default, ``--root`` overrides both.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from robustlayers.cli.common import print_json, print_table
from robustlayers.errors import ConfigError
from robustlayers.runs import RunDir, RunIndex, compare_rows, iter_run_dirs, summarize_run
from robustlayers.runs.index import INDEX_FILE, SUMMARY_COLUMNS, unknown_run_error
from robustlayers.runs.rundir import STATUSES

ENV_ROOT = "ROBUSTLAYERS_RUNS"
DEFAULT_ROOT = "runs"
LIST_COLUMNS = {  # column key -> header
    "id": "id", "method": "method", "model": "model", "dataset": "dataset", "status": "status",
    "epochs_done": "epochs", "clean_acc": "clean%", "robust_acc_best": "robust% best",
    "robust_acc_last": "robust% last", "gap": "gap", "best_epoch": "best ep",
}
PERCENT = ("clean_acc", "robust_acc_best", "robust_acc_last", "gap")
COMPARE_FIELDS = ("method", "model", "dataset", "seed", "status", "epochs_done", "clean_acc",
                  "robust_acc_best", "robust_acc_last", "gap", "best_epoch")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``runs`` and its actions; returns the ``runs`` parser."""
    parser = subparsers.add_parser(
        "runs", help="list, show and compare training runs",
        description="Inspect the run store: the run directories under a runs root and their "
        f"SQLite index ({INDEX_FILE}). The root is --root, else ${ENV_ROOT}, else ./{DEFAULT_ROOT}.",
    )
    actions = parser.add_subparsers(dest="runs_action", metavar="ACTION")
    actions.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", default=None,
                       help=f"runs root (default: ${ENV_ROOT} or {DEFAULT_ROOT}/)")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = actions.add_parser("list", help="one line per run, with key metrics")
    common(p)
    p.add_argument("--method", default=None, help="only runs of this method")
    p.add_argument("--status", default=None, choices=STATUSES, help="only runs in this state")
    p.add_argument("--model", default=None, help="only runs of this model")
    p.add_argument("--dataset", default=None, help="only runs on this dataset")
    p.add_argument("--rescan", action="store_true",
                   help="rebuild every index row from the run directories first")

    p = actions.add_parser("show", help="config, metrics table and result of one run")
    p.add_argument("run", metavar="RUN", help="run id (see `runs list`) or run directory")
    common(p)

    p = actions.add_parser("compare", help="key metrics of several runs side by side")
    p.add_argument("runs", metavar="RUN", nargs="+", help="two or more run ids or directories")
    common(p)
    return parser


def runs_root(args: argparse.Namespace) -> Path:
    """--root, else $ROBUSTLAYERS_RUNS, else ``runs``."""
    return Path(args.root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


def _known_ids(root: Path) -> list[str]:
    ids = set()
    if (root / INDEX_FILE).is_file():
        ids |= set(RunIndex(root, create=False).ids())
    ids |= {p.relative_to(root).as_posix() for p in iter_run_dirs(root) if p != root}
    return sorted(ids)


def open_run(spec: str, root: Path) -> tuple[str, RunDir]:
    """``(run id, RunDir)`` for a run id under ``root`` or a run directory path; ValueError
    listing the known ids otherwise."""
    if RunDir.is_run_dir(root / spec) and Path(spec).parts and not Path(spec).is_absolute():
        return Path(spec).as_posix(), RunDir.open(root / spec)
    if RunDir.is_run_dir(spec):
        path = Path(spec).resolve()
        try:
            return path.relative_to(root.resolve()).as_posix(), RunDir.open(path)
        except ValueError:
            return str(spec), RunDir.open(path)
    raise unknown_run_error(spec, _known_ids(root) if root.is_dir() else [], root)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if (key in PERCENT or key.endswith("_acc")) and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _summary(row: dict) -> dict:
    return {c: row.get(c) for c in SUMMARY_COLUMNS}


# ---------------------------------------------------------------------- list
def _list(args: argparse.Namespace) -> int:
    root = runs_root(args)
    index = RunIndex(root, create=False)
    if args.rescan:
        index.rescan(prune=True)
    else:  # index new run dirs, refresh the rows of runs still in progress
        rows = {r["id"]: r for r in index.list()}
        stale = [p for p in iter_run_dirs(root) if p != root
                 and rows.get(index.id_of(p), {"status": "running"})["status"]
                 in ("running", "dead", "interrupted")]
        index.upsert_many(stale, skip_unreadable=True)
    rows = index.list(method=args.method, status=args.status, model=args.model,
                      dataset=args.dataset)
    if args.json:
        print_json([_summary(r) for r in rows])
        return 0
    if not rows:
        print(f"no runs under {root}" + (" matching the filters" if any(
            (args.method, args.status, args.model, args.dataset)) else ""))
        return 0
    table = [{LIST_COLUMNS[k]: _fmt(k, r.get(k)) for k in LIST_COLUMNS} for r in rows]
    print_table(table, list(LIST_COLUMNS.values()))
    return 0


# ---------------------------------------------------------------------- show
def _metrics_columns(rows: list[dict]) -> list[str]:
    columns = ["epoch"]
    for row in rows:
        for key, value in row.items():
            wanted = key == "lr" or "acc" in key or "loss" in key
            if wanted and key not in columns and not isinstance(value, (list, dict)):
                columns.append(key)
    return columns


def _flat(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict) and obj:
        return [item for k, v in obj.items() for item in _flat(v, f"{prefix}{k}.")]
    return [(prefix[:-1], obj)]


def _show(args: argparse.Namespace) -> int:
    run_id, run = open_run(args.run, runs_root(args))
    metrics = run.metrics()
    summary = _summary(summarize_run(run, run_id=run_id))
    record = {
        "id": run_id, "path": str(run.path), "status": run.status, "summary": summary,
        "config": run.config, "selections": run.selections, "environment": run.environment,
        "metrics": metrics, "result": run.result, "checkpoints": run.checkpoint_tags(),
    }
    if args.json:
        print_json(record)
        return 0
    print(f"run {run_id}  ({run.path})  status: {run.status}")
    print("\nconfig:")
    for key, value in _flat(run.config):
        print(f"  {key}: {value}")
    if record["selections"]:
        print("\nselections:")
        for label, sel in record["selections"].items():
            names = sel["names"]
            shown = ", ".join(names[:6]) + (f", … ({len(names)} layers)" if len(names) > 6 else "")
            print(f"  {label}: {sel.get('expression')!s} -> {shown}")
    print("\nmetrics (accuracies in %):" if metrics else "\nmetrics: none yet")
    if metrics:
        columns = _metrics_columns(metrics)
        print_table([{c: _fmt(c, r.get(c)) for c in columns} for r in metrics], columns)
    print("\nsummary (accuracies and gap in %):")
    for key in COMPARE_FIELDS:
        print(f"  {key}: {_fmt(key, summary.get(key))}")
    print(f"\ncheckpoints: {', '.join(record['checkpoints']) or 'none'}")
    if run.result is not None:
        print("\nresult:")
        for key, value in _flat({k: v for k, v in run.result.items() if k not in ("best", "last")}):
            print(f"  {key}: {value}")
    for note in run.warnings:
        print(f"warning: {note}")
    return 0


# ---------------------------------------------------------------------- compare
def _compare(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise ConfigError(f"compare needs at least two runs, got {len(args.runs)}: "
                          f"{' '.join(args.runs)}")
    root = runs_root(args)
    rows = [summarize_run(run, run_id=run_id) for run_id, run in
            (open_run(spec, root) for spec in args.runs)]
    comparison = compare_rows(rows)
    if args.json:
        print_json(comparison)
        return 0
    ids = [r["id"] for r in comparison["runs"]]
    table = [{"": key, **{i: _fmt(key, r.get(key)) for i, r in zip(ids, comparison["runs"])}}
             for key in COMPARE_FIELDS]
    table += [{"": f"config.{key}", **{i: _fmt(key, v) for i, v in zip(ids, values)}}
              for key, values in comparison["differing_config"].items()
              if key not in ("method", "model", "dataset", "seed")]
    print_table(table, [""] + ids)
    print("(accuracies and gap in %)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``runs list|show|compare``."""
    return {"list": _list, "show": _show, "compare": _compare}[args.runs_action](args)
