"""Transfer attacks: craft on a source model, evaluate on a target (SPECTRUM §4, CLAT Tables 3-4).

* Transfer PGD (SPECTRUM §4, Croce et al. 2022): attack the model *without* the quantiser and
  feed the images to the model *with* it; SPECTRUM §9 quantises the images to 8 bit first
  (``to_8bit=True``).
* Black-box transfer matrix (CLAT Tables 3-4): adversarial examples from model A on model B.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, check_inputs, check_model


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """round(x·255)/255: the 8-bit image an attacker could actually save (SPECTRUM §9).

    If x itself is on the 8-bit grid (all stored datasets are) the result stays inside an ℓ∞
    ball of radius k/255 around x; otherwise rounding may move it by up to 0.5/255 more.
    """
    return torch.round(x * 255.0) / 255.0


class TransferAttack(Attack):
    """``TransferAttack(source_model, attack)(target_model, x, y)`` returns
    ``attack(source_model, x, y)`` (optionally 8-bit quantised). The target is only validated;
    evaluating the returned images on it is the caller's job (``robustlayers.evaluate``).
    """

    name = "transfer"

    def __init__(self, source_model: nn.Module, attack: Attack, *, to_8bit: bool = False):
        check_model(source_model)
        if not isinstance(attack, Attack):
            raise ValueError(f"TransferAttack needs an Attack to run on the source, got "
                             f"{type(attack).__name__}")
        self.source_model, self.attack, self.to_8bit = source_model, attack, bool(to_8bit)
        self.threat, self.seed = attack.threat, attack.seed
        self.last_report = {}

    def config(self) -> dict:
        inner = self.attack.config()
        return {**inner, "name": f"transfer-{inner['name']}", "to_8bit": self.to_8bit,
                "source_model": type(self.source_model).__name__, "source_attack": inner}

    def __call__(self, target_model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 seed: int | None = None) -> torch.Tensor:
        check_model(target_model)
        check_inputs(x, y, labels_required=self.attack.labels_required)
        x_adv = self.attack(self.source_model, x, y, seed=seed)
        self.last_report = dict(self.attack.last_report)
        return quantize_8bit(x_adv) if self.to_8bit else x_adv
