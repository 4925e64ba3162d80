"""Optimiser and learning-rate schedule built from a :class:`TrainConfig` and layer selections.

Parameter groups come from ``config.param_groups`` (or a method's own list, see
``TrainContext.set_param_groups``) through :func:`robustlayers.layers.param_groups`: each entry
``{"select": EXPR, "lr": .., "weight_decay": .., "schedule": ..}`` claims the trainable parameters
of its layers (first match wins); every other trainable parameter falls in a final ``default``
group with the config's lr / weight_decay / schedule. Frozen parameters are never in the
optimiser. Every group keeps ``select``, ``names`` (its parameter names, for the run record),
``base_lr`` and ``schedule``.

The schedule is stepped **once per iteration** (optimizer step), so cosine and one-cycle are
smooth and piecewise milestones fall exactly on epoch boundaries (milestones are converted to
iterations as ``round(milestone_epoch · steps_per_epoch)``). Its only state is the iteration
counter, so it can be rebuilt at any time for a new optimiser (``start_step``) and resumes
exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustlayers.layers import param_groups as layer_param_groups


def group_options(spec: dict, config) -> dict:
    """The optimiser options of one ``param_groups`` entry, config values filling the gaps."""
    return {"select": str(spec["select"]),
            "lr": float(spec.get("lr", config.lr)),
            "weight_decay": float(spec.get("weight_decay", config.weight_decay)),
            "schedule": spec.get("schedule", config.schedule)}


def build_optimizer(model: nn.Module, config, layer_map=None,
                    groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov, weight decay) or Adam (L2 weight decay) over the trainable
    parameters, one group per selection in ``groups`` (default ``config.param_groups``) plus the
    default group. ``layer_map`` is accepted for symmetry with the other builders; selections
    resolve through the model's cached layer map."""
    specs = config.param_groups if groups is None else groups
    pairs = [(options["select"], options) for options in
             (group_options(spec, config) for spec in specs)]
    default = {"select": "default", "lr": float(config.lr),
               "weight_decay": float(config.weight_decay), "schedule": config.schedule}
    built = layer_param_groups(model, pairs, default=default)
    for group in built:
        group["base_lr"] = group["lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(built, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(built, lr=config.lr, betas=tuple(config.adam_betas),
                                weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; valid choices: sgd, adam")


def milestone_steps(config, steps_per_epoch: int) -> list[int]:
    """Piecewise milestones in iterations: floats <= 1 are fractions of ``config.epochs``,
    other values are epochs."""
    out = []
    for m in config.milestones:
        epoch = m * config.epochs if isinstance(m, float) and m <= 1 else float(m)
        out.append(int(round(epoch * steps_per_epoch)))
    return sorted(out)


def lr_factor(kind: str, step: int, total: int, *, milestones=(), gamma: float = 0.1,
              peak: float = 0.4) -> float:
    """Multiplier of the base lr for the optimizer step number ``step`` (0-based) of ``total``.

    piecewise: gamma ** (number of milestones <= step) (RAT, EARLY, SPECTRUM);
    cosine: (1 + cos(π·step/total)) / 2 (CLAT);
    onecycle: linear 0 → 1 at ``peak``·total → 0 at the end, evaluated at step+1 so that no step
    has lr 0 (Wong et al. fast AT's cyclic schedule);
    constant: 1.
    """
    if kind == "constant":
        return 1.0
    if kind == "piecewise":
        return gamma ** sum(1 for m in milestones if step >= m)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if kind == "onecycle":
        t, top = min(step + 1, total), peak * total
        return t / top if t <= top else max(0.0, (total - t) / (total - top))
    raise ValueError(f"unknown schedule {kind!r}; valid choices: piecewise, cosine, onecycle, "
                     f"constant")


class LRSchedule:
    """Per-iteration learning rates: ``group["lr"] = group["base_lr"] · lr_factor(group's
    schedule, step)``. ``step()`` is called after every ``optimizer.step()``."""

    def __init__(self, optimizer: torch.optim.Optimizer, config, steps_per_epoch: int,
                 start_step: int = 0) -> None:
        self.optimizer = optimizer
        self.total = max(1, config.epochs * steps_per_epoch)
        self.milestones = milestone_steps(config, steps_per_epoch)
        self.gamma, self.peak = config.gamma, config.onecycle_peak
        self.step_count = int(start_step)
        self._apply()

    def factor(self, kind: str, step: int | None = None) -> float:
        return lr_factor(kind, self.step_count if step is None else step, self.total,
                         milestones=self.milestones, gamma=self.gamma, peak=self.peak)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * self.factor(group["schedule"])

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self._apply()


def build_scheduler(optimizer, config, steps_per_epoch: int, start_step: int = 0) -> LRSchedule:
    """The per-iteration schedule of ``config.schedule`` (groups may override it)."""
    return LRSchedule(optimizer, config, steps_per_epoch, start_step)
