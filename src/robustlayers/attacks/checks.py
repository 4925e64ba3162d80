"""Input validation and model-mode handling shared by every attack and every evaluation entry
point (architecture.md conventions: bad input raises ValueError naming the problem; attacks run
the model in eval()).

One rule set for a batch ``(x, y)``, used by :mod:`robustlayers.attacks` and
:mod:`robustlayers.evaluate` alike:

* ``x``: a float NCHW tensor, finite, with values in [0, 1] (normalisation lives in the model);
  returned detached. An empty batch is accepted by attacks (they return it unchanged) and
  refused by evaluation (``allow_empty=False``: there is nothing to measure).
* ``y``: a 1-D tensor of integer class labels, one per image; any integer dtype is accepted and
  converted to int64 on ``x``'s device (float, bool and complex labels are refused); negative
  labels are refused, and labels ``>= num_classes`` too when ``num_classes`` is known.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn


def check_images(x, *, name: str = "x", allow_empty: bool = True) -> torch.Tensor:
    """Check ``x`` is a float NCHW batch with finite values in [0, 1]; return it detached.

    ``allow_empty=False`` refuses a batch of 0 examples."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D NCHW batch, got shape {tuple(x.shape)} "
                         f"(add a batch dimension with x.unsqueeze(0) for one image)")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype "
                         f"{x.dtype} (divide uint8 images by 255)")
    if not allow_empty and len(x) == 0:
        raise ValueError(f"{name} is empty (0 examples); nothing to evaluate")
    x = x.detach()
    if x.numel():
        # one device sync: min/max propagate NaN and expose ±inf
        lo, hi = torch.stack(torch.aminmax(x)).tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if lo < 0 or hi > 1:
            raise ValueError(f"{name} has values outside [0, 1] (min {lo:.4g}, max {hi:.4g}); "
                             f"images must be in [0, 1] with normalisation inside the model")
    return x


def check_labels(y, n: int, *, name: str = "y", num_classes: int | None = None,
                 device: torch.device | str | None = None, x_name: str = "x") -> torch.Tensor:
    """Check ``y`` holds ``n`` integer class labels (1-D, >= 0, < ``num_classes`` when given);
    return them detached as int64 (on ``device`` when given)."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer class labels (int64), got "
                         f"{type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one label per example), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels (int64), got dtype {y.dtype} "
                         f"(use {name}.long())")
    if len(y) != n:
        raise ValueError(f"label count mismatch: {x_name} has {n} examples, {name} has "
                         f"{len(y)} labels")
    y = y.detach().to(device=device, dtype=torch.int64)
    if len(y):
        lo, hi = torch.stack(torch.aminmax(y)).tolist()
        if lo < 0:
            raise ValueError(f"{name} has a negative label ({lo}); labels are class indices "
                             f"0, 1, ..., num_classes - 1")
        if num_classes is not None and hi >= num_classes:
            raise ValueError(f"{name} has label {hi} but the model has {num_classes} classes "
                             f"(valid labels 0..{num_classes - 1})")
    return y


def check_inputs(x, y, *, labels_required: bool = True, allow_empty: bool = True,
                 num_classes: int | None = None):
    """Validate a batch with :func:`check_images` and :func:`check_labels`; raise ValueError
    naming the problem. Returns ``(x, y)``: x detached, y int64 on x's device (or ``None``
    when ``y`` is ``None`` and ``labels_required`` is False)."""
    x = check_images(x, allow_empty=allow_empty)
    if y is None:
        if labels_required:
            raise ValueError("y (labels) is required for this attack")
        return x, None
    return x, check_labels(y, len(x), num_classes=num_classes, device=x.device)


def check_model(model):
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


@contextmanager
def attack_mode(model: nn.Module, train_mode: bool = False):
    """Put ``model`` in eval() and restore every submodule's own mode afterwards."""
    if train_mode:
        yield model
        return
    before = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in before:
            m.training = was_training


def _check_positive(name, value, *, integer=False, allow_none=False):
    if value is None and allow_none:
        return None
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
