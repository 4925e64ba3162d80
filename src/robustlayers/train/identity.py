"""A run's identity is its resolved config: the same config maps to the same run directory.

``run_path`` names a run ``<method>-<model>-<dataset>-s<seed>-<hash>`` under ``runs_root``, the
hash taken over every setting that changes what is computed (:func:`identity`): not ``quiet``,
``device``, ``out`` or ``runs_root``. ``init_from`` enters as an absolute path with its tag, so
a stage-2 run is told apart by its stage-1 run. Starting a config whose directory holds a
finished run returns that run; an unfinished one is continued. :func:`run_lock` serialises
concurrent starts of the same config (an exclusive ``flock`` on a hidden lock file beside the
run directory), so eight identical starts train once and all eight get the finished run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

from robustlayers.errors import RunError

RUNTIME_KEYS = ("quiet", "device", "out", "runs_root", "log", "log_uri")
"""Config keys that do not change what a run computes (left out of its identity)."""
RECORD_KEYS = ("model_kwargs", "init_source")
"""Keys config.json holds beside the config (derived from it)."""
ADDED_KEYS = {"alpha_ratio": None, "eval_alpha_ratio": None, "keep_epochs": [],
              "sync_bn": False, "compile": "off"}
"""Config keys added after runs were first written, with their defaults: left out of the
identity while at the default, so that a config written before they existed keeps its hash."""


def identity(config: dict) -> dict:
    """The identity-bearing part of a resolved config dict (``TrainConfig.to_dict()`` or a run's
    config.json): runtime keys dropped, ``init_from`` made absolute."""
    data = {k: v for k, v in config.items() if k not in RUNTIME_KEYS + RECORD_KEYS
            and not (k in ADDED_KEYS and v == ADDED_KEYS[k])}
    if data.get("init_from"):
        from robustlayers.train.init import parse_init_from

        path, tag = parse_init_from(data["init_from"])
        # with an explicit tag it is a run directory, existing yet or not (a study plans a
        # stage-2 run before its stage-1 run exists)
        data["init_from"] = f"{Path(path).resolve()}@{tag or 'last'}" \
            if tag or Path(path).is_dir() else str(Path(path).resolve())
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def identity_hash(config: dict) -> str:
    """8 hex digits of the SHA-256 of :func:`identity`."""
    text = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_path(config) -> Path:
    """``runs_root/<method>-<model>-<dataset>-s<seed>-<hash>`` of a resolved TrainConfig."""
    data = config.to_dict()
    name = f"{config.method}-{config.model}-{config.dataset}-s{config.seed}-{identity_hash(data)}"
    return Path(config.runs_root) / name


def differences(saved: dict, config: dict) -> list[str]:
    """Keys whose values differ between a run's saved config and ``config`` (identity only)."""
    a, b = identity(saved), identity(config)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_same_run(path: Path, saved: dict, config: dict) -> None:
    """RunError when the run at ``path`` was started with another config."""
    diff = differences(saved, config)
    if diff:
        shown = ", ".join(f"{k}: {identity(saved).get(k)!r} there, {identity(config).get(k)!r} "
                          f"here" for k in diff[:4])
        raise RunError(f"{path} holds a run of another config ({shown}); choose another --out, "
                       f"or leave --out out to get a directory of this config's own")


@contextlib.contextmanager
def run_lock(path: Path):
    """Hold an exclusive lock for the run directory ``path`` (``.<name>.lock`` beside it);
    blocks while another process holds it. When the run directory was never created (the start
    failed on bad input), the lock file and a runs folder made for it are removed again, so a
    refused start leaves nothing behind."""
    path = Path(path)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.parent / f".{path.name}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if not path.exists():
            with contextlib.suppress(OSError):
                lock_file.unlink()
                for folder in made:  # innermost first
                    folder.rmdir()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
