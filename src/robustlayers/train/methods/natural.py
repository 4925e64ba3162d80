"""Natural (clean) training: the cross-entropy of the clean batch."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Method, StepOutput, register_method


@register_method("natural")
class Natural(Method):
    """L = CE(f(x), y). No adversarial term; the best checkpoint is chosen by clean accuracy."""

    adversarial = False

    def loss(self, ctx, x, y) -> StepOutput:
        logits = ctx.model(x)
        return StepOutput(F.cross_entropy(logits, y), logits_clean=logits)
