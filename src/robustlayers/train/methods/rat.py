"""RAT's layer-wise regularisations of robust overfitting (Nguyen et al., "On the Intriguing
Layer-Wise Properties of Robust Overfitting", §3.3).

RAT decomposes a ResNet into its four residual stages ``layer1``…``layer4`` (stem conv, final BN
and classifier belong to none) and finds robust overfitting driven by the latter stages. Its two
remedies act on those stages only; both default to ``block:3,4`` and take any selection:

- ``rat-lr`` (RAT_LR): standard PGD-AT in which the selected layers keep a fixed learning rate
  (0.1) while every other parameter follows the run's schedule — two optimiser parameter groups,
  as in RAT's code.
- ``rat-wp`` (RAT_WP, Eqs. 8–10): AWP whose weight perturbation is non-zero only on the weight
  tensors (ndim > 1) of the selected layers, ‖v_j‖ = γ‖w_j‖ with γ = 0.01 (TRADES variant:
  ``base=trades``, γ = 0.005, 10 warm-up epochs, β = 6; preset ``rat-wp-trades-cifar10``).

RAT's code attacks with the model in ``train()`` mode and runs an extra clean forward per batch
(``attack_mode: train`` in the RAT presets).
"""

from __future__ import annotations

from dataclasses import dataclass

from robustlayers.train.settings import setting

from .awp import AWP, AWPSettings
from .base import register_method
from .pgd_at import PGDAT

SCHEDULES = ("constant", "piecewise", "cosine", "onecycle")


@dataclass
class RATLRSettings:
    layers: str = setting("block:3,4", "layer selection that keeps its own learning rate "
                                       "(RAT: stages 3 and 4)")
    layers_lr: float = setting(0.1, "learning rate of the selected layers (RAT: 0.1)")
    layers_schedule: str = setting("constant", "schedule of the selected layers' learning rate "
                                               "(RAT: constant)", choices=SCHEDULES)

    def check(self) -> None:
        if self.layers_lr <= 0:
            raise ValueError(f"rat-lr setting layers_lr must be > 0, got {self.layers_lr}")


@register_method("rat-lr")
class RATLR(PGDAT):
    """RAT_LR: PGD-AT with ``param_groups = [{select: layers, lr: layers_lr, schedule:
    layers_schedule}]`` ahead of the run's own groups."""

    Settings = RATLRSettings

    def setup(self, ctx) -> None:
        s = self.settings
        ctx.set_param_groups([{"select": s.layers, "lr": s.layers_lr,
                               "schedule": s.layers_schedule},
                              *ctx.group_spec])


@dataclass
class RATWPSettings(AWPSettings):
    layers: str = setting("block:3,4", "layer selection whose weight tensors (ndim > 1) are "
                                       "perturbed (RAT: stages 3 and 4)")


@register_method("rat-wp")
class RATWP(AWP):
    """RAT_WP: AWP restricted to ``layers`` (default ``block:3,4``)."""

    Settings = RATWPSettings
