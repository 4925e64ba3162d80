"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks"), ℓ∞ and ℓ2, with restarts.

ℓ∞: δ₀ ~ U(−ε, ε) (or 0); δ ← clip_ε(δ + α·sign(∇_δ L(f(x+δ), y))); x+δ kept in [0, 1].
ℓ2 (RAT): δ ← Π_{‖·‖₂≤ε}(δ + α·∇/‖∇‖₂), per example.
Each restart returns its last iterate; across restarts we keep, per example, a misclassifying δ
if any restart found one (for targeted: one that hits the target), else the δ of highest loss.
The first restart draws exactly the random start a single-restart attack with the same seed
draws, so restarts are never worse than one start.

``batch_restarts``: the restarts run side by side as one batch of restarts × N examples (the
same random starts, drawn in the same order, and the same per-example choice, so the result
equals the restarts run one after another up to float rounding); "auto" does so on GPUs in
eval mode, where one large batch is faster than several small ones. ``compile``: every step
after a restart's first runs as one compiled graph (:mod:`robustlayers.attacks.compiled_step`).
"""
from __future__ import annotations

import torch

from .base import GradientAttack
from .compiled_step import ascent_step, check_compile, compiled_ascent_step
from .fold import check_choice
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
    see :class:`~robustlayers.attacks.base.GradientAttack`; ``compile`` (False, True or a
    ``torch.compile`` mode) turns both off where "auto" (the compiled step runs the model
    itself: the fast-path copy's folded weights are new tensors after every update, which would
    make the compiled step recompile). ``batch_restarts``: True, False or "auto" (GPU,
    eval mode); see the module docstring.
    """

    name = "pgd"

    def __init__(self, threat: ThreatModel | None = None, *, eps=None, norm=None,
                 steps: int = 10, alpha=None, random_start: bool = True, restarts: int = 1,
                 loss: str = "ce", targeted: bool = False, seed: int = 0,
                 train_mode: bool = False, fold_bn="auto", channels_last="auto",
                 compile=False, batch_restarts="auto"):
        self.compile = check_compile(compile)
        if self.compile:
            for name, value in (("fold_bn", fold_bn), ("channels_last", channels_last)):
                if value is True:
                    raise ValueError(f"{name}=True cannot be combined with compile: the "
                                     f"compiled step runs the model itself; use {name}='auto' "
                                     f"or False")
            fold_bn = channels_last = False
        super().__init__(threat, eps=eps, norm=norm, steps=steps, alpha=alpha,
                         random_start=random_start, restarts=restarts, loss=loss,
                         targeted=targeted, seed=seed, train_mode=train_mode, fold_bn=fold_bn,
                         channels_last=channels_last)
        if self.restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 needs random_start=True (every restart would start "
                             "from δ=0 and give the same result)")
        self.batch_restarts = check_choice("batch_restarts", batch_restarts)
        if self.batch_restarts is True and self.train_mode:
            raise ValueError("batch_restarts=True cannot be used with train_mode=True: batch-norm "
                             "statistics would mix the restarts; use batch_restarts='auto' or "
                             "False")
        if self.alpha is None:
            self.alpha = 2.5 * self.threat.eps / self.steps

    def config(self) -> dict:
        return {**super().config(), "compile": self.compile,
                "batch_restarts": self.batch_restarts}

    def run_once(self, model, x, y, delta) -> torch.Tensor:
        """One restart (or several side by side) from ``delta``; returns the last iterate. The
        first step holds the once-per-call checks; the others are :func:`ascent_step` (compiled
        with ``compile``)."""
        grad = self.gradient(lambda d: self.objective(model(x + d), y), delta)
        self._note_zero_grads(grad[:self._n])  # no sync: read after the last step
        delta = self.step(x, delta, grad, self.alpha).detach()
        step = compiled_ascent_step(self.compile) if self.compile else ascent_step
        for _ in range(self.steps - 1):
            delta = step(self, model, x, y, delta, self.alpha)
        return delta

    @torch.no_grad()
    def _score(self, model, x, y, delta):
        logits = model(x + delta)
        hit = logits.argmax(1) == y if self.targeted else logits.argmax(1) != y
        return hit, self.objective(logits, y)

    def _batched(self, x) -> bool:
        if self.restarts == 1 or self.batch_restarts is False:
            return False
        return self.batch_restarts is True or (x.device.type == "cuda" and not self.train_mode)

    def _perturb(self, model, x, y, generator):
        self._n = len(x)
        if self._batched(x):
            starts = torch.cat([self.start(x, generator) for _ in range(self.restarts)])
            ends = self.run_once(model, x.repeat(self.restarts, *[1] * (x.dim() - 1)),
                                 y.repeat(self.restarts), starts)
            deltas = list(ends.chunk(self.restarts))
        else:
            deltas = None
        self.last_report["batch_restarts"] = deltas is not None
        best = deltas[0] if deltas else self.run_once(model, x, y, self.start(x, generator))
        if self.restarts == 1:
            return x + best
        best_hit, best_loss = self._score(model, x, y, best)
        for r in range(1, self.restarts):
            delta = deltas[r] if deltas else self.run_once(model, x, y, self.start(x, generator))
            hit, loss = self._score(model, x, y, delta)
            better = (hit & ~best_hit) | ((hit == best_hit) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), delta, best)  # no sync
            best_hit, best_loss = best_hit | hit, torch.where(better, loss, best_loss)
        return x + best
