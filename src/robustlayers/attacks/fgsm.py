"""FGSM (Goodfellow et al. 2015) and FGSM-RS ("Fast is better than free", Wong et al. 2020),
ℓ∞ and ℓ2 (the CLAT (Fast) ablation).

FGSM:    x_adv = Π(x + ε·sign(∇_x L))                      (α = ε)
FGSM-RS: δ₀ ~ U(−ε, ε); x_adv = Π(x + δ₀ + α·sign(∇_δ L))   (α = 1.25ε)
For ℓ2 the step is along the per-example normalised gradient and Π projects onto the ℓ2 ball;
the random start is uniform in the ℓ2 ball.
"""
from __future__ import annotations

from .pgd import PGD
from .threat import ThreatModel


class FGSM(PGD):
    """One gradient step; a single-step special case of :class:`PGD` (same geometry, seeding).
    ``FGSM(ThreatModel("linf", 8/255))`` or, torchattacks-style, ``FGSM(eps=8/255)``."""

    name = "fgsm"

    def __init__(self, threat: ThreatModel | None = None, *, eps=None, norm=None,
                 random_start: bool = False, alpha=None, seed: int = 0,
                 train_mode: bool = False, fold_bn="auto", channels_last="auto"):
        super().__init__(threat, eps=eps, norm=norm, steps=1, alpha=alpha,
                         random_start=random_start, restarts=1, loss="ce", seed=seed,
                         train_mode=train_mode, fold_bn=fold_bn, channels_last=channels_last)
        if alpha is None:
            self.alpha = (1.25 if random_start else 1.0) * self.threat.eps
        if random_start:
            self.name = "fgsm-rs"
