"""Input validation and model-mode handling shared by every attack (architecture.md conventions:
bad input raises ValueError naming the problem; attacks run the model in eval(), SPEC §2)."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn


def check_inputs(x, y, *, labels_required: bool = True):
    """Validate an attack batch; raise ValueError naming the problem. Returns detached (x, y)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D NCHW batch, got shape {tuple(x.shape)} "
                         f"(add a batch dimension with x.unsqueeze(0) for one image)")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor in [0, 1], got dtype {x.dtype}")
    x = x.detach()
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"x has values outside [0, 1] (min {x.min().item():.4g}, max "
                         f"{x.max().item():.4g}); images must be in [0, 1] with normalisation "
                         f"inside the model")
    if y is None:
        if labels_required:
            raise ValueError("y (labels) is required for this attack")
        return x, None
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor of int64 labels, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"y must be 1-D (one label per example), got shape {tuple(y.shape)}")
    if y.dtype != torch.int64:
        raise ValueError(f"y must have dtype torch.int64, got {y.dtype} (use y.long())")
    if len(y) != len(x):
        raise ValueError(f"label count mismatch: x has {len(x)} examples, y has {len(y)} labels")
    if y.device != x.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}")
    return x, y.detach()


def check_model(model):
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


@contextmanager
def attack_mode(model: nn.Module, train_mode: bool = False):
    """Put ``model`` in eval() (SPEC §2) and restore every submodule's own mode afterwards."""
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
