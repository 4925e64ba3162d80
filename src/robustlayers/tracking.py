"""Optional experiment tracking: TensorBoard and MLflow loggers behind one small interface.

    trackers = make_trackers("tensorboard,mlflow", run_dir="runs/pgd-at")
    trackers.start(config)                      # the resolved training config
    trackers.log_epoch({"train_loss": 0.9, "test": {"robust_acc": 0.41}}, step=epoch)
    trackers.finish(result, artifacts=["runs/pgd-at/report.html"])
    trackers.close()

* ``tensorboard``: event files in ``RUN_DIR/tensorboard`` (``torch.utils.tensorboard``); per-epoch
  numbers as scalars (nested keys joined with ``/``), the config and the final result as text,
  final numbers as ``final/...`` scalars. TensorBoard has no artifact store: the artifacts'
  paths are written as text.
* ``mlflow``: by default a local store inside the run directory (``RUN_DIR/mlflow/mlflow.db``,
  an SQLite file, with artifacts in ``RUN_DIR/mlflow/artifacts``: current MLflow versions refuse
  the plain-folder store), or the tracking server / store at ``uri``. The config is logged as
  parameters (flattened with ``.``) and as ``config.json``; per-epoch numbers as metrics with
  ``step``; the final numbers as metrics and ``result.json``; the artifacts as files. A run
  closed without :meth:`Tracker.finish` (an interrupted training) is marked ``KILLED``.

Both packages are optional extras: ``pip install robustlayers[tensorboard]`` / ``[mlflow]``.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from pathlib import Path

TRACKERS = ("tensorboard", "mlflow")


class TrackingError(ValueError):
    """An unknown tracker name, or a tracker whose package is not installed."""


def flatten(obj, prefix: str = "", sep: str = "/") -> dict:
    """Nested dicts -> one level, keys joined with ``sep`` (``{"test": {"acc": 1}}`` ->
    ``{"test/acc": 1}``)."""
    out = {}
    for key, value in (obj or {}).items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def numbers(row: dict, sep: str = "/") -> dict[str, float]:
    """The finite numeric entries of a (nested) row, flattened; bools and text are left out."""
    out = {}
    for key, value in flatten(row, sep=sep).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class Tracker(ABC):
    """One experiment tracker. Call order: ``start`` once, ``log_epoch`` per epoch, ``finish``
    at the end of a completed run, ``close`` always (also after an error or interruption)."""

    name: str = ""

    @abstractmethod
    def start(self, config: dict) -> None:
        """Record the resolved configuration of the run."""

    @abstractmethod
    def log_epoch(self, row: dict, step: int) -> None:
        """Record the numbers of one epoch (a metrics.jsonl row) at ``step``."""

    @abstractmethod
    def finish(self, result: dict, artifacts=()) -> None:
        """Record the final numbers (best / last) and attach the artifact files."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release; safe to call twice."""


class TensorBoardTracker(Tracker):
    """Event files for TensorBoard in ``run_dir/tensorboard``."""

    name = "tensorboard"

    def __init__(self, run_dir):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def start(self, config: dict) -> None:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log_epoch(self, row: dict, step: int) -> None:
        for key, value in numbers(row).items():
            self.writer.add_scalar(key, value, int(step))
        self.writer.flush()

    def finish(self, result: dict, artifacts=()) -> None:
        for key, value in numbers(result).items():
            self.writer.add_scalar(f"final/{key}", value, 0)
        text = json.dumps(result, indent=2, sort_keys=True, default=str)
        self.writer.add_text("result", "```\n" + text + "\n```", 0)
        if artifacts:
            self.writer.add_text("artifacts", "\n".join(f"- {p}" for p in artifacts), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_PARAM_LIMIT = 500        # the smallest value length any MLflow version accepts


class MLflowTracker(Tracker):
    """One MLflow run per training run, in experiment ``experiment`` (default robustlayers)."""

    name = "mlflow"

    def __init__(self, run_dir, uri: str | None = None, experiment: str = "robustlayers"):
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir)
        store = run_dir / "mlflow"
        if uri is None:
            store.mkdir(parents=True, exist_ok=True)
            uri = "sqlite:///" + str((store / "mlflow.db").resolve())
            artifacts = (store / "artifacts").resolve().as_uri()
        else:
            artifacts = None
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifacts)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        self._done = False

    @staticmethod
    def _key(key: str) -> str:
        return _MLFLOW_KEY.sub("_", key)

    def start(self, config: dict) -> None:
        for key, value in flatten(config, sep=".").items():
            self.client.log_param(self.run_id, self._key(key), str(value)[:_PARAM_LIMIT])
        self.client.log_dict(self.run_id, config, "config.json")

    def log_epoch(self, row: dict, step: int) -> None:
        for key, value in numbers(row).items():
            self.client.log_metric(self.run_id, self._key(key), value, step=int(step))

    def finish(self, result: dict, artifacts=()) -> None:
        for key, value in numbers(result).items():
            self.client.log_metric(self.run_id, self._key(f"final/{key}"), value)
        self.client.log_dict(self.run_id, result, "result.json")
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")
        self._done = True

    def close(self) -> None:
        if not self._done:
            self.client.set_terminated(self.run_id, "KILLED")
            self._done = True


# tracker -> (module that must import, pip extra)
_PACKAGES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"),
             "mlflow": ("mlflow", "mlflow")}


class TrackerGroup(list):
    """The trackers of one run; each method is called on every tracker in turn. Also a
    context manager that closes them all."""

    def start(self, config: dict) -> None:
        for tracker in self:
            tracker.start(config)

    def log_epoch(self, row: dict, step: int) -> None:
        for tracker in self:
            tracker.log_epoch(row, step)

    def finish(self, result: dict, artifacts=()) -> None:
        for tracker in self:
            tracker.finish(result, list(artifacts))

    def close(self) -> None:
        for tracker in self:
            tracker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_tracker_names(names) -> list[str]:
    """``"tensorboard,mlflow"`` or a list -> validated, de-duplicated names (empty -> [])."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else [str(n) for n in names]
    out = []
    for item in items:
        key = item.strip().lower()
        if not key or key == "none":
            continue
        if key not in TRACKERS:
            raise TrackingError(f"unknown tracker {item.strip()!r}; valid choices: "
                                f"{', '.join(TRACKERS)} (comma-separated, e.g. "
                                f"--log tensorboard,mlflow)")
        if key not in out:
            out.append(key)
    return out


def _check_installed(name: str) -> None:
    import importlib

    module, extra = _PACKAGES[name]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise TrackingError(f"the {name} logger needs the {extra} package, which is not "
                            f"installed ({err}); install it with "
                            f"pip install 'robustlayers[{extra}]'") from err


def make_trackers(names, *, run_dir, uri: str | None = None) -> TrackerGroup:
    """Trackers for ``names`` (``"tensorboard"``, ``"mlflow"``; a comma-separated string or a
    list) writing for the run in ``run_dir``. ``uri``: the MLflow tracking URI (default: a local
    store inside ``run_dir``); TensorBoard always writes to ``run_dir/tensorboard``.
    Every name and package is checked before any tracker is created."""
    chosen = parse_tracker_names(names)
    for name in chosen:
        _check_installed(name)
    return TrackerGroup(MLflowTracker(run_dir, uri=uri) if name == "mlflow"
                        else TensorBoardTracker(run_dir) for name in chosen)
