"""Input validation shared by every evaluation entry point (docs/architecture.md).

Conventions: images are float NCHW tensors in [0, 1] (normalisation lives inside the model),
finite, one integer label per image; budgets ε ≥ 0; step sizes > 0; step counts ≥ 1. A violation
raises :class:`ValueError` whose message names the argument and the problem - evaluation never
prints a warning and goes on with bad input.

The batch rules are the attacks' own (:func:`robustlayers.attacks.check_inputs`), so a batch
that evaluates also attacks and vice versa; evaluation additionally refuses an empty batch.
Labels of any integer dtype are converted to int64 on the images' device.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import nn

from robustlayers.attacks import check_images, check_inputs, check_labels


def validate_images(x, *, name: str = "x") -> torch.Tensor:
    """Check ``x`` is a non-empty float NCHW tensor with finite values in [0, 1]; return it
    detached."""
    return check_images(x, name=name, allow_empty=False)


def validate_labels(y, n: int, *, name: str = "y", num_classes: int | None = None) -> torch.Tensor:
    """Check ``y`` holds ``n`` integer labels (1-D, >= 0, in [0, num_classes) when given);
    return them as int64."""
    return check_labels(y, n, name=name, num_classes=num_classes)


def validate_batch(x, y, *, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`validate_images` + :func:`validate_labels` with a matching count; y comes back
    int64 on x's device."""
    return check_inputs(x, y, allow_empty=False, num_classes=num_classes)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def validate_eps(eps, *, name: str = "eps") -> float:
    """ε must be a finite number ≥ 0 (input units, e.g. 8/255)."""
    value = _number(eps, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {eps!r}")
    return value


def validate_step(alpha, *, name: str = "alpha") -> float:
    """A step size must be a finite number > 0."""
    value = _number(alpha, name)
    if value <= 0:
        raise ValueError(f"{name} (step size) must be > 0, got {alpha!r}")
    return value


def validate_count(value, *, name: str = "steps", minimum: int = 1) -> int:
    """An integer count (steps, restarts, batch size, examples) that must be ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def validate_model(model, *, name: str = "model") -> nn.Module:
    """The model must be a ``torch.nn.Module`` (logits out, normalisation inside)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def validate_eps_list(eps_list, *, name: str = "eps_list") -> list[float]:
    """A non-empty sequence of budgets, each ≥ 0, strictly increasing after sorting (no repeats)."""
    try:
        values = [validate_eps(e, name=f"{name}[{i}]") for i, e in enumerate(eps_list)]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of numbers, got {eps_list!r}") from None
    if not values:
        raise ValueError(f"{name} is empty; give at least one ε")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values}")
    return values
