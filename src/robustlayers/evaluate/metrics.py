"""Clean accuracy and loss, and per-example helpers every evaluation builds on.

The model runs in ``eval()`` (batch-norm statistics frozen) and every submodule's own
mode is restored afterwards. Loss is the mean cross-entropy of the logits; EARLY argues that the
loss, not the accuracy, is the informative number once accuracy is near zero, so both are always
reported.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .validate import validate_batch, validate_count, validate_model


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in ``eval()`` for the block; restore each submodule's own flag afterwards."""
    before = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in before:
            module.training = was_training


def training_modules(model: nn.Module) -> list[str]:
    """Names of the submodules (``""`` = the model itself) currently in training mode."""
    return [name for name, m in model.named_modules() if m.training]


def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """Device of the model's first parameter or buffer (``fallback`` for a stateless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


def batches(n: int, batch_size: int):
    """``slice`` objects covering ``range(n)`` in order, ``batch_size`` at a time."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` (already in the wanted mode) on ``x``, batched, returned on x's device."""
    device = model_device(model, x.device)
    out = [model(x[s].to(device)).float().to(x.device) for s in batches(len(x), batch_size)]
    logits = torch.cat(out)
    if logits.dim() != 2 or len(logits) != len(x):
        raise ValueError(f"model must return logits of shape (N, num_classes), got "
                         f"{tuple(logits.shape)} for {len(x)} inputs")
    return logits


def per_example_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        batch_size: int = 256, validate: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example correctness (bool, shape N) and cross-entropy loss (float, shape N) of the
    model in ``eval()`` on (x, y); mode restored. ``validate=False`` skips the input checks
    (callers that validated already)."""
    validate_model(model)
    batch_size = validate_count(batch_size, name="batch_size")
    if validate:
        x, y = validate_batch(x, y)
    with eval_mode(model):
        logits = logits_of(model, x, batch_size=batch_size)
    y = y.to(logits.device)
    if validate and len(y) and y.max().item() >= logits.shape[1]:
        raise ValueError(f"labels go up to {y.max().item()} but the model has "
                         f"{logits.shape[1]} outputs")
    correct = logits.argmax(dim=1) == y
    loss = F.cross_entropy(logits, y, reduction="none")
    return correct.cpu(), loss.cpu()


def summarize(correct: torch.Tensor, loss: torch.Tensor) -> dict:
    """``{"accuracy", "loss", "n"}`` from per-example correctness and loss (plain floats)."""
    n = int(correct.numel())
    if n == 0:
        raise ValueError("no examples to summarise")
    return {"accuracy": correct.float().mean().item(), "loss": loss.float().mean().item(), "n": n}


def clean_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  batch_size: int = 256) -> dict:
    """Clean accuracy (fraction in [0, 1]), mean cross-entropy loss and n."""
    correct, loss = per_example_metrics(model, x, y, batch_size=batch_size)
    return summarize(correct, loss)


def binomial_se(p: float, n: int) -> float:
    """Standard error sqrt(p(1−p)/n) of an accuracy p measured on n examples."""
    p = min(max(float(p), 0.0), 1.0)
    return (p * (1.0 - p) / max(int(n), 1)) ** 0.5
