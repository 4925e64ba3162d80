"""PGD adversarial training (Madry et al. 2018), ℓ∞ and ℓ2.

min_w E_(x,y) [ max_{‖δ‖ ≤ ε} CE(f_w(x + δ), y) ], the inner maximum approximated by PGD-k with a
random start (:class:`robustlayers.attacks.PGD`). The attack runs with the model in eval() (as
EARLY's released code; ``attack_mode="train"`` follows the robust-overfitting / RAT code); the
loss is computed back in train() mode.

Adversarial methods split their work in two so that AWP (and RAT_WP) can reuse them:
``examples(ctx, x, y) -> x_adv`` (inner maximisation) and ``objective(ctx, model, x, x_adv, y)
-> StepOutput`` (outer loss, evaluated with any callable ``model``, e.g. perturbed weights).
"""

from __future__ import annotations

import abc

import torch.nn.functional as F

from .base import Method, StepOutput, register_method


class AdversarialMethod(Method):
    """``loss = objective(ctx, ctx.model, x, examples(ctx, x, y), y)``."""

    uses_pgd = True  # the config's ``steps`` must be >= 1

    @abc.abstractmethod
    def examples(self, ctx, x, y):
        """The adversarial examples of one batch (the inner maximisation)."""

    @abc.abstractmethod
    def objective(self, ctx, model, x, x_adv, y) -> StepOutput:
        """The outer loss given the clean and adversarial batch."""

    def loss(self, ctx, x, y) -> StepOutput:
        return self.objective(ctx, ctx.model, x, self.examples(ctx, x, y), y)


@register_method("pgd-at")
class PGDAT(AdversarialMethod):
    """L = CE(f(x_adv), y) with x_adv = PGD-k(x, y) (config.steps, α, ε, norm)."""

    def examples(self, ctx, x, y):
        return ctx.pgd()(ctx.model, x, y)

    def objective(self, ctx, model, x, x_adv, y) -> StepOutput:
        logits_adv = model(x_adv)
        return StepOutput(F.cross_entropy(logits_adv, y), logits_adv=logits_adv, x_adv=x_adv)

    def describe(self) -> dict:
        return {"name": self.name, "norm": self.config.norm, "steps": self.config.steps}
