"""Freeze, unfreeze, re-initialise and count the parameters of a layer selection.

Batch-norm rule (EARLY §3.1): freezing sets ``requires_grad=False`` on a layer's own
weight and bias only, so a frozen BN layer keeps its affine parameters fixed while its running
mean/variance keep updating whenever the model trains in ``train()`` mode and are never reset.
Re-initialising calls ``reset_parameters()``, which for BN also resets the running statistics.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from robustlayers.errors import ConfigError, describe_value, expect_module
from robustlayers.layers.selection import SelectionLike, select


def _set_requires_grad(model: nn.Module, selection: SelectionLike, flag: bool) -> tuple[str, ...]:
    expect_module(model, function="freeze" if not flag else "unfreeze")
    chosen = select(model, selection)
    for module in chosen.modules(model).values():
        for param in module.parameters(recurse=False):
            param.requires_grad_(flag)
    return chosen.names


def freeze(model: nn.Module, selection: SelectionLike) -> tuple[str, ...]:
    """Stop gradient updates to the selected layers' own parameters; returns their names."""
    return _set_requires_grad(model, selection, False)


def unfreeze(model: nn.Module, selection: SelectionLike) -> tuple[str, ...]:
    """Let the selected layers' own parameters train again; returns their names."""
    return _set_requires_grad(model, selection, True)


def reinit(model: nn.Module, selection: SelectionLike, *, seed: int | None = None) -> tuple[str, ...]:
    """Re-initialise the selected layers with ``reset_parameters()`` (EARLY stage 2); BN layers
    also reset their running statistics. With ``seed`` the draw is reproducible and the global
    RNG is left as it was."""
    expect_module(model, function="reinit")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ConfigError(f"reinit() seed must be an int or None, got {describe_value(seed)}")
    chosen = select(model, selection)
    modules = chosen.modules(model)
    lacking = [n for n, m in modules.items() if not hasattr(m, "reset_parameters")]
    if lacking:
        raise ConfigError(f"cannot re-initialise {lacking[:5]}: no reset_parameters() method")
    devices = [p.device for m in modules.values() for p in m.parameters(recurse=False)]
    cuda = sorted({d.index or 0 for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for module in modules.values():
            module.reset_parameters()
    return chosen.names


def count_params(model: nn.Module, selection: SelectionLike | None = None, *,
                 trainable_only: bool = False) -> int:
    """Number of parameters of the selected layers (all parameters of the model when
    ``selection`` is None); ``trainable_only`` counts those with ``requires_grad``."""
    expect_module(model, function="count_params")
    if selection is None:
        params = model.parameters()
    else:
        modules = select(model, selection).modules(model).values()
        params = (p for m in modules for p in m.parameters(recurse=False))
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)
