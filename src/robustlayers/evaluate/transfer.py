"""Black-box transfer matrix (CLAT Tables 3–4).

``matrix[source][target]`` is the accuracy of ``target`` on adversarial examples crafted with
``attack`` on ``source``; the diagonal is the white-box accuracy. A transfer (off-diagonal)
accuracy clearly *below* the target's own white-box accuracy means the white-box attack on the
target is weaker than a black-box one - the gradient-masking symptom that
:func:`robustlayers.evaluate.sanity.check_transfer_matrix` flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .metrics import eval_mode, per_example_metrics, summarize
from .robust import attack_config, run_attack
from .validate import validate_batch, validate_count, validate_model


@dataclass
class TransferResult:
    """Accuracy/loss of every target on every source's adversarial examples."""

    names: list[str]
    matrix: dict[str, dict[str, float]]
    loss: dict[str, dict[str, float]]
    clean: dict[str, dict]
    seconds: dict[str, float]
    config: dict
    n: int
    correct: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def white_box(self) -> dict[str, float]:
        """The diagonal: each model's accuracy under the attack crafted on itself."""
        return {m: self.matrix[m][m] for m in self.names}

    def to_dict(self) -> dict:
        return {"models": list(self.names), "matrix": self.matrix, "loss": self.loss,
                "clean": self.clean, "white_box": self.white_box, "seconds": self.seconds,
                "attack": self.config, "n": self.n}


def transfer_matrix(models: dict, x: torch.Tensor, y: torch.Tensor, attack, *,
                    batch_size: int = 256) -> TransferResult:
    """Craft adversarial examples with ``attack`` on each model; evaluate them on every model.

    ``models`` maps a name to an ``nn.Module`` (all see the same inputs, in ``eval()``; modes
    restored). Rows are sources, columns targets.
    """
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict name -> nn.Module")
    for name, model in models.items():
        validate_model(model, name=f"models[{name!r}]")
    if not callable(attack):
        raise ValueError("attack must be callable: attack(model, x, y) -> x_adv")
    batch_size = validate_count(batch_size, name="batch_size")
    x, y = validate_batch(x, y)
    names = list(models)
    result = TransferResult(names=names, matrix={}, loss={}, clean={}, seconds={},
                            config=attack_config(attack), n=len(x))
    for name in names:
        correct, losses = per_example_metrics(models[name], x, y, batch_size=batch_size)
        result.clean[name] = summarize(correct, losses)
    for source in names:
        with eval_mode(models[source]):
            x_adv, seconds, _ = run_attack(models[source], attack, x, y, batch_size=batch_size)
        result.seconds[source] = seconds
        result.matrix[source], result.loss[source], result.correct[source] = {}, {}, {}
        for target in names:
            correct, losses = per_example_metrics(models[target], x_adv, y,
                                                  batch_size=batch_size, validate=False)
            stats = summarize(correct, losses)
            result.matrix[source][target] = stats["accuracy"]
            result.loss[source][target] = stats["loss"]
            result.correct[source][target] = correct
    return result
