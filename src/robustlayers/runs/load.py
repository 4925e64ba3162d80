"""Rebuild a trained model from its run directory."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from robustlayers.errors import RunError, RunStoreError
from robustlayers.runs.checkpoint import check_tag, epoch_tag
from robustlayers.runs.rundir import RunDir

_EPOCH = re.compile(r"^(?:epoch-)?(\d+)$")

if TYPE_CHECKING:
    from torch import nn


def resolve_which(run: RunDir, which: str | int) -> str:
    """The checkpoint tag meant by ``which``: ``"best"``, ``"last"`` (the newest complete epoch
    checkpoint), an epoch number (``76``, ``"76"``, ``"epoch-76"`` and ``"epoch-0076"`` all
    name epoch 76's checkpoint, e.g. one a run kept with ``keep_epochs``) or another tag.
    RunError listing the available checkpoints when it names none."""
    available = run.checkpoint_tags()
    epoch = _EPOCH.match(which) if isinstance(which, str) else None
    if isinstance(which, int) and not isinstance(which, bool):
        tag = epoch_tag(which)
    elif epoch is not None:
        tag = epoch_tag(int(epoch.group(1)))
    elif which == "last":
        tag = run.latest_checkpoint()
    elif isinstance(which, str):
        try:
            tag = check_tag(which)
        except ValueError:
            tag = None
    else:
        tag = None
    if tag is None or tag not in available:
        raise RunError(
            f"no checkpoint {which!r} in {run.path}; choose 'last', 'best' or one of: "
            f"{', '.join(available) or 'none (the run has no complete checkpoint)'}"
        )
    return tag


def load_run_model(
    run_dir: RunDir | str | os.PathLike, which: str | int = "best"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, config)``: the run's model built with
    ``robustlayers.models.create_model(config["model"], **config["model_kwargs"])``, its
    weights loaded (hash-verified) from checkpoint ``which``, in ``eval()`` mode on the CPU."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    config = run.config
    missing = [key for key in ("model", "model_kwargs") if key not in config]
    if missing:
        raise RunStoreError(
            f"{run.path / 'config.json'} lacks {missing}; cannot rebuild the model "
            "(the config must hold 'model' and 'model_kwargs' for create_model)"
        )
    tag = resolve_which(run, which)
    from robustlayers import models

    model = models.create_model(config["model"], **config["model_kwargs"])
    run.load_weights(tag, model)
    model.eval()
    from robustlayers.builders import tag_model   # analyses take their default ε from the run

    tag_model(model, dataset=config.get("dataset"), eps=config.get("eps"),
              norm=config.get("norm", "linf"), source=f"run {run.path.name}",
              normalization={"convention": "run", "source": "the run's model_kwargs"})
    return model, config
