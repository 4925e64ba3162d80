"""TRADES (Zhang et al. 2019, Eq. 5 / Algorithm 1).

L = CE(f(x), y) + β · KL(p(x) ‖ p(x_adv)), KL averaged over the batch, where the inner
maximisation ascends the same KL term:

    x_adv = argmax_{‖x' − x‖ ≤ ε} KL(p(x) ‖ p(x'))

by k steps of size α from x + 0.001·N(0, I) (sign steps for ℓ∞, normalised-gradient steps for ℓ2,
projection onto the ball and [0, 1] after each), the model in eval() with p(x) fixed. As in the
released TRADES code the KL is ``kl_div(log_softmax(f(x_adv)), softmax(f(x)))``, i.e. the clean
distribution is the reference, and gradients flow through both logits in the outer loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustlayers.attacks import attack_mode
from robustlayers.train.distributed import shard_randn
from robustlayers.train.settings import setting

from .base import StepOutput, register_method
from .pgd_at import AdversarialMethod


def kl_clean_adv(logits_adv: torch.Tensor, logits_clean: torch.Tensor,
                 reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(clean) ‖ softmax(adv)) = Σ p_clean (log p_clean − log p_adv)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1),
                    reduction=reduction)


def trades_examples(ctx, x: torch.Tensor, steps: int | None = None,
                    alpha: float | None = None) -> torch.Tensor:
    """The TRADES inner maximisation (KL objective, 0.001·N(0,1) start; noise from
    ``ctx.generator``). Only the input gradient is taken (autograd.grad w.r.t. x_adv)."""
    model, threat = ctx.model, ctx.threat
    steps = ctx.config.steps if steps is None else steps
    alpha = ctx.alpha if alpha is None else alpha
    with attack_mode(model, ctx.attack_train_mode), torch.enable_grad():
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1).detach()
        noise = shard_randn(ctx, x, ctx.generator)  # data-parallel: rows of the batch's draw
        x_adv = x + 0.001 * noise
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            delta = threat.project(x_adv.detach() + alpha * threat.direction(grad) - x)
            x_adv = (x + delta).clamp(0, 1)
    return x_adv.detach()


@register_method("trades")
class TRADES(AdversarialMethod):
    """L = CE(f(x), y) + β·KL(p(x) ‖ p(x_adv)) (TRADES Eq. 5), β = ``settings.beta``."""

    @dataclass
    class Settings:
        beta: float = setting(6.0, "TRADES β: weight of the KL term (Zhang et al. use 6)")

    def examples(self, ctx, x, y):
        return trades_examples(ctx, x)

    def objective(self, ctx, model, x, x_adv, y) -> StepOutput:
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits, y)
        robust = kl_clean_adv(logits_adv, logits)
        loss = natural + self.settings.beta * robust
        return StepOutput(loss, logits_clean=logits, logits_adv=logits_adv, x_adv=x_adv,
                          extra={"kl": robust.detach()})

    def describe(self) -> dict:
        return {**super().describe(), "steps": self.config.steps, "start": "x + 0.001*N(0,1)"}
