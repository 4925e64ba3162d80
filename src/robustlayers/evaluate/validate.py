"""Input validation shared by every evaluation entry point (SPEC §2, §6; docs/architecture.md).

Conventions: images are float NCHW tensors in [0, 1] (normalisation lives inside the model),
finite, one int label per image; budgets ε ≥ 0; step sizes > 0; step counts ≥ 1. A violation
raises :class:`ValueError` whose message names the argument and the problem - evaluation never
prints a warning and goes on with bad input.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import nn


def validate_images(x, *, name: str = "x") -> torch.Tensor:
    """Check ``x`` is a float NCHW tensor with finite values in [0, 1]; return it detached."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D NCHW batch, got shape {tuple(x.shape)} "
                         f"(use x.unsqueeze(0) for a single image)")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype "
                         f"{x.dtype} (divide uint8 images by 255)")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (0 examples); nothing to evaluate")
    x = x.detach()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} has values outside [0, 1] (min {lo:.4g}, max {hi:.4g}); "
                         f"images must be in [0, 1] with normalisation inside the model")
    return x


def validate_labels(y, n: int, *, name: str = "y", num_classes: int | None = None) -> torch.Tensor:
    """Check ``y`` holds ``n`` integer labels (1-D), in [0, num_classes) when given."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one label per example), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype} (use y.long())")
    if len(y) != n:
        raise ValueError(f"label count mismatch: {n} images but {len(y)} labels in {name}")
    y = y.detach().long()
    if len(y) and y.min().item() < 0:
        raise ValueError(f"{name} has a negative label ({y.min().item()}); labels are class indices")
    if num_classes is not None and len(y) and y.max().item() >= num_classes:
        raise ValueError(f"{name} has label {y.max().item()} but the model has {num_classes} "
                         f"classes (valid labels 0..{num_classes - 1})")
    return y


def validate_batch(x, y, *, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`validate_images` + :func:`validate_labels` with a matching count."""
    x = validate_images(x)
    y = validate_labels(y, len(x), num_classes=num_classes)
    if y.device != x.device:
        y = y.to(x.device)
    return x, y


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
