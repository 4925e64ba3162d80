"""Optimiser parameter groups from layer selections (RAT_LR's per-stage learning rates, CLAT's
and partial AT's trainable subsets)."""

from __future__ import annotations

from torch import nn

from robustlayers.errors import ConfigError, describe_value, expect_module
from robustlayers.layers.selection import SelectionLike, select


def _check_groups(groups, default) -> list[tuple[SelectionLike, dict]]:
    """``groups`` as a list of (selection, options dict) pairs; ConfigError saying what is
    expected otherwise (a bare selection string is the usual mistake)."""
    example = "[('block:1', {'lr': 0.01}), ('block:2,3', {'lr': 0.1})]"
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple)):
        raise ConfigError(f"param_groups() expects a list of (selection, options) pairs such as "
                          f"{example}, got {describe_value(groups)}")
    for i, pair in enumerate(groups):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"param_groups() group {i} must be a (selection, options) pair "
                              f"such as ('block:1', {{'lr': 0.01}}), got {describe_value(pair)}")
        if not isinstance(pair[1], dict):
            raise ConfigError(f"param_groups() group {i}: options must be a dict like "
                              f"{{'lr': 0.1}}, got {describe_value(pair[1])}")
    if default is not None and not isinstance(default, dict):
        raise ConfigError(f"param_groups() default must be a dict of optimiser options or None, "
                          f"got {describe_value(default)}")
    return list(groups)


def param_groups(model: nn.Module, groups: list[tuple[SelectionLike, dict]], *,
                 default: dict | None = None) -> list[dict]:
    """Build ``torch.optim`` parameter groups.

    ``groups`` is a list of (selection, options) pairs, options being optimiser settings such as
    ``{"lr": 0.1, "weight_decay": 5e-4}``. Each trainable parameter lands in exactly one group:
    the first selection that contains its layer wins; parameters of unselected layers (and
    parameters that belong to no layer) go to a final group with ``default`` options, omitted
    when ``default`` is None. Frozen parameters (``requires_grad=False``) are left out. Every
    group carries ``"names"``: the parameter names it holds, for the run record.
    """
    expect_module(model, function="param_groups")
    groups = _check_groups(groups, default)
    owner = {}
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            owner[id(param)] = (mod_name, f"{mod_name}.{p_name}" if mod_name else p_name, param)

    taken: set[int] = set()
    result = []
    for selection, options in groups:
        layers = set(select(model, selection).names)
        params, names = [], []
        for key, (mod_name, full, param) in owner.items():
            if mod_name in layers and key not in taken and param.requires_grad:
                taken.add(key)
                params.append(param)
                names.append(full)
        if params:
            result.append({**options, "params": params, "names": names})
    if default is not None:
        rest = [(full, p) for key, (_m, full, p) in owner.items()
                if key not in taken and p.requires_grad]
        if rest:
            result.append({**default, "params": [p for _, p in rest], "names": [n for n, _ in rest]})
    if not result:
        raise ConfigError("no trainable parameters in any group: every selected parameter is "
                         "frozen or the selections are empty")
    return result
