"""Build a zoo model for a dataset (its channels, size, classes and normalisation) and
optionally load a checkpoint into it — the one place where models and datasets meet."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from robustlayers.data import DatasetInfo, get_dataset_info
from robustlayers.models import create_model, load_checkpoint


def model_kwargs_for(dataset: str | DatasetInfo, *, activation: str = "relu") -> dict:
    """Keyword arguments of ``create_model`` that fit ``dataset``: in_channels, input_size,
    num_classes, and the dataset's mean/std for the model's own ``normalize`` module. Run
    configs record this dict as ``model_kwargs`` so a run's model can be rebuilt exactly."""
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
    channels, height, _width = info.shape
    return {
        "num_classes": info.num_classes,
        "in_channels": channels,
        "input_size": height,
        "mean": list(info.mean),
        "std": list(info.std),
        "activation": activation,
    }


def build_model(name: str, dataset: str | DatasetInfo, *, checkpoint: str | Path | None = None,
                activation: str = "relu", seed: int | None = None) -> nn.Module:
    """``create_model(name, seed=seed, **model_kwargs_for(dataset, activation=activation))``,
    then load ``checkpoint`` (strict, weights only) when given. ``seed`` makes the weight
    initialisation deterministic without touching the global RNG (``create_model``)."""
    model = create_model(name, seed=seed, **model_kwargs_for(dataset, activation=activation))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
