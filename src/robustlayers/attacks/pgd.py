"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks"), ℓ∞ and ℓ2, with restarts.

ℓ∞: δ₀ ~ U(−ε, ε) (or 0); δ ← clip_ε(δ + α·sign(∇_δ L(f(x+δ), y))); x+δ kept in [0, 1].
ℓ2 (RAT): δ ← Π_{‖·‖₂≤ε}(δ + α·∇/‖∇‖₂), per example.
Each restart returns its last iterate; across restarts we keep, per example, a misclassifying δ
if any restart found one (for targeted: one that hits the target), else the δ of highest loss.
The first restart draws exactly the random start a single-restart attack with the same seed
draws, so restarts are never worse than one start.
"""
from __future__ import annotations

import torch

from .base import GradientAttack
from .threat import ThreatModel


class PGD(GradientAttack):
    """PGD-k. ``alpha`` defaults to 2.5·ε/steps (Madry et al.; same rule for ℓ2).

    EARLY: ε=8/255, α=2/255, 10 steps (train) / α=1/255, 100 steps (test). SPECTRUM: α=(ε/8)·2/255.
    CLAT: ε=0.03, α=0.007, 10 steps. RAT ℓ2: ε=128/255, α=15/255.
    ``loss="cw"`` is the margin max_{j≠y} z_j − z_y; ``targeted=True`` makes y the target class
    and minimises the loss. ``train_mode=True`` leaves the model's mode alone (default: eval()).

    The budget is a ThreatModel or given directly: ``PGD(ThreatModel("linf", 8/255), steps=10)``
    equals ``PGD(eps=8/255, alpha=2/255, steps=10)`` (torchattacks' call) and
    ``PGD(eps="8/255", norm="Linf", alpha="2/255", steps=10)``. ``fold_bn`` / ``channels_last``:
    see :class:`~robustlayers.attacks.base.GradientAttack`.
    """

    name = "pgd"

    def __init__(self, threat: ThreatModel | None = None, *, eps=None, norm=None,
                 steps: int = 10, alpha=None, random_start: bool = True, restarts: int = 1,
                 loss: str = "ce", targeted: bool = False, seed: int = 0,
                 train_mode: bool = False, fold_bn="auto", channels_last="auto"):
        super().__init__(threat, eps=eps, norm=norm, steps=steps, alpha=alpha,
                         random_start=random_start, restarts=restarts, loss=loss,
                         targeted=targeted, seed=seed, train_mode=train_mode, fold_bn=fold_bn,
                         channels_last=channels_last)
        if self.restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 needs random_start=True (every restart would start "
                             "from δ=0 and give the same result)")
        if self.alpha is None:
            self.alpha = 2.5 * self.threat.eps / self.steps

    def run_once(self, model, x, y, generator) -> torch.Tensor:
        """One restart; returns δ (last iterate)."""
        delta = self.start(x, generator)

        def loss_fn(d):
            return self.objective(model(x + d), y)

        for _ in range(self.steps):
            grad = self.gradient(loss_fn, delta)
            self._note_zero_grads(grad)  # first step of the call only, no sync
            delta = self.step(x, delta, grad, self.alpha).detach()
        return delta

    @torch.no_grad()
    def _score(self, model, x, y, delta):
        logits = model(x + delta)
        hit = logits.argmax(1) == y if self.targeted else logits.argmax(1) != y
        return hit, self.objective(logits, y)

    def _perturb(self, model, x, y, generator):
        best = self.run_once(model, x, y, generator)
        if self.restarts == 1:
            return x + best
        best_hit, best_loss = self._score(model, x, y, best)
        for _ in range(self.restarts - 1):
            delta = self.run_once(model, x, y, generator)
            hit, loss = self._score(model, x, y, delta)
            better = (hit & ~best_hit) | ((hit == best_hit) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), delta, best)  # no sync
            best_hit, best_loss = best_hit | hit, torch.where(better, loss, best_loss)
        return x + best
