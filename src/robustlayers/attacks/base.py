"""Common machinery of all attacks: input checks, eval-mode handling, seeding, losses (SPEC §2).

Call shape everywhere: ``attack(model, x, y) -> x_adv`` with x float NCHW in [0, 1] and y int64.
Gradients are taken with ``torch.autograd.grad(loss, delta)`` only, so parameter ``.grad`` is never
touched and the returned ``x_adv`` is detached.
"""
from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

from .checks import _check_positive, attack_mode, check_inputs, check_model
from .threat import ThreatModel, describe_eps

__all__ = ["LOSSES", "Attack", "attack_mode", "check_inputs", "check_model", "margin_loss"]

LOSSES = ("ce", "cw")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin per example: max_{j≠y} z_j − z_y (> 0 iff misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return other - true


class Attack(abc.ABC):
    """Base class of every attack: threat model, settings, ``config()`` and the call shape
    ``attack(model, x, y) -> x_adv``. Gradient attacks subclass :class:`GradientAttack`;
    wrappers (BPDA, transfer, AutoAttack) implement ``__call__`` themselves."""

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

    @abc.abstractmethod
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 seed: int | None = None) -> torch.Tensor:
        """Return the adversarial images for ``(x, y)`` against ``model``."""


class GradientAttack(Attack):
    """An attack that ascends an objective by gradients w.r.t. δ: inputs are validated, the
    model is switched to ``eval()`` (restored afterwards) and subclasses implement
    ``_perturb(model, x, y, generator) -> x_adv``."""

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

    @abc.abstractmethod
    def _perturb(self, model, x, y, generator) -> torch.Tensor:
        """The attack itself, on validated inputs with the model in attack mode."""

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
