"""The run directory: one training run's config, metrics, checkpoints and result on disk.

Layout::

    RUN/config.json        resolved config ("model", "dataset", "method", "model_kwargs", "seed", ...)
    RUN/selections.json    {label: {"expression": .., "names": [..]}} for every selection used
    RUN/environment.json   robustlayers.provenance.environment() + "created" (+ "resumes")
    RUN/metrics.jsonl      one JSON line per epoch (each row has an int "epoch")
    RUN/checkpoints/epoch-0003/{model.safetensors, state.pt, manifest.json}
    RUN/checkpoints/best/...
    RUN/result.json        at the end; its "status" is "finished" or "failed"

Every file except the append-only ``metrics.jsonl`` is written atomically (see ``atomic``). A new
run directory appears complete or not at all: it is built as a hidden ``.tmp-<name>-*`` sibling
and renamed into place once config.json, environment.json and selections.json are written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from robustlayers.errors import ConfigError, RunError, RunStoreError, describe_value
from robustlayers.runs import checkpoint as ck
from robustlayers.runs import metrics as _metrics
from robustlayers.runs.atomic import _UMASK, atomic_write_json, dumps_json, fsync_dir
from robustlayers.runs.paths import check_output_path

if TYPE_CHECKING:
    from torch import nn

CONFIG_FILE = "config.json"
SELECTIONS_FILE = "selections.json"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINTS_DIR = "checkpoints"
STATUSES = ("running", "finished", "failed", "interrupted", "diverged", "dead")
WRITTEN_STATUSES = ("finished", "failed", "interrupted", "diverged")
"""What result.json may say; ``running`` is a run without one, ``dead`` a running one whose
owner process is gone (see ``robustlayers.runs.liveness``)."""
TMP_PREFIX = ".tmp-"  # a run directory under construction (see RunDir.create)


class CheckpointWarning(UserWarning):
    """An incomplete or corrupt checkpoint was skipped."""


class RunStoreWarning(UserWarning):
    """A corrupt runs index was rebuilt, or an unreadable run directory or folder skipped."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json_file(path: Path, *, expect: type | None = dict) -> Any:
    """The JSON content of ``path``; RunStoreError naming the file (and the line and column of
    a parse error) when it cannot be read or is not an ``expect`` (``None``: any type)."""
    try:
        text = path.read_text(encoding="utf-8")
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunStoreError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: "
                            f"{err.msg})") from None
    except UnicodeDecodeError as err:
        raise RunStoreError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise RunStoreError(f"cannot read {path}: {err.strerror or err}") from None
    if expect is not None and not isinstance(value, expect):
        raise RunStoreError(f"{path} holds {describe_value(value, 40)}; a JSON "
                            f"{'object' if expect is dict else expect.__name__} was expected")
    return value


def _normalise(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples → lists, tensors → numbers)."""
    return json.loads(dumps_json(obj, indent=None))


def selection_record(selection: Any) -> dict[str, Any]:
    """``{"expression", "names"}`` of a ResolvedSelection, such a dict, or a list of names."""
    if hasattr(selection, "names") and hasattr(selection, "expression"):
        return {"expression": str(selection.expression), "names": list(selection.names)}
    if isinstance(selection, Mapping) and "names" in selection:
        return {"expression": selection.get("expression"), "names": list(selection["names"])}
    if isinstance(selection, (list, tuple)) and all(isinstance(n, str) for n in selection):
        return {"expression": None, "names": list(selection)}
    raise ConfigError(
        "a selection record must be a ResolvedSelection, a dict with 'names' (and "
        f"'expression'), or a list of layer names; got {type(selection).__name__}"
    )


class RunDir:
    """Handle on one run directory. Make it with :meth:`create` or :meth:`open`.

    ``warnings`` collects what was skipped on the last read (torn metrics line, incomplete or
    corrupt checkpoints); the same messages are also issued as :class:`CheckpointWarning`.
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any]):
        self.path = Path(path)
        self.config = config
        self.warnings: list[str] = []
        self._metrics_repaired = False

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        selections: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> "RunDir":
        """Create a new run directory holding ``config``.

        ``path`` must be absent or an empty directory; the run is built in a hidden temporary
        sibling and renamed into place complete (config.json, environment.json,
        selections.json, checkpoints/), so a crash never leaves a half-written run at ``path``.
        An existing non-empty directory is refused unless ``exist_ok=True`` (resume): then it
        must be a run dir whose config equals ``config``; a ``failed`` result is cleared and
        the resume is recorded in ``environment.json``. Resuming a finished run is refused.
        """
        if not isinstance(config, Mapping):
            raise ConfigError(f"config must be a dict, got {describe_value(config)}")
        config = _normalise(dict(config))
        path = Path(path)
        if not path.is_dir():  # a new run: checked before anything is written (an existing
            check_output_path(path, kind="dir")  # empty dir is not probed: others may race)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise RunError(f"{path} exists and is not a directory")
            if any(path.iterdir()):
                if not exist_ok:
                    raise RunError(
                        f"run directory {path} already exists and is not empty; pass "
                        "exist_ok=True to resume it, or choose another path"
                    )
                return cls._resume(path, config, selections)
        return cls._create_new(path, config, selections)

    @classmethod
    def _create_new(
        cls, path: Path, config: dict[str, Any], selections: Mapping[str, Any] | None
    ) -> "RunDir":
        """Build the run directory as a hidden ``.tmp-<name>-*`` sibling holding config.json,
        environment.json, selections.json and checkpoints/, then rename it to ``path`` (an
        absent or empty directory), so that ``path`` never holds a partial run: a crash leaves
        at most a hidden temporary directory, which :func:`iter_run_dirs` skips."""
        from robustlayers.provenance import environment

        dest = path.resolve() if path.is_symlink() else path  # a link to an empty dir stays
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dest.name}-", dir=dest.parent))
        try:
            os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private (0700)
            atomic_write_json(tmp / CONFIG_FILE, config)
            atomic_write_json(tmp / ENVIRONMENT_FILE,
                              {**environment(), "created": _now(), "resumes": []})
            records = {str(label): selection_record(sel)
                       for label, sel in (selections or {}).items()}
            atomic_write_json(tmp / SELECTIONS_FILE, records)
            (tmp / CHECKPOINTS_DIR).mkdir()
            fsync_dir(tmp)
            try:
                # replaces an empty directory at ``path`` too; refuses a non-empty one
                os.rename(tmp, dest)
            except OSError as err:
                if dest.is_dir() and any(dest.iterdir()):
                    raise RunError(
                        f"run directory {path} was created by someone else meanwhile and is "
                        "not empty; choose another path"
                    ) from err
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(dest.parent)
        return cls(path, config)

    @classmethod
    def _resume(cls, path: Path, config: dict[str, Any], selections: Mapping | None) -> "RunDir":
        run = cls.open(path)
        if run.config != config:
            keys = sorted(
                k for k in set(run.config) | set(config) if run.config.get(k) != config.get(k)
            )
            raise RunError(
                f"cannot resume {path}: its config.json differs from the given config in {keys}; "
                "resume with RunDir.open(path).config or start a new run directory"
            )
        if run.status == "finished":
            raise RunError(f"cannot resume {path}: the run is already finished (result.json)")
        if (path / RESULT_FILE).exists():  # a failed attempt: running again
            os.unlink(path / RESULT_FILE)
            fsync_dir(path)
        from robustlayers.provenance import environment

        env = run.environment
        env.setdefault("resumes", []).append({**environment(), "time": _now()})
        atomic_write_json(path / ENVIRONMENT_FILE, env)
        (path / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        ck.cleanup(run.checkpoint_root)
        if selections:
            run.record_selections(selections)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """Open an existing run directory: RunError naming the missing config.json if it is
        none, RunStoreError naming the file if its config.json cannot be read."""
        if not isinstance(path, (str, os.PathLike)):
            raise RunError(f"a run directory is a path, got {describe_value(path)}")
        path = Path(path)
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            what = "does not exist" if not path.exists() else "is not a run directory"
            raise RunError(f"{path} {what}: {config_path} is missing")
        return cls(path, read_json_file(config_path))

    @staticmethod
    def is_run_dir(path: str | os.PathLike) -> bool:
        """True when ``path`` holds a ``config.json``."""
        return (Path(path) / CONFIG_FILE).is_file()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def _read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        if not path.is_file():
            return default
        return read_json_file(path)

    @property
    def environment(self) -> dict[str, Any]:
        """The recorded environment (``{}`` if absent)."""
        return self._read_json(ENVIRONMENT_FILE, {})

    # ------------------------------------------------------------------ selections
    @property
    def selections(self) -> dict[str, dict[str, Any]]:
        """``{label: {"expression", "names"}}`` of the selections recorded so far."""
        return self._read_json(SELECTIONS_FILE, {})

    def record_selections(self, selections: Mapping[str, Any]) -> None:
        """Add resolved selections under their labels; re-recording a label with different
        names is a ValueError (use a new label)."""
        current = self.selections
        for label, selection in selections.items():
            record = selection_record(selection)
            old = current.get(label)
            if old is not None and old["names"] != record["names"]:
                raise RunError(
                    f"selection {label!r} is already recorded in {self.path} with other layer "
                    f"names ({old['names'][:5]}…); record the new one under another label"
                )
            current[str(label)] = record
        atomic_write_json(self.path / SELECTIONS_FILE, current)

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's metrics (a dict with an int ``"epoch"``) as a JSON line; flushed
        and fsync'ed so that a crash loses at most the line being written."""
        epoch = row.get("epoch") if isinstance(row, Mapping) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise ConfigError(f"a metrics row must be a dict with an int 'epoch'; got {row!r}")
        if not self._metrics_repaired:
            note = _metrics.repair_tail(self.path / METRICS_FILE)
            self._metrics_repaired = True
            if note:
                self.warnings.append(note)
        _metrics.append_row(self.path / METRICS_FILE, row)

    def metrics(self) -> list[dict[str, Any]]:
        """All metrics rows in order. A torn last line (crash mid-append) is dropped and noted
        in ``warnings``; a bad line anywhere else is a ValueError naming its line number."""
        rows, notes = _metrics.read_rows(self.path / METRICS_FILE)
        self.warnings.extend(notes)
        return rows

    def truncate_metrics(self, after_epoch: int) -> int:
        """Keep only rows with ``epoch <= after_epoch`` (for resume), rewriting the file
        atomically. Returns the number of rows dropped."""
        rows = self.metrics()
        kept = [row for row in rows if row.get("epoch", -1) <= after_epoch]
        _metrics.rewrite_rows(self.path / METRICS_FILE, kept)
        self._metrics_repaired = True
        return len(rows) - len(kept)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_root(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def save_checkpoint(
        self, tag: str, model: nn.Module, state: Mapping[str, Any], *, epoch: int | None = None
    ) -> Path:
        """Save ``model``'s weights (safetensors) and ``state`` (torch.save, must load with
        ``weights_only=True``: tensors, numbers, str, lists, tuples, dicts) as checkpoint ``tag``.

        ``epoch`` defaults to ``state["epoch"]`` or the tag's epoch; for an ``epoch-NNNN`` tag
        they must agree. The manifest is written last; returns the checkpoint directory.
        """
        ck.check_tag(tag)
        tag_ep = ck.tag_epoch(tag)
        if epoch is None:
            epoch = state.get("epoch", tag_ep) if isinstance(state, Mapping) else None
        if tag_ep is not None and epoch != tag_ep:
            raise ConfigError(f"checkpoint tag {tag!r} does not match epoch {epoch!r}")
        data = ck.state_bytes(state)
        self.checkpoint_root.mkdir(exist_ok=True)
        ck.write_checkpoint(self.checkpoint_root, tag, ck.model_tensors(model), data, epoch)
        return self.checkpoint_root / tag

    def _dir_of(self, tag: str) -> Path:
        ck.check_tag(tag)
        found = ck.resolve_dir(self.checkpoint_root, tag)
        if found is None:
            available = ", ".join(self.checkpoint_tags()) or "none"
            raise FileNotFoundError(  # train's resume relies on this type
                f"no checkpoint {tag!r} in {self.checkpoint_root}; available: {available}"
            )
        return found

    def verify_checkpoint(self, tag: str) -> dict[str, Any]:
        """Check checkpoint ``tag`` against its manifest (CheckpointCorrupt if not); returns it."""
        return ck.verify_dir(self._dir_of(tag))

    def load_checkpoint(
        self, tag: str, model: nn.Module | None = None, *, map_location: Any = "cpu"
    ) -> dict[str, Any]:
        """Verify checkpoint ``tag``, load its weights into ``model`` (if given) and return the
        state dict. A corrupt or truncated file raises CheckpointCorrupt and nothing is loaded."""
        if model is not None:
            ck.expect_module(model, function="RunDir.load_checkpoint")
        directory = self._dir_of(tag)
        manifest = ck.read_manifest(directory)
        weights = ck.read_verified(directory, ck.WEIGHTS_FILE, manifest)
        state = ck.load_state_bytes(ck.read_verified(directory, ck.STATE_FILE, manifest),
                                    map_location, source=directory / ck.STATE_FILE)
        if model is not None:  # last, so that a failure above leaves the model untouched
            ck.load_weights_into(model, weights, directory / ck.WEIGHTS_FILE)
        return state

    def load_weights(self, tag: str, model: nn.Module) -> dict[str, Any]:
        """Verify and load only the weights of checkpoint ``tag``; returns its manifest."""
        ck.expect_module(model, function="RunDir.load_weights")
        directory = self._dir_of(tag)
        manifest = ck.read_manifest(directory)
        data = ck.read_verified(directory, ck.WEIGHTS_FILE, manifest)
        ck.load_weights_into(model, data, directory / ck.WEIGHTS_FILE)
        return manifest

    def checkpoint_tags(self) -> list[str]:
        """Tags of checkpoints that have a manifest (not hash-verified): epochs ascending, then
        the others (``best``) by name."""
        return ck.list_tags(self.checkpoint_root)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, CheckpointWarning, stacklevel=3)

    def complete_epoch_checkpoints(self, limit: int | None = None) -> list[str]:
        """Complete (manifest present and verified) ``epoch-NNNN`` tags, newest first, at most
        ``limit``; skipped ones are reported in ``warnings``."""
        found: list[str] = []
        for tag in ck.epoch_tags_desc(self.checkpoint_root):
            if limit is not None and len(found) >= limit:
                break
            try:
                ck.verify_dir(ck.resolve_dir(self.checkpoint_root, tag) or self.checkpoint_root / tag)
            except ck.CheckpointCorrupt as err:
                self._warn(f"skipped checkpoint {tag}: {err}")
                continue
            found.append(tag)
        return found

    def latest_checkpoint(self) -> str | None:
        """The newest complete ``epoch-NNNN`` checkpoint (the resume point), or ``None``.
        Incomplete and corrupt ones are skipped with a warning (see ``warnings``)."""
        self.warnings = []
        found = self.complete_epoch_checkpoints(limit=1)
        return found[0] if found else None

    def prune_checkpoints(self, keep: int = 2, *, keep_epochs: Iterable[int] = ()) -> list[str]:
        """Delete every ``epoch-NNNN`` checkpoint except the newest ``keep`` complete ones and
        those of ``keep_epochs`` (a run's ``keep_epochs``: fixed evaluation epochs); ``best``
        and other named tags are kept. Returns the removed tags."""
        if not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep must be an int >= 1 (the resume point), got {keep!r}")
        ck.cleanup(self.checkpoint_root)
        kept = set(self.complete_epoch_checkpoints(limit=keep))
        kept |= {ck.epoch_tag(int(epoch)) for epoch in keep_epochs}
        removed = [t for t in ck.epoch_tags_desc(self.checkpoint_root) if t not in kept]
        for tag in removed:
            shutil.rmtree(self.checkpoint_root / tag)
        if removed:
            fsync_dir(self.checkpoint_root)
        return sorted(removed)

    def extend(self, epochs: int) -> None:
        """Extend a run to ``epochs`` (more than it has): config.json gets the new count, the
        extension is recorded in environment.json (``extensions``: from, to, when) and a
        result.json is kept as ``result-epoch-NNNN.json`` so that resuming trains the new epochs.
        The schedule is recomputed over the new total (a cosine or fractional-milestone
        schedule changes from the resume point on)."""
        old = int(self.config.get("epochs", 0))
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= old:
            raise ConfigError(f"--epochs {epochs!r} must be more than the run's {old} epochs "
                              f"to extend {self.path}")
        env_path = self.path / ENVIRONMENT_FILE
        env = self._read_json(ENVIRONMENT_FILE) or {}
        env.setdefault("extensions", []).append({"from": old, "to": epochs, "at": _now()})
        atomic_write_json(self.path / CONFIG_FILE, {**self.config, "epochs": epochs})
        atomic_write_json(env_path, env)
        result = self.path / RESULT_FILE
        if result.exists():
            os.replace(result, self.path / f"result-epoch-{old:04d}.json")
        self.config = _normalise({**self.config, "epochs": epochs})

    # ------------------------------------------------------------------ result / status
    def write_result(self, result: Mapping[str, Any], *, status: str = "finished") -> None:
        """Write ``result.json`` atomically; its ``"status"`` (``result["status"]`` or
        ``status``) is one of :data:`WRITTEN_STATUSES`."""
        result = dict(result)
        status = result.get("status", status)
        if status not in WRITTEN_STATUSES:
            raise ConfigError(f"result status must be one of {', '.join(WRITTEN_STATUSES)}, "
                              f"got {status!r}")
        result["status"] = status
        atomic_write_json(self.path / RESULT_FILE, result)

    def mark_failed(self, error: BaseException | str) -> None:
        """Record a failed run (``result.json`` with status ``failed`` and the error text)."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        self.write_result({"error": str(error)}, status="failed")

    @property
    def result(self) -> dict[str, Any] | None:
        """The content of ``result.json``, or ``None`` while the run has none."""
        return self._read_json(RESULT_FILE)

    @property
    def status(self) -> str:
        """The status written in result.json (``finished``, ``failed``, ``interrupted``,
        ``diverged``); without one ``running`` while its owner process lives, else ``dead``."""
        result = self.result
        if result is None:
            from robustlayers.runs.liveness import owner_alive
            return "running" if owner_alive(self.path) else "dead"
        return str(result.get("status", "finished"))


def iter_run_dirs(root: str | os.PathLike) -> Iterable[Path]:
    """Every run directory (one holding config.json) under ``root``, sorted, not descending
    into run directories."""
    root = Path(root)
    if RunDir.is_run_dir(root):
        yield root
        return
    if not root.is_dir():
        return
    try:
        children = sorted(root.iterdir())
    except OSError as err:  # an unreadable folder does not hide the others
        warnings.warn(f"skipped folder {root}: {err.strerror or err}", RunStoreWarning,
                      stacklevel=2)
        return
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            yield from iter_run_dirs(child)
