"""The run index: one SQLite table (``ROOT/runs.sqlite``) with one row per run under ROOT.

The run directories are the source of truth; the index is a summary for listing and comparing
that can always be rebuilt with :meth:`RunIndex.rescan`. An index that is not a readable SQLite
database (or lacks the expected table) is moved aside as ``runs.sqlite.corrupt-*`` and rebuilt from
the run directories, with a :class:`RunStoreWarning`; a run directory whose files cannot be read
is skipped by :meth:`RunIndex.rescan` with a warning naming it. It is safe with several processes
writing at once: WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` transactions (each upsert is
all-or-nothing) and retries when the database stays locked beyond the timeout.

Summary metrics are read from the run's files (see :func:`summarize_run`): per-epoch rows in
``metrics.jsonl`` carry ``robust_acc`` and ``clean_acc`` (accuracies in [0, 1] on the evaluation
set); ``result.json`` may override ``clean_acc``, ``robust_acc_best``, ``robust_acc_last`` and
``best_epoch``.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from robustlayers.errors import ConfigError, RunError, RunStoreError
from robustlayers.runs.atomic import dumps_json
from robustlayers.runs.rundir import STATUSES, RunDir, RunStoreWarning, iter_run_dirs

INDEX_FILE = "runs.sqlite"
COLUMNS = {
    "id": "TEXT PRIMARY KEY", "path": "TEXT", "method": "TEXT", "model": "TEXT",
    "dataset": "TEXT", "status": "TEXT", "created": "TEXT", "updated": "TEXT",
    "epochs_done": "INTEGER", "clean_acc": "REAL", "robust_acc_best": "REAL",
    "robust_acc_last": "REAL", "best_epoch": "INTEGER", "gap": "REAL", "seed": "INTEGER",
    "config_json": "TEXT", "result_json": "TEXT",
}
SUMMARY_COLUMNS = tuple(c for c in COLUMNS if c not in ("config_json", "result_json"))
# Metric names looked up in metrics rows, first present wins.
ROBUST_KEYS = ("robust_acc", "test_robust_acc", "val_robust_acc", "eval_robust_acc")
CLEAN_KEYS = ("clean_acc", "test_clean_acc", "val_clean_acc", "eval_clean_acc")
FILTERS = ("method", "status", "model", "dataset", "seed")
# What a run directory's files may raise when they cannot be read (RunStoreError and the other
# library errors are ValueErrors).
UNREADABLE = (ValueError, OSError)


def _corrupt(err: sqlite3.DatabaseError) -> bool:
    """True for errors meaning the file is no (usable) runs index, as opposed to a locked or
    unopenable one."""
    if type(err) is sqlite3.DatabaseError:  # "file is not a database", "malformed"
        return True
    text = str(err).lower()
    return isinstance(err, sqlite3.OperationalError) and any(
        s in text for s in ("malformed", "no such table", "no such column", "has no column"))


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    return None


def _name_of(value: Any) -> Any:
    """A config entry that may be a name or a dict with a ``name``."""
    return value.get("name") if isinstance(value, Mapping) else value


def summarize_run(run: RunDir | str | os.PathLike, *, run_id: str | None = None) -> dict[str, Any]:
    """The index row of a run directory, computed from its files (no database involved)."""
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    config, result = run.config, run.result or {}
    rows = run.metrics()
    scored = [(r["epoch"], _first(r, ROBUST_KEYS)) for r in rows if _first(r, ROBUST_KEYS) is not None]
    best_epoch, best = (None, None)
    for epoch, acc in scored:
        if best is None or acc > best:
            best_epoch, best = epoch, acc
    last = scored[-1][1] if scored else None
    clean_rows = [_first(r, CLEAN_KEYS) for r in rows if _first(r, CLEAN_KEYS) is not None]
    best = result.get("robust_acc_best", best)
    last = result.get("robust_acc_last", last)
    env = run.environment
    return {
        "id": run_id if run_id is not None else run.path.name,
        "path": str(run.path.resolve()),
        "method": _name_of(config.get("method")),
        "model": _name_of(config.get("model")),
        "dataset": _name_of(config.get("dataset")),
        "status": run.status,
        "created": env.get("created"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "epochs_done": len({r["epoch"] for r in rows}),
        "clean_acc": result.get("clean_acc", clean_rows[-1] if clean_rows else None),
        "robust_acc_best": best,
        "robust_acc_last": last,
        "best_epoch": result.get("best_epoch", best_epoch),
        "gap": best - last if best is not None and last is not None else None,
        "seed": config.get("seed"),
        "config_json": dumps_json(config, indent=None),
        "result_json": dumps_json(run.result, indent=None) if run.result is not None else None,
    }


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def compare_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Side-by-side data for several index rows: ``{"runs": [summary rows], "differing_config":
    {dotted key: [value per run]}}`` (config keys whose values are not all equal)."""
    configs = [_flatten(json.loads(r.get("config_json") or "{}")) for r in rows]
    keys = sorted(set().union(*configs)) if configs else []
    missing = object()
    differing = {}
    for key in keys:
        values = [c.get(key, missing) for c in configs]
        if any(v != values[0] for v in values):
            differing[key] = [None if v is missing else v for v in values]
    return {"runs": [{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows],
            "differing_config": differing}


def unknown_run_error(run_id: str, known: Sequence[str], root: Path) -> RunError:
    """RunError for an unknown run id listing the known ids, closest first."""
    close = difflib.get_close_matches(run_id, known, n=5, cutoff=0.3)
    ordered = close + [k for k in known if k not in close]
    shown = ", ".join(ordered[:20]) + (f", … ({len(ordered) - 20} more)" if len(ordered) > 20 else "")
    return RunError(f"unknown run {run_id!r} under {root}; known runs: {shown or 'none'}")


class RunIndex:
    """SQLite index of the runs under ``root`` (created when ``create=True``)."""

    def __init__(self, root: str | os.PathLike, *, timeout: float = 30.0, create: bool = True,
                 retries: int = 20):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise RunError(f"runs root {self.root} is a file; a folder of runs is expected")
        if not self.root.is_dir():
            if not create:
                raise FileNotFoundError(
                    f"runs root {self.root} does not exist; pass --root DIR or set ROBUSTLAYERS_RUNS"
                )
            self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / INDEX_FILE
        if self.db_path.is_dir():
            raise RunStoreError(f"runs index {self.db_path} is a folder; move it away (the index "
                                "is rebuilt from the run directories)")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self._rebuilding = False
        self._retry(self._init_schema)

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.db_path), timeout=self.timeout, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        con.row_factory = sqlite3.Row
        return con

    def _retry(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(connection)`` (see :meth:`_retry_locked`); a corrupt index is rebuilt once
        and ``fn`` run again; any other SQLite error becomes a RunStoreError naming the file."""
        try:
            return self._retry_locked(fn)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as err:
            if type(err) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise  # IntegrityError, ProgrammingError: a bad row, not a bad file
            if self._rebuilding or not _corrupt(err):
                raise RunStoreError(f"runs index {self.db_path}: {err}") from err
            self._rebuild(err)
        try:
            return self._retry_locked(fn)
        except sqlite3.OperationalError as err:
            raise RunStoreError(f"runs index {self.db_path}: {err}") from err

    def _rebuild(self, err: BaseException) -> None:
        """Move the corrupt index (and its WAL files) aside, create a new one and fill it from
        the run directories, warning about it."""
        aside = self.db_path.with_name(f"{INDEX_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
                                       f"-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            try:  # another process may have moved it already
                os.replace(f"{self.db_path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        self._rebuilding = True
        try:
            self._retry_locked(self._init_schema)
            found = self.rescan()
        finally:
            self._rebuilding = False
        warnings.warn(f"runs index {self.db_path} was unreadable ({err}); moved it to "
                      f"{aside.name} and rebuilt it from the {found} run directories under "
                      f"{self.root}", RunStoreWarning, stacklevel=4)

    def _retry_locked(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(connection)``, retrying while SQLite reports the database locked/busy.
        Back-off is deterministic (no use of the global RNG, which training seeds)."""
        for attempt in range(self.retries + 1):
            con = self._connect()
            try:
                return fn(con)
            except sqlite3.OperationalError as err:
                text = str(err).lower()
                if attempt == self.retries or not ("locked" in text or "busy" in text):
                    raise
            finally:
                con.close()
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (1 + (os.getpid() % 97) / 97))
        raise AssertionError("unreachable")

    @staticmethod
    def _transaction(con: sqlite3.Connection, statements: Callable[[], None]) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            statements()
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _init_schema(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA journal_mode=WAL")
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._transaction(con, lambda: con.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})"))
        present = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
        missing = [name for name in COLUMNS if name not in present]
        if missing:  # an index written by another version: rebuilt by _retry
            raise sqlite3.DatabaseError(f"the runs table lacks the columns {missing}")

    # ------------------------------------------------------------------ writing
    def _row_of(self, item: RunDir | str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(item, Mapping):
            unknown = set(item) - set(COLUMNS)
            if "id" not in item or unknown:
                raise ConfigError(
                    f"an index row needs an 'id' and only these columns {list(COLUMNS)}; "
                    f"unknown: {sorted(unknown)}"
                )
            return dict(item)
        run = item if isinstance(item, RunDir) else RunDir.open(item)
        return summarize_run(run, run_id=self.id_of(run.path))

    def id_of(self, path: str | os.PathLike) -> str:
        """The id of a run directory: its path relative to the root (POSIX separators)."""
        resolved, root = Path(path).resolve(), self.root.resolve()
        try:
            relative = resolved.relative_to(root)
        except ValueError:
            raise RunError(f"run directory {path} is not under the index root {self.root}") from None
        if not relative.parts:
            raise RunError(f"the index root {self.root} itself is not a run id")
        return relative.as_posix()

    def upsert(self, item: RunDir | str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
        """Insert or update one run (a RunDir, a run dir path, or a row dict with an ``id``) in
        one transaction; returns the row written. ``created`` of an existing row is kept."""
        return self.upsert_many([item])[0]

    def upsert_many(self, items: Iterable[RunDir | str | os.PathLike | Mapping[str, Any]], *,
                    skip_unreadable: bool = False) -> list[dict]:
        """Upsert several runs in a single all-or-nothing transaction. With
        ``skip_unreadable`` a run directory whose files cannot be read is left out with a
        :class:`RunStoreWarning` naming it (its row, if any, is kept)."""
        rows = []
        for item in items:
            try:
                rows.append(self._row_of(item))
            except UNREADABLE as err:
                if not skip_unreadable or isinstance(item, Mapping):
                    raise
                warnings.warn(f"skipped run directory {getattr(item, 'path', item)}: {err}",
                              RunStoreWarning, stacklevel=2)

        def write(con: sqlite3.Connection) -> None:
            def statements() -> None:
                for row in rows:
                    cols = list(row)
                    updates = ", ".join(
                        "created=COALESCE(runs.created, excluded.created)" if c == "created"
                        else f"{c}=excluded.{c}" for c in cols if c != "id"
                    )
                    sql = (f"INSERT INTO runs ({', '.join(cols)}) VALUES "
                           f"({', '.join('?' * len(cols))}) ON CONFLICT(id) DO "
                           + (f"UPDATE SET {updates}" if updates else "NOTHING"))
                    con.execute(sql, [row[c] for c in cols])
            self._transaction(con, statements)

        if rows:
            self._retry(write)
        return rows

    def remove(self, run_id: str) -> bool:
        """Delete one row (not the run directory); True if it existed."""
        def delete(con: sqlite3.Connection) -> int:
            cursor = con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return cursor.rowcount
        return bool(self._retry(delete))

    def rescan(self, *, prune: bool = False) -> int:
        """Upsert every run directory under the root (one transaction); with ``prune`` also drop
        rows whose directory is gone. Returns the number of runs found."""
        paths = [p for p in iter_run_dirs(self.root) if p.resolve() != self.root.resolve()]
        self.upsert_many(paths, skip_unreadable=True)
        if prune:
            found = {self.id_of(p) for p in paths}
            for run_id in set(self.ids()) - found:
                self.remove(run_id)
        return len(paths)

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._retry(lambda con: [dict(r) for r in con.execute(sql, params).fetchall()])

    def ids(self) -> list[str]:
        """All run ids, sorted."""
        return [r["id"] for r in self._query("SELECT id FROM runs ORDER BY id")]

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching every given filter (``method``, ``status``, ``model``, ``dataset``,
        ``seed``; ``None`` means any), oldest first."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise ConfigError(f"unknown filters {sorted(unknown)}; valid: {list(FILTERS)}")
        status = filters.get("status")
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown status {status!r}; valid: {list(STATUSES)}")
        where = [(k, v) for k, v in filters.items() if v is not None]
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k, _ in where)
        return self._query(sql + " ORDER BY created, id", [v for _, v in where])

    def get(self, run_id: str) -> dict[str, Any]:
        """The row of ``run_id``; RunError listing the known ids when there is none."""
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise unknown_run_error(run_id, self.ids(), self.root)
        return rows[0]

    def compare(self, ids: Sequence[str]) -> dict[str, Any]:
        """:func:`compare_rows` of the given runs, in the given order."""
        return compare_rows([self.get(run_id) for run_id in ids])

    def run_dir(self, run_id: str) -> RunDir:
        """Open the run directory of ``run_id``."""
        return RunDir.open(self.root / self.get(run_id)["id"])
