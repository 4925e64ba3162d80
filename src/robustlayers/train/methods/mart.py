"""MART (Wang et al. 2020, Eq. 8): misclassification-aware adversarial training.

L = BCE(p(x_adv), y) + β · (1/n) Σ_i KL(p(x_i) ‖ p(x_adv_i)) · (1 − p_y(x_i)), with the boosted
cross-entropy BCE(p, y) = −log p_y − log(1 − max_{k≠y} p_k). The constants of the released code
are kept (log(1.0001 − p + 1e-12), log(p_adv + 1e-12), weight 1.0000001 − p_y). The inner
maximisation is CE PGD-k (as in MART) but from the uniform random start of
:class:`robustlayers.attacks.PGD` instead of MART's 0.001·N(0,1) start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustlayers.train.settings import setting

from .base import StepOutput, register_method
from .pgd_at import AdversarialMethod


def mart_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
              beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, boosted CE term, weighted KL term) of MART Eq. 8."""
    p_adv = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(p_adv, dim=1)[:, -2:]
    other = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), other)
    p_clean = F.softmax(logits, dim=1)
    p_true = p_clean.gather(1, y[:, None]).squeeze(1)
    kl = F.kl_div(torch.log(p_adv + 1e-12), p_clean, reduction="none").sum(dim=1)
    weighted = (kl * (1.0000001 - p_true)).mean()
    return bce + beta * weighted, bce, weighted


@register_method("mart")
class MART(AdversarialMethod):
    """MART Eq. 8 with β = ``settings.beta``; x_adv from CE PGD-k."""

    @dataclass
    class Settings:
        beta: float = setting(6.0, "MART λ: weight of the misclassification-aware KL term "
                                   "(Wang et al. use 5-6 on CIFAR-10)")

    def examples(self, ctx, x, y):
        return ctx.pgd()(ctx.model, x, y)

    def objective(self, ctx, model, x, x_adv, y) -> StepOutput:
        logits = model(x)
        logits_adv = model(x_adv)
        loss, bce, weighted = mart_loss(logits, logits_adv, y, self.settings.beta)
        return StepOutput(loss, logits_clean=logits, logits_adv=logits_adv, x_adv=x_adv,
                          extra={"bce": bce.detach(), "kl": weighted.detach()})

    def describe(self) -> dict:
        return {**super().describe(), "steps": self.config.steps}
