"""What a study is: options, presets, a planner and an analysis.

A study is a function from options to tasks (:meth:`Study.plan`) and a function from the
finished tasks to tables, figures and claim verdicts (:meth:`Study.analyse`). Options are a
dataclass whose fields carry their help text (:func:`~robustlayers.train.settings.setting`), so
they become command-line flags; the presets ``quick`` (CPU minutes on the embedded
Fashion-MNIST) and ``paper`` (the paper's settings: CIFAR-10 and a GPU) are dicts of option
values.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

from robustlayers.errors import ConfigError
from robustlayers.train.settings import build_settings, setting


@dataclasses.dataclass
class CommonOptions:
    """Options every study has: the training preset its runs start from and what to override."""

    train_preset: str = setting("fmnist-quick", "training preset every run starts from "
                                "(robustlayers train --list-presets)")
    seeds: str = setting("0", "comma-separated training seeds; with two or more, claims compare "
                         "differences with their seed-to-seed spread")
    epochs: int | None = setting(None, "training epochs of every run (default: the preset's)")
    train_size: int | None = setting(None, "training images used (default: the preset's)")
    test_size: int | None = setting(None, "test images of the final numbers (default: the "
                                    "preset's)")
    eval_size: int | None = setting(None, "test images of the per-epoch numbers (default: the "
                                    "preset's)")
    data_dir: str | None = setting(None, "folder holding the dataset (default: the embedded "
                                   "or registered location)")
    device: str | None = setting(None, "device of every run (cpu, cuda, cuda:1; default: auto)")

    def seed_list(self) -> list[int]:
        try:
            seeds = [int(s) for s in str(self.seeds).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"seeds must be comma-separated integers, got {self.seeds!r}") \
                from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must list distinct integers, got {self.seeds!r}")
        return seeds

    def check(self) -> None:
        self.seed_list()
        for name in ("epochs", "train_size", "test_size", "eval_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value}")


RUNTIME_OPTIONS = ("data_dir", "device")
"""Options that change where or how runs execute, not what a study measures."""


def base_config(opts: CommonOptions, runs_root: Path, seed: int, **values) -> dict:
    """A run config: the options' training preset, their overrides, then ``values``."""
    from robustlayers.train.presets import preset_values

    config = preset_values(opts.train_preset)
    for name in ("epochs", "train_size", "test_size", "eval_size"):
        if getattr(opts, name) is not None:
            config[name] = getattr(opts, name)
    config.update(seed=seed, runs_root=str(runs_root), quiet=True)
    if opts.data_dir is not None:
        config["data_dir"] = opts.data_dir
    if opts.device is not None:
        config["device"] = opts.device
    config.update(values)
    return config


@dataclasses.dataclass(frozen=True)
class Study:
    """One paper's experiment. ``plan(opts, runs_root) -> [Task]``;
    ``analyse(opts, results) -> {"tables", "figures", "claims", "notes"}``."""

    name: str
    paper: str
    summary: str
    options: type
    presets: dict[str, dict]
    plan: Callable
    analyse: Callable

    def build_options(self, preset: str = "quick", values: dict | None = None):
        """The options of ``preset`` with ``values`` on top, converted and checked."""
        if preset not in self.presets:
            raise ConfigError(f"study {self.name!r} has no preset {preset!r}; presets: "
                              f"{', '.join(self.presets)}")
        merged = dict(self.presets[preset], **{k: v for k, v in (values or {}).items()
                                               if v is not None})
        return build_settings(self.options, merged, method=self.name, owner="study")


class Results:
    """The finished tasks of a study, by key: runs, their final numbers and metrics, and the
    stored answers of evaluations. Missing or failed tasks give None."""

    def __init__(self, tasks, outcomes: dict):
        self.tasks = {t.key: t for t in tasks}
        self.outcomes = outcomes

    def status(self, key: str) -> str:
        return self.outcomes.get(key, {}).get("status", "not run")

    def ok(self, key: str) -> bool:
        return self.status(key) in ("done", "reused")

    def run(self, key: str):
        from robustlayers.runs import RunDir

        return RunDir.open(self.outcomes[key]["path"]) if self.ok(key) else None

    def final(self, key: str) -> dict | None:
        """``result.json["final"]`` of a run: best and last on the test split, the gap."""
        run = self.run(key)
        return (run.result or {}).get("final") if run is not None else None

    def metrics(self, key: str) -> list[dict]:
        run = self.run(key)
        return run.metrics() if run is not None else []

    def evaluation(self, key: str) -> dict | None:
        if not self.ok(key):
            return None
        import json

        with open(self.outcomes[key]["path"], encoding="utf-8") as f:
            return json.load(f)["result"]


def finite(value) -> float | None:
    """``value`` as a float, or None when it is missing or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
