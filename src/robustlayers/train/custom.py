"""Train a user's own ``nn.Module`` and / or data with the same run directory, resume and records
as a zoo model on a registered dataset.

``train(config, model=module, train_data=..., test_data=...)``: the layer map is built from the
module (any selection works on its ``named_modules`` names); the data may be tensors ``(x, y)``,
a ``TensorData``, a ``torch.utils.data.Dataset`` or a ``DataLoader`` (read once into tensors).
The run records ``model: custom:<ClassName>`` and ``dataset: custom:<hash>`` (a SHA-256 of the
images and labels), so the config stays the run's identity. A custom model or data cannot be
rebuilt from the run directory: ``resume_run`` takes the same objects again, and a different
data hash is refused.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from robustlayers.data import DatasetInfo, TensorData
from robustlayers.errors import ConfigError, describe_value

CUSTOM = "custom:"


def is_custom(name) -> bool:
    return isinstance(name, str) and name.startswith(CUSTOM)


def model_name(model) -> str:
    """``custom:<ClassName>`` of a user's module (ConfigError for anything else)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"train(model=...) expects a torch.nn.Module, got "
                          f"{describe_value(model)}")
    return f"{CUSTOM}{type(model).__name__}"


def _tensors(data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    from robustlayers.evaluate.inputs import as_tensors

    try:
        x, y = as_tensors(data)
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None
    x = torch.as_tensor(x, dtype=torch.float32).cpu()
    y = torch.as_tensor(y).long().cpu()
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"{what} must hold images (N, C, H, W) and labels (N,), got "
                          f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.min() < 0 or x.max() > 1:
        raise ConfigError(f"{what}: images must lie in [0, 1] (normalisation belongs inside the "
                          f"model), got [{x.min().item():.3g}, {x.max().item():.3g}]")
    return x, y


def _hash(*parts: tuple[torch.Tensor, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for x, y in parts:
        digest.update(x.contiguous().numpy().tobytes())
        digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def custom_splits(train_data, test_data, eps) -> dict:
    """{"train", "test"}: TensorData of the user's data with a DatasetInfo named
    ``custom:<hash>`` (no augmentation, raw [0, 1] inputs). Without ``test_data`` the training
    data is also the test split. ``eps`` is required (there is no dataset default)."""
    if eps is None:
        raise ConfigError("training on your own data needs eps (there is no dataset default), "
                          "e.g. eps=8/255 or eps=0.1")
    train = _tensors(train_data, "train_data")
    test = _tensors(test_data, "test_data") if test_data is not None else train
    if train[0].shape[1:] != test[0].shape[1:]:
        raise ConfigError(f"train_data images are {tuple(train[0].shape[1:])} but test_data "
                          f"images are {tuple(test[0].shape[1:])}")
    num_classes = int(max(train[1].max(), test[1].max())) + 1
    channels = train[0].shape[1]
    info = DatasetInfo(name=f"{CUSTOM}{_hash(train, test)}", shape=tuple(train[0].shape[1:]),
                       num_classes=num_classes, classes=tuple(map(str, range(num_classes))),
                       mean=(0.0,) * channels, std=(1.0,) * channels, default_eps=1.0,
                       default_alpha=0.25, augment="none", default_model="", default_dir="",
                       files=(), url="", format="user tensors")
    return {"train": TensorData(*train, info, split="train", source="user"),
            "test": TensorData(*test, info, split="test", source="user")}
