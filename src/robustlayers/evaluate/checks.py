"""The individual sanity checks of a robustness evaluation: they flag likely gradient masking
(Athalye et al., Obfuscated Gradients Give a False Sense of Security, 2018; Carlini et al., On
Evaluating Adversarial Robustness, 2019).

Each ``check_*`` returns a :class:`SanityCheck` naming what failed and what to do about it.
Thresholds (documented here, used everywhere):

- *"must not rise"* comparisons (accuracy vs ε, more steps, more restarts, FGSM vs PGD, transfer
  vs white-box): a rise of the supposedly weaker-or-equal number counts as a violation when it
  exceeds ``TOLERANCE`` (1 percentage point) + ``N_SE`` (2) binomial standard errors
  sqrt(p(1−p)/n), p = the mean of the two accuracies, n = number of examples.
- *large ε* (ℓ∞ ε = 1 reaches every image; ℓ2 ε = sqrt(C·H·W) likewise): accuracy must be
  ≤ chance (1/K) + ``TOLERANCE`` + ``N_SE`` standard errors at p = 1/K.
- *zero gradients*: more than ``ZERO_GRAD_MAX_FRACTION`` (1 %) of examples with an input
  gradient that is exactly zero (or any non-finite gradient).
- *randomness*: two forward passes of the same input in ``eval()`` whose logits, each scaled to
  unit ℓ2 norm, differ by more than ``RANDOMNESS_TOL`` (1e-4, AutoAttack's value), or whose
  predictions differ.
- *training mode*: any submodule in ``train()`` when evaluation was called (severity warning).
- *finite outputs*: any NaN/inf logit on the examples (the other checks and the attacks are then
  meaningless and are reported as skipped).

A check that cannot run says so: it is reported with ``skipped=True``, ``passed=True`` and the
reason in ``detail`` (e.g. every attack check at ε = 0).
- *budget*: an attack's largest perturbation exceeds its ε by more than 1e-5 (relative 1e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from robustlayers.errors import FAILURE, RobustLayersError

from .metrics import batches, binomial_se, eval_mode, logits_of, model_device

TOLERANCE = 0.01
N_SE = 2.0
ZERO_GRAD_MAX_FRACTION = 0.01
RANDOMNESS_TOL = 1e-4
MASKING = "gradient masking suspected: use BPDA (for non-differentiable parts) / a transfer " \
          "attack / AutoAttack"


@dataclass
class SanityCheck:
    """Outcome of one check. ``severity`` is "error" (numbers unreliable) or "warning";
    ``skipped`` marks a check that could not run (``detail`` says why; it counts as passed)."""

    name: str
    passed: bool
    detail: str
    suggestion: str = ""
    severity: str = "error"
    data: dict = field(default_factory=dict)
    skipped: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": bool(self.passed), "skipped": self.skipped,
                "detail": self.detail, "suggestion": self.suggestion if not self.passed else "",
                "severity": self.severity, "data": self.data}


def skipped_check(name: str, reason: str) -> SanityCheck:
    """A check that could not run, with the reason."""
    return SanityCheck(name, True, f"skipped: {reason}", severity="warning",
                       data={"reason": reason}, skipped=True)


class SanityError(RobustLayersError, RuntimeError):
    """Raised in strict mode when a sanity check fails; ``.checks`` holds the failed ones.
    (The command line exits 1: the evaluation ran, its numbers are not to be trusted.)"""

    exit_code = FAILURE

    def __init__(self, checks: list[SanityCheck]):
        self.checks = list(checks)
        lines = [f"{c.name}: {c.detail} -> {c.suggestion}" for c in self.checks]
        super().__init__("sanity check(s) failed:\n  " + "\n  ".join(lines))


def rise_threshold(p_a: float, p_b: float, n: int) -> float:
    """Largest rise of an accuracy over another that still counts as noise (module docstring)."""
    return TOLERANCE + N_SE * binomial_se((p_a + p_b) / 2.0, n)


def _pct(p: float) -> str:
    return f"{100.0 * p:.2f}%"


def check_no_rise(name: str, base_label: str, base_acc: float, other_label: str,
                  other_acc: float, n: int, suggestion: str) -> SanityCheck:
    """Generic: ``other_acc`` must not exceed ``base_acc`` by more than :func:`rise_threshold`."""
    limit = rise_threshold(base_acc, other_acc, n)
    rise = other_acc - base_acc
    passed = rise <= limit
    relation = "exceeds" if not passed else "does not exceed"
    detail = (f"{other_label} accuracy {_pct(other_acc)} {relation} {base_label} accuracy "
              f"{_pct(base_acc)} by more than {100 * limit:.2f} pp (n={n})")
    return SanityCheck(name, passed, detail, suggestion,
                       data={base_label: base_acc, other_label: other_acc, "threshold": limit,
                             "n": n})


def check_eps_monotone(eps, accuracy, n: int) -> SanityCheck:
    """Accuracy must be non-increasing in ε: each point is compared to the lowest accuracy at
    any smaller ε."""
    pairs = sorted(zip(map(float, eps), map(float, accuracy)))
    worst = None
    for j in range(1, len(pairs)):
        e_low, a_low = min(pairs[:j], key=lambda p: p[1])
        e_j, a_j = pairs[j]
        excess = (a_j - a_low) - rise_threshold(a_low, a_j, n)
        if excess > 0 and (worst is None or excess > worst[0]):
            worst = (excess, e_low, a_low, e_j, a_j)
    data = {"eps": [p[0] for p in pairs], "accuracy": [p[1] for p in pairs], "n": n}
    suggestion = ("accuracy rising with ε means the attack fails at larger budgets: " + MASKING
                  + "; also check that the step size scales with ε and steps suffice")
    if worst is None:
        return SanityCheck("eps_monotone", True, f"accuracy non-increasing in ε over "
                           f"{len(pairs)} budgets (n={n})", suggestion, data=data)
    _, e_low, a_low, e_j, a_j = worst
    return SanityCheck("eps_monotone", False,
                       f"accuracy rises from {_pct(a_low)} at ε={e_low:.4g} to {_pct(a_j)} at "
                       f"ε={e_j:.4g} (n={n})", suggestion, data=data)


def check_large_eps(accuracy: float, *, n: int, num_classes: int, eps: float,
                    norm: str = "linf") -> SanityCheck:
    """At a budget that reaches (nearly) any image accuracy must be ≈ chance or below."""
    chance = 1.0 / num_classes
    limit = chance + TOLERANCE + N_SE * binomial_se(chance, n)
    passed = accuracy <= limit
    detail = (f"{norm} ε={eps:.4g}: accuracy {_pct(accuracy)} vs limit {_pct(limit)} "
              f"(chance {_pct(chance)}, n={n})")
    suggestion = ("an attack that may reach any image should drive accuracy to chance or below; "
                  "it does not: " + MASKING + ", or check the attack's projection/clipping")
    return SanityCheck("large_eps", passed, detail, suggestion,
                       data={"eps": eps, "norm": norm, "accuracy": accuracy, "limit": limit,
                             "n": n})


def check_more_steps(acc_few: float, acc_many: float, n: int, *, steps=("k", "2k")) -> SanityCheck:
    """PGD with more steps must not have higher accuracy."""
    return check_no_rise(
        "more_steps", f"PGD-{steps[0]}", acc_few, f"PGD-{steps[1]}", acc_many, n,
        "more attack steps raised accuracy: " + MASKING + "; or the step size is too large to "
        "converge (APGD in AutoAttack adapts it)")


def check_more_restarts(acc_one: float, acc_many: float, n: int, *, restarts=(1, "r")
                        ) -> SanityCheck:
    """PGD with more random restarts must not have higher accuracy."""
    return check_no_rise(
        "more_restarts", f"{restarts[0]} restart(s)", acc_one, f"{restarts[1]} restarts",
        acc_many, n, "more restarts raised accuracy: the restart selection or seeding is broken, "
        "or " + MASKING)


def check_fgsm_vs_pgd(acc_fgsm: float, acc_pgd: float, n: int) -> SanityCheck:
    """Single-step FGSM must not be stronger (lower accuracy) than PGD at the same ε."""
    return check_no_rise(
        "fgsm_vs_pgd", "FGSM", acc_fgsm, "PGD", acc_pgd, n,
        "FGSM is stronger than PGD at the same ε: " + MASKING + "; also check PGD's α·steps ≥ ε "
        "and that it uses a random start")


def check_transfer(white_box_acc: float, transfer_acc: float, n: int, *, source: str = "source",
                   target: str = "target") -> SanityCheck:
    """A black-box/transfer attack must not beat the white-box attack on the same target."""
    return check_no_rise(
        "transfer_vs_white_box", f"transfer {source}->{target}", transfer_acc,
        f"white-box on {target}", white_box_acc, n,
        "a transfer (black-box) attack beats the white-box attack: " + MASKING)


def check_transfer_matrix(result) -> SanityCheck:
    """:func:`check_transfer` on every off-diagonal cell of a transfer matrix."""
    failed = []
    for target in result.names:
        for source in result.names:
            if source != target:
                c = check_transfer(result.matrix[target][target], result.matrix[source][target],
                                   result.n, source=source, target=target)
                if not c.passed:
                    failed.append(c)
    if not failed:
        return SanityCheck("transfer_vs_white_box", True, "no transfer attack beats white-box "
                           f"on any of {len(result.names)} models (n={result.n})", MASKING)
    return SanityCheck("transfer_vs_white_box", False, "; ".join(c.detail for c in failed),
                       failed[0].suggestion, data={"violations": [c.data for c in failed]})


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    batch_size: int = 256) -> torch.Tensor:
    """∇_x CE(f(x), y) per example, model in eval() (mode restored); zeros if x is unused."""
    device = model_device(model, x.device)
    grads = []
    with eval_mode(model), torch.enable_grad():
        for s in batches(len(x), batch_size):
            xb = x[s].to(device).clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb).float(), y[s].to(device), reduction="sum")
            g = None
            if loss.requires_grad:
                (g,) = torch.autograd.grad(loss, xb, allow_unused=True)
            grads.append(torch.zeros_like(xb) if g is None else g.detach())
    return torch.cat(grads).cpu()


def check_zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         max_fraction: float = ZERO_GRAD_MAX_FRACTION,
                         batch_size: int = 256) -> SanityCheck:
    """Share of examples whose input gradient is exactly zero (AutoAttack's zero-gradient flag)."""
    grad = input_gradients(model, x, y, batch_size=batch_size).flatten(1)
    finite = bool(torch.isfinite(grad).all())
    zero = (grad.abs().amax(dim=1) == 0).float().mean().item() if finite else 0.0
    passed = finite and zero <= max_fraction
    detail = (f"{_pct(zero)} of {len(x)} examples have an exactly zero input gradient "
              f"(limit {_pct(max_fraction)})" if finite else "input gradient has NaN/inf values")
    return SanityCheck("zero_gradients", passed, detail,
                       MASKING + "; zero/non-finite gradients come from quantisation, "
                       "non-differentiable ops or a saturated softmax (try a margin loss: pgd-cw)",
                       data={"zero_fraction": zero, "finite": finite, "limit": max_fraction})


def check_finite_outputs(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256
                         ) -> SanityCheck:
    """Every logit on ``x`` in eval() is finite. NaN/inf outputs come from non-finite weights
    (a diverged training run) or a broken input normalisation, not from the defence."""
    with eval_mode(model):
        logits = logits_of(model, x, batch_size=batch_size)
    bad = int((~torch.isfinite(logits)).any(dim=1).sum())
    detail = (f"all logits finite on {len(x)} inputs" if not bad else
              f"{bad} of {len(x)} inputs give NaN/inf logits")
    return SanityCheck("finite_outputs", bad == 0, detail,
                       "the model outputs NaN/inf: its weights are not finite (a diverged "
                       "training run: evaluate an earlier checkpoint) or its input "
                       "normalisation divides by zero (check mean/std); no accuracy or "
                       "robustness number of it means anything",
                       data={"non_finite_inputs": bad, "n": len(x)})


def check_randomness(model: nn.Module, x: torch.Tensor, *, passes: int = 2,
                     tol: float = RANDOMNESS_TOL, batch_size: int = 256) -> SanityCheck:
    """Repeated forward passes in eval() must give the same logits (deterministic model)."""
    xb = x[:batch_size]
    with eval_mode(model):
        outs = [logits_of(model, xb, batch_size=batch_size) for _ in range(max(2, passes))]
    unit = [o / (o.norm(dim=1, keepdim=True) + 1e-10) for o in outs]
    diff = max((u - unit[0]).norm(dim=1).max().item() for u in unit[1:])
    flips = max(int((o.argmax(1) != outs[0].argmax(1)).sum()) for o in outs[1:])
    passed = math.isfinite(diff) and diff <= tol and flips == 0
    detail = (f"{len(outs)} forward passes of {len(xb)} inputs in eval(): max normalised logit "
              f"difference {diff:.3g} (limit {tol:g}), {flips} prediction change(s)")
    return SanityCheck("randomness", passed, detail,
                       "the model is stochastic in eval() (randomised defence or active "
                       "dropout/noise): use Expectation over Transformation (EOT) and AutoAttack "
                       "version='rand'", data={"max_diff": diff, "flips": flips, "tol": tol})


def check_train_mode(model_or_names) -> SanityCheck:
    """Flag a model handed to evaluation in training mode (BN batch statistics, dropout)."""
    names = [n for n, m in model_or_names.named_modules() if m.training] \
        if isinstance(model_or_names, nn.Module) else list(model_or_names)
    shown = ", ".join(repr(n or "<model>") for n in names[:5]) + (" ..." if len(names) > 5 else "")
    detail = ("all modules in eval() mode" if not names else
              f"{len(names)} module(s) in training mode at evaluation time: {shown}")
    return SanityCheck("train_mode", not names, detail,
                       "call model.eval() before evaluating: in train() batch-norm uses batch "
                       "statistics and dropout is active (robustlayers evaluated in eval() and "
                       "restored the mode, but your own code may not)", severity="warning",
                       data={"training_modules": names[:50]})
