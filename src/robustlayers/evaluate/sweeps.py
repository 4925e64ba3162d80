"""Accuracy and loss against a sweep of ε (SPECTRUM's spectrum of budgets).

``attack_factory(eps) -> attack`` builds the attack for each budget, so step size and steps can
scale with ε (SPECTRUM: α = (ε/8)·2/255). ε = 0 is evaluated as the clean input (no attack is
built: a zero budget leaves nothing to search). The sanity check
:func:`robustlayers.evaluate.sanity.check_eps_monotone` reads a :class:`SweepResult` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from robustlayers.attacks import describe_eps

from .metrics import per_example_metrics, summarize
from .robust import evaluate_attack
from .validate import validate_batch, validate_count, validate_eps_list, validate_model


@dataclass
class SweepResult:
    """Per ε (sorted ascending): accuracy, loss, seconds and the attack configuration."""

    eps: list[float]
    accuracy: list[float]
    loss: list[float]
    seconds: list[float]
    configs: list[dict]
    n: int
    correct: list[torch.Tensor] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"n": self.n, "points": [
            {"eps": e, "eps_over_255": describe_eps(e)["over_255"], "accuracy": a, "loss": lo,
             "seconds": s, "config": c}
            for e, a, lo, s, c in zip(self.eps, self.accuracy, self.loss, self.seconds,
                                      self.configs)]}


def eps_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack_factory, eps_list, *,
              batch_size: int = 256) -> SweepResult:
    """Evaluate ``attack_factory(eps)`` for every ε in ``eps_list`` (sorted ascending).

    Each point is an independent attack, so a sound attack gives accuracy non-increasing in ε
    up to noise; a rise is what :func:`~robustlayers.evaluate.sanity.check_eps_monotone` flags.
    """
    validate_model(model)
    batch_size = validate_count(batch_size, name="batch_size")
    x, y = validate_batch(x, y)
    if not callable(attack_factory):
        raise ValueError("attack_factory must be callable: eps -> attack")
    eps_values = sorted(validate_eps_list(eps_list))
    result = SweepResult([], [], [], [], [], n=len(x))
    for eps in eps_values:
        if eps == 0:
            correct, losses = per_example_metrics(model, x, y, batch_size=batch_size)
            stats, seconds, config = summarize(correct, losses), 0.0, {"name": "clean", "eps": 0.0}
        else:
            r = evaluate_attack(model, attack_factory(eps), x, y, batch_size=batch_size)
            stats, seconds, config, correct = \
                {"accuracy": r.accuracy, "loss": r.loss}, r.seconds, r.config, r.correct
        result.eps.append(eps)
        result.accuracy.append(stats["accuracy"])
        result.loss.append(stats["loss"])
        result.seconds.append(seconds)
        result.configs.append(config)
        result.correct.append(correct)
    return result
