"""Common machinery of all attacks: input checks, eval-mode handling, seeding, losses.

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
from .fold import attack_model, check_choice
from .threat import ThreatModel, as_threat, describe_eps, parse_eps

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
    wrappers (BPDA, transfer, AutoAttack) implement ``__call__`` themselves.

    The budget is a :class:`ThreatModel` or, torchattacks-style, ``eps=`` (number or text such
    as ``"8/255"``) with ``norm=`` (``"linf"``/``"Linf"``/``"inf"`` or ``"l2"``/``"L2"``;
    default ℓ∞); ``alpha`` may be text too.
    """

    name = "attack"
    labels_required = True

    def __init__(self, threat: ThreatModel | None = None, *, eps=None, norm=None,
                 steps: int = 1, alpha=None, random_start: bool = False, restarts: int = 1,
                 loss: str = "ce", targeted: bool = False, seed: int = 0,
                 train_mode: bool = False):
        threat = as_threat(threat, norm=norm, eps=eps)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if isinstance(alpha, str):
            alpha = parse_eps(alpha, norm=threat.norm)
        self.threat = threat
        self.steps = _check_positive("steps", steps, integer=True)
        self.restarts = _check_positive("restarts", restarts, integer=True)
        self.alpha = _check_positive("alpha", alpha, allow_none=True)
        self.random_start, self.loss = bool(random_start), loss
        self.targeted, self.seed, self.train_mode = bool(targeted), seed, bool(train_mode)
        self.last_report: dict = {}

    def config(self) -> dict:
        """JSON-able description recorded with every robustness number."""
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
    ``_perturb(model, x, y, generator) -> x_adv``.

    Every check that needs a value from the device (input range, label range, the fraction of
    zero gradients) runs once per call, so the steps themselves never synchronise with the host.
    ``fold_bn`` / ``channels_last`` (True, False or "auto"): run the attack on a copy of the
    model with batch-norm folded into the preceding conv and/or in channels-last layout
    (:mod:`robustlayers.attacks.fold`; same input gradients to float tolerance, the model's
    weights untouched); "auto" uses each where measured faster (CPU, eval mode).
    """

    def __init__(self, threat: ThreatModel | None = None, *, fold_bn="auto",
                 channels_last="auto", **kwargs):
        super().__init__(threat, **kwargs)
        self.fold_bn = check_choice("fold_bn", fold_bn)
        self.channels_last = check_choice("channels_last", channels_last)

    def config(self) -> dict:
        return {**super().config(), "fold_bn": self.fold_bn, "channels_last": self.channels_last}

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
        self._labels_checked, self._zero_grads = y is None, None
        with attack_mode(model, self.train_mode), torch.enable_grad():
            runner, x_run, fast = attack_model(model, x, fold_bn=self.fold_bn,
                                               channels_last=self.channels_last,
                                               train_mode=self.train_mode,
                                               keep=self._keep_unfolded(model, x))
            self.last_report = {}
            x_adv = self._perturb(runner, x_run, y, gen)
        if self._zero_grads is not None:  # one device sync per call, after the last step
            self.last_report["zero_grad_fraction"] = self._zero_grads.item()
        self.last_report["fast_path"] = fast
        return x_adv.detach().clamp(0, 1).contiguous()

    def _keep_unfolded(self, model, x) -> tuple[str, ...]:
        """Module paths whose own output the attack reads (not folded); none by default."""
        return ()

    @abc.abstractmethod
    def _perturb(self, model, x, y, generator) -> torch.Tensor:
        """The attack itself, on validated inputs with the model in attack mode."""

    # --- helpers for gradient attacks ----------------------------------------------------------
    def objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example quantity the attack ascends: CE or CW margin; negated when targeted
        (then y is the target class). The label range is checked on the first call of each
        attack call only."""
        if not getattr(self, "_labels_checked", False):
            check_label_range(y, logits.shape[1])
            self._labels_checked = True
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
        """δ ← Π_ε(δ + α·dir(∇)), then x+δ clipped to [0, 1]."""
        delta = self.threat.project(delta + alpha * self.threat.direction(grad))
        return (x + delta).clamp(0, 1) - x

    def _note_zero_grads(self, grad: torch.Tensor):
        """Keep (on the device, no sync) the fraction of examples whose gradient is exactly
        zero; the first call of an attack call wins and is reported after the last step."""
        if getattr(self, "_zero_grads", None) is None:
            self._zero_grads = (grad.flatten(1).abs().amax(dim=1) == 0).float().mean()


def check_label_range(y: torch.Tensor, num_classes: int) -> None:
    """Labels must be class indices of a model with ``num_classes`` outputs (one device sync)."""
    if y.numel():
        lo, hi = torch.stack(torch.aminmax(y)).tolist()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes - 1}] for a model with "
                             f"{num_classes} outputs, got range [{lo}, {hi}]")
