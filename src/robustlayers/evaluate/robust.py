"""Robust accuracy and loss per attack, and the per-example worst case over an ensemble.

For every attack: accuracy and mean cross-entropy on the adversarial inputs (EARLY: the loss
stays informative when accuracy is near zero), wall-clock seconds, the attack's full
configuration (every robustness number carries it), the largest perturbation it made
and any report the attack left (``attack.last_report``, e.g. AutoAttack's check flags).

Worst case: an example counts as robust only if it is classified correctly on the clean input
*and* on every attack's output (δ = 0 lies in every ε-ball, so the clean point is part of the
ensemble); its worst loss is the maximum over the clean input and all attacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .inputs import as_tensors
from .progress import show_progress, task
from .metrics import batches, eval_mode, model_device, per_example_metrics, summarize, \
    training_modules
from .validate import validate_batch, validate_count, validate_model


def attack_config(attack) -> dict:
    """``attack.config()`` when the attack has one, else its class name."""
    config = getattr(attack, "config", None)
    if callable(config):
        return dict(config())
    return {"name": type(attack).__name__}


def _merge_reports(reports: list[tuple[int, dict]]) -> dict:
    """Combine per-batch ``last_report`` dicts weighted by batch size: ``n`` → sum, numbers →
    weighted mean, bools → any, dicts → merged recursively, lists → ordered union, else last."""
    merged: dict = {}
    keys = [k for _, r in reports for k in r]
    for key in dict.fromkeys(keys):
        items = [(n, r[key]) for n, r in reports if key in r]
        values = [v for _, v in items]
        if key == "n" and all(isinstance(v, int) for v in values):
            merged[key] = sum(values)
        elif all(isinstance(v, bool) for v in values):
            merged[key] = any(values)
        elif all(isinstance(v, dict) for v in values) and key != "config":
            merged[key] = _merge_reports(items)
        elif all(isinstance(v, (int, float)) for v in values):
            total = sum(n for n, _ in items)
            merged[key] = sum(n * float(v) for n, v in items) / max(total, 1)
        elif all(isinstance(v, (list, tuple)) for v in values):
            merged[key] = list(dict.fromkeys(e for v in values for e in v))
        else:
            merged[key] = values[-1]
    return merged


def run_attack(model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor, *,
               batch_size: int = 256, desc: str | None = None
               ) -> tuple[torch.Tensor, float, dict]:
    """Run ``attack(model, xb, yb)`` batch by batch on the model's device.

    Returns ``(x_adv on x's device, seconds, merged attack report)``. An attack output of the
    wrong shape, with NaN/inf or outside [0, 1] raises ValueError naming the attack. Inside
    :func:`robustlayers.evaluate.progress.show_progress` a bar (``desc``, default the attack's
    name) counts the batches.
    """
    device = model_device(model, x.device)
    out, reports = [], []
    label = attack_config(attack).get("name", type(attack).__name__)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    n_batches = -(-len(x) // batch_size)
    with task(n_batches, desc or str(label)) as bar:
        _attack_batches(model, attack, x, y, batch_size, device, label, out, reports, bar)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return torch.cat(out), seconds, _merge_reports(reports)


def _attack_batches(model, attack, x, y, batch_size, device, label, out, reports, bar) -> None:
    """The batch loop of :func:`run_attack`: checked adversarial batches appended to ``out``."""
    for s in batches(len(x), batch_size):
        xb, yb = x[s].to(device), y[s].to(device)
        adv = attack(model, xb, yb)
        if not isinstance(adv, torch.Tensor) or adv.shape != xb.shape:
            raise ValueError(f"attack {label!r} returned {getattr(adv, 'shape', type(adv))}, "
                             f"expected a tensor of shape {tuple(xb.shape)}")
        adv = adv.detach()
        if not torch.isfinite(adv).all():
            raise ValueError(f"attack {label!r} returned NaN or infinite pixels")
        if adv.min().item() < 0 or adv.max().item() > 1:
            raise ValueError(f"attack {label!r} returned pixels outside [0, 1]")
        report = getattr(attack, "last_report", None)
        if isinstance(report, dict) and report:
            reports.append((len(xb), dict(report)))
        out.append(adv.to(x.device, x.dtype))
        bar.update(1)


def perturbation_size(x_adv: torch.Tensor, x: torch.Tensor) -> dict:
    """Largest per-example ℓ∞ and ℓ2 distance between adversarial and clean inputs."""
    d = (x_adv - x).flatten(1).float()
    return {"linf": d.abs().amax(dim=1).max().item(), "l2": d.norm(dim=1).max().item()}


@dataclass
class AttackResult:
    """One attack's numbers; ``correct``/``losses`` are per example (not in JSON by default)."""

    name: str
    accuracy: float
    loss: float
    n: int
    seconds: float
    config: dict
    report: dict = field(default_factory=dict)
    max_perturbation: dict = field(default_factory=dict)
    correct: torch.Tensor | None = field(default=None, repr=False)
    losses: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self, per_example: bool = False) -> dict:
        out = {"name": self.name, "accuracy": self.accuracy, "loss": self.loss, "n": self.n,
               "seconds": self.seconds, "config": self.config, "report": self.report,
               "max_perturbation": self.max_perturbation}
        if per_example:
            out["correct"] = self.correct.tolist()
            out["losses"] = self.losses.tolist()
        return out


@dataclass
class EvaluationResult:
    """Clean + per-attack + worst-case numbers of one model on one set of examples."""

    n: int
    clean: dict
    attacks: dict[str, AttackResult]
    worst_case: dict
    clean_correct: torch.Tensor = field(repr=False)
    clean_losses: torch.Tensor = field(repr=False)
    worst_correct: torch.Tensor = field(repr=False)
    worst_losses: torch.Tensor = field(repr=False)
    training_modules: list[str] = field(default_factory=list)

    @property
    def model_was_training(self) -> bool:
        """True when any submodule was in training mode when evaluate_model was called."""
        return bool(self.training_modules)

    def to_dict(self, per_example: bool = False) -> dict:
        out = {"n": self.n, "clean": dict(self.clean),
               "attacks": {k: a.to_dict(per_example) for k, a in self.attacks.items()},
               "worst_case": dict(self.worst_case),
               "model_was_training": self.model_was_training}
        if per_example:
            out["clean"]["correct"] = self.clean_correct.tolist()
            out["worst_case"]["correct"] = self.worst_correct.tolist()
            out["worst_case"]["losses"] = self.worst_losses.tolist()
        return out


def evaluate_attack(model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor, *,
                    name: str | None = None, batch_size: int = 256) -> AttackResult:
    """Accuracy/loss of ``model`` (in eval()) on ``attack``'s adversarial examples of (x, y)."""
    config = attack_config(attack)
    name = name or str(config.get("name", type(attack).__name__))
    with eval_mode(model):
        x_adv, seconds, report = run_attack(model, attack, x, y, batch_size=batch_size,
                                            desc=f"attack {name}")
    correct, losses = per_example_metrics(model, x_adv, y, batch_size=batch_size, validate=False)
    stats = summarize(correct, losses)
    return AttackResult(name=name, accuracy=stats["accuracy"], loss=stats["loss"], n=stats["n"],
                        seconds=seconds, config=config, report=report,
                        max_perturbation=perturbation_size(x_adv, x), correct=correct,
                        losses=losses)


def evaluate_model(model: nn.Module, x, y=None, attacks: dict | None = None, *,
                   batch_size: int = 256, progress: bool | None = None) -> EvaluationResult:
    """Clean numbers, each attack's numbers and the per-example worst case.

    ``attacks`` maps a display name to an attack (``robustlayers.attacks.Attack`` or any
    callable ``(model, x, y) -> x_adv``). The data is ``x, y`` tensors or, with ``y`` left out,
    a Dataset, DataLoader, TensorData or ``(x, y)`` pair
    (``evaluate_model(model, loader, {"pgd": PGD(eps=8/255)})``). The model is evaluated and
    attacked in ``eval()``; the submodules that were in training mode at call time are recorded
    (the sanity check ``train_mode`` flags them) and every mode is restored. ``progress=True``
    shows a bar per attack on stderr (None: as set by ``show_progress``).
    """
    if isinstance(y, dict) and attacks is None:
        y, attacks = None, y
    if progress is not None:
        with show_progress(progress):
            return evaluate_model(model, x, y, attacks, batch_size=batch_size)
    x, y = as_tensors(x, y)
    validate_model(model)
    batch_size = validate_count(batch_size, name="batch_size")
    x, y = validate_batch(x, y)
    if not isinstance(attacks, dict):
        raise ValueError(f"attacks must be a dict name -> attack, e.g. {{'pgd-20': "
                         f"PGD(eps=8/255, steps=20)}}; got {type(attacks).__name__}")
    for key, attack in attacks.items():
        if not callable(attack):
            raise ValueError(f"attack {key!r} is not callable (expected attack(model, x, y))")
    training = training_modules(model)
    clean_correct, clean_losses = per_example_metrics(model, x, y, batch_size=batch_size)
    results = {key: evaluate_attack(model, attack, x, y, name=key, batch_size=batch_size)
               for key, attack in attacks.items()}
    worst_correct, worst_losses = clean_correct.clone(), clean_losses.clone()
    for r in results.values():
        worst_correct &= r.correct
        worst_losses = torch.maximum(worst_losses, r.losses)
    worst = summarize(worst_correct, worst_losses)
    worst.update({"attacks": list(results), "includes_clean": True})
    return EvaluationResult(n=len(x), clean=summarize(clean_correct, clean_losses),
                            attacks=results, worst_case=worst, clean_correct=clean_correct,
                            clean_losses=clean_losses, worst_correct=worst_correct,
                            worst_losses=worst_losses, training_modules=training)
