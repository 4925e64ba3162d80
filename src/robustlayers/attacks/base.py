"""Common machinery of all attacks: input checks, eval-mode handling, seeding, losses (SPEC §2).

Call shape everywhere: ``attack(model, x, y) -> x_adv`` with x float NCHW in [0, 1] and y int64.
Gradients are taken with ``torch.autograd.grad(loss, delta)`` only, so parameter ``.grad`` is never
touched and the returned ``x_adv`` is detached.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .threat import ThreatModel, describe_eps

LOSSES = ("ce", "cw")


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


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin per example: max_{j≠y} z_j − z_y (> 0 iff misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return other - true


class Attack:
    """Base class. Subclasses implement ``_perturb(model, x, y, generator) -> x_adv``."""

    name = "attack"
    labels_required = True

    def __init__(self, threat: ThreatModel, *, steps: int = 1, alpha: float | None = None,
                 random_start: bool = False, restarts: int = 1, loss: str = "ce",
                 targeted: bool = False, seed: int = 0, train_mode: bool = False):
        if not isinstance(threat, ThreatModel):
            raise ValueError(f"threat must be a ThreatModel(norm, eps), got {type(threat).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.threat = threat
        self.steps = _check_positive("steps", steps, integer=True)
        self.restarts = _check_positive("restarts", restarts, integer=True)
        self.alpha = _check_positive("alpha", alpha, allow_none=True)
        self.random_start, self.loss = bool(random_start), loss
        self.targeted, self.seed, self.train_mode = bool(targeted), seed, bool(train_mode)
        self.last_report: dict = {}

    def config(self) -> dict:
        """JSON-able description recorded with every robustness number (SPEC §6)."""
        return {"name": self.name, "norm": self.threat.norm, "eps": self.threat.eps,
                "eps_over_255": describe_eps(self.threat.eps)["over_255"], "steps": self.steps,
                "alpha": self.alpha, "restarts": self.restarts, "random_start": self.random_start,
                "loss": self.loss, "targeted": self.targeted, "seed": self.seed}

    def __repr__(self):
        return f"{type(self).__name__}({self.config()})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 seed: int | None = None) -> torch.Tensor:
        """Return x_adv (detached). ``seed`` overrides the attack's seed for this call only
        (training loops pass a per-step seed so random starts differ between batches)."""
        check_model(model)
        x, y = check_inputs(x, y, labels_required=self.labels_required)
        if len(x) == 0:
            return x.clone()
        gen = torch.Generator(device=x.device)
        gen.manual_seed(self.seed if seed is None else int(seed))
        with attack_mode(model, self.train_mode), torch.enable_grad():
            x_adv = self._perturb(model, x, y, gen)
        return x_adv.detach().clamp(0, 1)

    def _perturb(self, model, x, y, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- helpers for gradient attacks ----------------------------------------------------------
    def objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example quantity the attack ascends: CE or CW margin; negated when targeted
        (then y is the target class)."""
        if y.numel() and (y.min() < 0 or y.max() >= logits.shape[1]):
            raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}] for a model with "
                             f"{logits.shape[1]} outputs, got range [{y.min().item()}, "
                             f"{y.max().item()}]")
        loss = F.cross_entropy(logits, y, reduction="none") if self.loss == "ce" \
            else margin_loss(logits, y)
        return -loss if self.targeted else loss

    def gradient(self, fn, delta: torch.Tensor) -> torch.Tensor:
        """∇_δ Σ fn(δ) via autograd.grad w.r.t. δ only; zeros where δ is unused (masked model)."""
        delta = delta.detach().requires_grad_(True)
        value = fn(delta).sum()
        if not value.requires_grad:
            return torch.zeros_like(delta)
        (grad,) = torch.autograd.grad(value, delta, allow_unused=True)
        return torch.zeros_like(delta) if grad is None else grad

    def start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """δ₀: random in the ball (clipped to the image box) or zero."""
        if not self.random_start or self.threat.eps == 0:
            return torch.zeros_like(x)
        return (x + self.threat.random_delta(x, generator)).clamp(0, 1) - x

    def step(self, x, delta, grad, alpha) -> torch.Tensor:
        """δ ← Π_ε(δ + α·dir(∇)), then x+δ clipped to [0, 1] (SPEC §2)."""
        delta = self.threat.project(delta + alpha * self.threat.direction(grad))
        return (x + delta).clamp(0, 1) - x

    def _note_zero_grads(self, grad: torch.Tensor):
        zero = (grad.flatten(1).abs().amax(dim=1) == 0).float().mean().item()
        self.last_report = {"zero_grad_fraction": zero}
