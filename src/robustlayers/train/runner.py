"""The entry points of training: :func:`train` and :func:`resume_run`.

They resolve what to run — the config's identity and run directory
(:mod:`robustlayers.train.identity`), a finished run to return or an unfinished one to continue,
a user's own module and data (:mod:`robustlayers.train.custom`), an extension — and hand the
work to the loop (:func:`robustlayers.train.loop.run_loop`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from robustlayers.data import get_dataset_info
from robustlayers.devices import resolve_device
from robustlayers.errors import ConfigError, describe_value
from robustlayers.runs import RunDir
from robustlayers.runs.paths import check_output_path
from robustlayers.train import custom
from robustlayers.train import distributed as ddp
from robustlayers.train.config import TrainConfig, config_from_dict
from robustlayers.train.context import resolve_threat
from robustlayers.train.identity import check_same_run, run_lock, run_path
from robustlayers.train.init import parse_init_from
from robustlayers.train.loop import RUN_ONLY_KEYS, run_loop


def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None,
          model=None, train_data=None, test_data=None) -> RunDir:
    """Train ``config`` and return its run directory, or continue the run at ``resume`` (its
    own config.json is used; ``config`` may then only carry runtime settings: quiet, device).

    A run's identity is its config (:mod:`robustlayers.train.identity`): without ``out`` the
    directory is named by the config's hash under ``runs_root``. When that directory (or the
    given ``out``) holds a run of the same config, a finished (or diverged) run is returned as it
    is and an unfinished one is continued; a run of another config there is an error. Concurrent
    starts of one config train it once (a lock beside the run directory).

    ``model`` (a user's own ``nn.Module``) and ``train_data`` / ``test_data`` (tensors
    ``(x, y)``, a Dataset or a DataLoader) replace the zoo model and the registered dataset
    (:mod:`robustlayers.train.custom`); ``resume_run`` then takes them again."""
    if resume is not None:
        runtime = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        return resume_run(resume, quiet=runtime.get("quiet"), device=runtime.get("device"))
    if config is None or isinstance(config, dict):
        config = config_from_dict(config or {})
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train() expects a TrainConfig, a dict of config keys or None, got "
                          f"{describe_value(config)}; e.g. train(preset('fmnist-quick')) or "
                          f"train({{'method': 'pgd-at', 'epochs': 5}})")
    config, user = _with_user_objects(dataclasses.replace(config), model, train_data, test_data)
    config = resolve_config(config, user["splits"]["train"].info if "splits" in user else None)
    _join_torchrun(config)
    if config.init_from and not parse_init_from(config.init_from)[0].exists():
        raise FileNotFoundError(f"init_from {config.init_from!r}: "
                                f"{parse_init_from(config.init_from)[0]} is neither a run "
                                f"directory nor a weights file")
    path = Path(config.out) if config.out else run_path(config)
    config.out = str(path)
    if not os.path.lexists(path):
        check_output_path(path, kind="dir")
    with _main_lock(path):
        found = ddp.on_main(lambda: _existing_run(path, config))
        found = ddp.broadcast_object(found)
        if found in ("finished", "diverged"):
            if ddp.is_main():
                print(f"robustlayers train: {path} already holds this config's {found} run; "
                      f"returning it", file=sys.stderr)
            return RunDir.open(path)
        if found is not None:
            return _resume(path, quiet=config.quiet, device=config.device, user=user)
        return run_loop(config, run_path=path, resuming=False, user=user)


def resolve_config(config: TrainConfig | dict, info=None) -> TrainConfig:
    """``config`` validated, with ε and both step sizes resolved against the dataset (``info``,
    default the registered dataset's) — what :func:`train` runs and names its directory by."""
    config = config_from_dict(config) if isinstance(config, dict) else dataclasses.replace(config)
    config = config.validate()
    info = info if info is not None else get_dataset_info(config.dataset)
    threat, alpha, eval_alpha = resolve_threat(config, info)
    config.eps, config.alpha, config.eval_alpha = threat.eps, alpha, eval_alpha
    return config


def planned_run_path(config: TrainConfig | dict) -> Path:
    """The run directory :func:`train` would use for ``config`` (registered model and data),
    known before anything runs: a study plans stage-2 runs on their stage-1 run's path."""
    config = resolve_config(config)
    return Path(config.out) if config.out else run_path(config)


def _existing_run(path: Path, config: TrainConfig) -> str | None:
    """The status of this config's run at ``path`` (RunError for another config's), or None."""
    if not (path / "config.json").is_file():
        return None
    existing = RunDir.open(path)
    check_same_run(path, saved_config(existing).to_dict(), config.to_dict())
    return existing.status


def _join_torchrun(config: TrainConfig) -> None:
    """Under torchrun: join the process group (gloo on CPU, nccl on CUDA) and check that the
    global batch splits across the processes (:mod:`robustlayers.train.distributed`)."""
    if ddp.setup(resolve_device(config.device)) is not None:
        ddp.check_batch_size(config.batch_size)


def _main_lock(path: Path):
    """The run's lock, held by rank 0 only under torchrun (the other ranks follow it)."""
    return run_lock(path) if ddp.is_main() else contextlib.nullcontext()


def _with_user_objects(config: TrainConfig, model, train_data, test_data):
    """(config naming ``custom:`` model / dataset, {"model", "splits"}) for a user's own module
    and data; unchanged config and {} without them."""
    user: dict = {}
    if model is not None:
        config.model = custom.model_name(model)
        user["model"] = model
    if train_data is not None:
        from robustlayers.attacks import parse_eps

        eps = None if config.eps is None else parse_eps(config.eps, norm=config.norm)
        user["splits"] = custom.custom_splits(train_data, test_data, eps)
        config.dataset = user["splits"]["train"].info.name
    elif test_data is not None:
        raise ConfigError("test_data goes with train_data (your own data); for a registered "
                          "dataset use test_size")
    return config, user


def saved_config(run: RunDir) -> TrainConfig:
    """The TrainConfig of a run directory's config.json (older flat method keys translated)."""
    saved = run.config
    return config_from_dict({k: v for k, v in saved.items() if k not in RUN_ONLY_KEYS},
                            where=str(run.path / "config.json"))


def resume_run(run_dir: str | Path, *, quiet: bool | None = None,
               device: str | None = None, epochs: int | None = None, model=None,
               train_data=None, test_data=None) -> RunDir:
    """Continue the run in ``run_dir`` from its newest complete checkpoint (a failed, dead or
    interrupted run; a finished one is refused). With ``epochs`` (more than the run has) a run,
    finished or not, is extended to that many epochs (recorded as an extension). A run of a
    user's own module or data needs the same ``model`` / ``train_data`` / ``test_data``."""
    saved = RunDir.open(run_dir).config  # a clear error for a folder that is not a run
    config, user = _with_user_objects(saved_config(RunDir.open(run_dir)), model, train_data,
                                      test_data)
    if device is not None:
        config.device = device
    _join_torchrun(config)
    for key, given, what in (("model", "model" in user, "model="),
                             ("dataset", "splits" in user, "train_data= (and test_data=)")):
        if custom.is_custom(saved.get(key)) and (not given or getattr(config, key) != saved[key]):
            got = getattr(config, key) if given else "nothing"
            raise ConfigError(f"{run_dir} was trained with {saved[key]!r}; pass the same {what} "
                              f"to resume_run (got {got})")
    with _main_lock(Path(run_dir)):
        if epochs is not None:
            ddp.on_main(lambda: RunDir.open(run_dir).extend(epochs))
        return _resume(Path(run_dir), quiet=quiet, device=device, user=user)



def _resume(run_dir: Path, *, quiet: bool | None, device: str | None,
            user: dict | None = None) -> RunDir:
    run = RunDir.open(run_dir)
    config = saved_config(run)
    if quiet is not None:
        config.quiet = bool(quiet)
    if device is not None:
        config.device = device
    return run_loop(config, run_path=Path(run_dir), resuming=True, saved_config=run.config,
                user=user)
