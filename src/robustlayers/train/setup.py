"""A run's set-up before its first epoch: the data splits, the model, the global RNGs, the
weights it starts from (``init_from``) and its row in the runs index."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from robustlayers import builders
from robustlayers.data import load_dataset
from robustlayers.runs import RunDir, RunIndex
from robustlayers.train.config import TrainConfig
from robustlayers.train.context import derive_seed
from robustlayers.train.init import load_init


def load_splits(config: TrainConfig, device: torch.device, custom: dict | None = None) -> dict:
    """train / val (held out of train by a seeded permutation) / test / eval (the fixed test
    subset attacked every epoch), as TensorData on ``device``. ``custom``: a user's own
    train / test TensorData (:mod:`robustlayers.train.custom`) instead of the registered
    dataset."""
    def read(split, size):
        if custom is None:
            return load_dataset(config.dataset, split, data_dir=config.data_dir, subset=size,
                                seed=config.seed)
        return custom[split].subset(min(size, len(custom[split])), config.seed) if size \
            else custom[split]

    train = read("train", config.train_size)
    val = None
    if config.val_size:
        if config.val_size >= len(train):
            raise ValueError(f"val_size {config.val_size} leaves no training data "
                             f"(train has {len(train)} examples)")
        gen = torch.Generator().manual_seed(derive_seed(config.seed, "val"))
        order = torch.randperm(len(train), generator=gen)
        held, kept = order[:config.val_size].sort().values, order[config.val_size:].sort().values
        val = dataclasses.replace(train, x=train.x[held], y=train.y[held], split="val")
        train = dataclasses.replace(train, x=train.x[kept], y=train.y[kept])
    test = read("test", config.test_size)
    def attacked(part):  # the fixed subset of ``part`` attacked every epoch
        n = min(config.eval_size or len(part), len(part))
        return part.subset(n, derive_seed(config.seed, "eval", part.split) % 2**31)

    train_eval = None
    if config.train_eval_size != 0:  # RAT's train robust accuracy: a fixed subset, or all
        n = len(train) if config.train_eval_size is None else min(config.train_eval_size,
                                                                     len(train))
        train_eval = train.subset(n, derive_seed(config.seed, "train-eval") % 2**31)
    splits = {"train": train, "val": val, "test": test, "eval": attacked(test),
              "val_eval": attacked(val) if val is not None else None, "train_eval": train_eval}
    return {k: (v.to(device) if v is not None else None) for k, v in splits.items()}


def build_model(config: TrainConfig, info, device: torch.device, custom=None):
    """(model, model_kwargs): the run's model built by :mod:`robustlayers.builders` for the
    dataset (with ``config.activation``), initialised from ``(seed, "model")``, on ``device``.
    ``model_kwargs`` (recorded in config.json) rebuilds it with ``create_model``; a user's own
    module (``custom``) is used as it is and has none."""
    if custom is not None:
        if getattr(custom, "input_shape", None) is None:
            custom.input_shape = tuple(info.shape)  # the layer map's dummy batch
        return custom.to(device), None
    kwargs = builders.model_kwargs_for(info, activation=config.activation)
    model = builders.build_model(config.model, info, activation=config.activation,
                                 normalize=config.normalize,
                                 seed=derive_seed(config.seed, "model") % 2**31)
    chosen = builders.parse_normalize(config.normalize, info)
    if chosen is not None:  # the run records the mean/std its model normalises with
        channels = info.shape[0]
        kwargs["mean"], kwargs["std"] = ([float(v) for v in values] * (channels // len(values))
                                         for values in (chosen["mean"], chosen["std"]))
    model = model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, kwargs


def seed_globals(seed: int) -> None:
    """Seed Python, numpy and torch global RNGs (saved and restored with every checkpoint)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def index_run(run: RunDir, config: TrainConfig) -> None:
    """Upsert the run's row in the SQLite index of ``runs_root`` (or of the run's parent when
    the run lives elsewhere)."""
    root = Path(config.runs_root)
    try:
        run.path.resolve().relative_to(root.resolve())
    except ValueError:
        root = run.path.parent
    RunIndex(root).upsert(run)


def start_weights(config: TrainConfig, model, model_kwargs: dict, run_path: Path,
                  saved_config: dict | None) -> dict | None:
    """Load ``config.init_from`` into ``model`` and return its source record (None without
    ``init_from``). On resume the source is loaded only when the run has no checkpoint yet, and
    must still hash to the recorded weights."""
    if not config.init_from:
        return None
    recorded = (saved_config or {}).get("init_source")
    if recorded and RunDir.open(run_path).latest_checkpoint() is not None:
        return recorded  # the checkpoint's weights replace the source's
    source = load_init(config.init_from, model, model_name=config.model,
                       model_kwargs=model_kwargs)
    if recorded and recorded.get("weights_sha256") != source["weights_sha256"]:
        raise ValueError(f"init_from {config.init_from}: the source weights changed since the "
                         f"run started (hash {source['weights_sha256'][:12]} != recorded "
                         f"{recorded['weights_sha256'][:12]}); start a new run")
    return source
