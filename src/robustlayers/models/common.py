"""Pieces shared by every zoo architecture: input normalisation, activation factory, base class.

Conventions (docs/architecture.md, "models"):

* Inputs are images in [0, 1]; the model normalises them itself with its first child, a
  :class:`Normalize` module whose mean/std are *non-persistent* buffers, so a zoo model's state dict
  has exactly the keys of the community checkpoints (kuangliu/pytorch-cifar, Rice et al., ...).
* Activations are modules (never functional calls, never ``inplace=True``) so that hooks can read
  pre-activation values (SPECTRUM §4 quantises the input of a ResNet block's final ``act``;
  SPECTRUM §6 averages the input of the model's final activation).
* Every zoo model carries ``input_shape`` (C, H, W) and ``layer_blocks`` (top-level child name ->
  block name: ``stem``, ``layer1`` ... ``layerN``, ``head``), used by ``robustlayers.layers``, and
  ``final_activation``: the dotted name of the last activation module applied to a spatial
  feature map; its *input* is the final pre-activation feature map (SPECTRUM §6), e.g. ``"act"``
  (PreAct/WRN/DenseNet), ``"layer4.1.act"`` (ResNet-18), ``"layer2.5"`` (SmallCNN).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "swish": nn.SiLU}
_ACTIVATION_ALIASES = {"silu": "swish"}


def check_activation(name: str) -> str:
    """Return the canonical activation name (``relu`` or ``swish``) or raise ``ValueError``."""
    if not isinstance(name, str):
        raise ValueError(f"activation must be a string, one of {sorted(ACTIVATIONS)}; got {name!r}")
    key = name.strip().lower()
    key = _ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        close = difflib.get_close_matches(key, list(ACTIVATIONS) + list(_ACTIVATION_ALIASES), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown activation {name!r}; valid choices: {', '.join(sorted(ACTIVATIONS))} "
            f"('silu' is accepted as an alias of 'swish').{hint}"
        )
    return key


def make_activation(name: str) -> nn.Module:
    """A fresh, non-inplace activation module: ``relu`` -> ``nn.ReLU``, ``swish`` -> ``nn.SiLU``."""
    return ACTIVATIONS[check_activation(name)]()


def _channel_values(values, in_channels: int, what: str) -> torch.Tensor:
    if values is None:
        values = [0.5] * in_channels
    elif isinstance(values, (int, float)):
        values = [float(values)] * in_channels
    else:
        values = [float(v) for v in torch.as_tensor(values, dtype=torch.float64).flatten().tolist()]
        if len(values) == 1:
            values = values * in_channels
    if len(values) != in_channels:
        raise ValueError(
            f"{what} has {len(values)} values but the model has in_channels={in_channels}; "
            f"give one value per channel (or a single value for all channels)"
        )
    t = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite; got {values}")
    return t


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel for NCHW inputs in [0, 1].

    ``mean``/``std`` are registered as *non-persistent* buffers: they follow ``.to(device)`` but are
    not part of ``state_dict()``, so zoo state dicts match checkpoints trained without an in-model
    normalisation layer. Defaults: 0.5 for every channel (the data package passes dataset
    statistics).
    """

    def __init__(self, mean=None, std=None, in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")
        mean_t = _channel_values(mean, in_channels, "mean")
        std_t = _channel_values(std, in_channels, "std")
        if (std_t <= 0).any():
            raise ValueError(f"std must be > 0 for every channel; got {std_t.tolist()}")
        self.in_channels = in_channels
        self.register_buffer("mean", mean_t.view(1, in_channels, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, in_channels, 1, 1), persistent=False)

    def set(self, mean, std) -> None:
        """Replace mean/std in place (one value per channel, or one for all; std > 0)."""
        mean_t = _channel_values(mean, self.in_channels, "mean")
        std_t = _channel_values(std, self.in_channels, "std")
        if (std_t <= 0).any():
            raise ValueError(f"std must be > 0 for every channel; got {std_t.tolist()}")
        with torch.no_grad():
            self.mean.copy_(mean_t.view_as(self.mean))
            self.std.copy_(std_t.view_as(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"


def check_positive_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}; got {value!r}")
    return value


class ZooModel(nn.Module):
    """Base class of the zoo: sets ``normalize`` (first child), ``input_shape``, ``activation``.

    Subclasses call ``super().__init__(...)`` *before* creating any other child, so ``normalize``
    is the first child, and set ``self.layer_blocks`` at the end of their ``__init__``.
    """

    #: smallest spatial input size the architecture supports (subclasses override)
    min_input_size: int = 1

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.input_size = check_positive_int(input_size, "input_size")
        if input_size < self.min_input_size:
            raise ValueError(
                f"{type(self).__name__} needs input_size >= {self.min_input_size} "
                f"(its downsampling stages would shrink the feature map to nothing); got {input_size}"
            )
        self.activation = check_activation(activation)
        self.input_shape = (in_channels, input_size, input_size)
        self.normalize = Normalize(mean, std, in_channels)
        self.layer_blocks: dict[str, str] = {}
        self.final_activation: str = ""

    def act_module(self) -> nn.Module:
        """A fresh activation module of this model's kind."""
        return make_activation(self.activation)
