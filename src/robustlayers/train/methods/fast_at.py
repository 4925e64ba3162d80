"""Fast adversarial training with FGSM-RS (Wong, Rice & Kolter 2020).

δ₀ ~ U(−ε, ε); x_adv = Π_ε(x + δ₀ + α·sign(∇_δ CE(f(x + δ₀), y))) with α = 1.25ε
(``settings.alpha_scale``), then L = CE(f(x_adv), y). Attack in eval() mode. Wong et
al. pair it with a one-cycle schedule (``schedule="onecycle"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from robustlayers.attacks import FGSM

from robustlayers.train.distributed import shard_start
from robustlayers.train.settings import setting

from .base import Method, StepOutput, register_method


@register_method("fast-at")
class FastAT(Method):
    """L = CE(f(x_adv), y), x_adv from one FGSM step of size 1.25ε from a random start."""

    @dataclass
    class Settings:
        alpha_scale: float = setting(1.25, "FGSM-RS step size as a multiple of eps "
                                           "(Wong et al.: 1.25)")

    def attack(self, ctx) -> FGSM:
        attack = FGSM(ctx.threat, random_start=True,
                      alpha=self.settings.alpha_scale * ctx.threat.eps, seed=ctx.next_seed(),
                      train_mode=ctx.attack_train_mode)
        return shard_start(attack, getattr(ctx, "shard", None))  # data-parallel: rows of it

    def loss(self, ctx, x, y) -> StepOutput:
        x_adv = self.attack(ctx)(ctx.model, x, y)
        logits_adv = ctx.model(x_adv)
        return StepOutput(F.cross_entropy(logits_adv, y), logits_adv=logits_adv, x_adv=x_adv)

