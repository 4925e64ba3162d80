"""Sanity checks reported with every evaluation, failing loudly when violated (after Carlini
et al., On Evaluating Adversarial Robustness, 2019).

:func:`run_sanity_checks` runs them all on one model and example set:

1. ``eps_monotone`` - PGD accuracy at ε ∈ {0, ε/2, ε, 2ε, large} is non-increasing;
2. ``large_eps`` - at ℓ∞ ε = 1 (ℓ2 ε = sqrt(C·H·W)) the attack can reach any image, so accuracy
   must be ≤ chance + tolerance;
3. ``more_steps`` / ``more_restarts`` - PGD-2k and PGD-k with r restarts are not weaker than PGD-k;
4. ``fgsm_vs_pgd`` - FGSM is not stronger than PGD at the same ε;
5. ``transfer_vs_white_box`` - via :func:`checks.check_transfer_matrix` on a transfer matrix;
6. ``zero_gradients`` - input gradients that are exactly zero (gradient masking);
7. ``randomness`` - two eval() forward passes of the same input differ (stochastic defence);
8. ``train_mode`` - the model was handed over in training mode;
9. ``autoattack_flags`` - pyautoattack's own check messages, when AutoAttack ran;
10. ``finite_outputs`` - every logit is finite (a model with NaN/inf outputs gets this check
    instead of advice about stochastic defences or gradient masking);
plus checks read from an :class:`~robustlayers.evaluate.robust.EvaluationResult`
(:func:`checks_from_results`): perturbations within ε, attacks' zero-gradient reports, and the
steps / restarts / FGSM-vs-PGD comparisons between attacks that were evaluated anyway.
Thresholds are documented in :mod:`robustlayers.evaluate.checks`. A check that cannot run is
reported as skipped with the reason (printed to stderr as ``sanity check skipped: ...``): every
check after ``finite_outputs`` when the outputs are not finite, the attack checks at ε = 0. At a
budget that already reaches every image (ℓ∞ ε ≥ 1) the large-ε check uses the PGD at ε itself
and the sweep has no 2ε point.

Cost of the attack checks (``attack_checks=True``) with PGD-k: FGSM (1 gradient) + PGD-2k +
PGD-k × r restarts + PGD-k at ε/2 and 2ε + PGD-max(k, 10) at the large ε + PGD-k at ε (reused
when ``results`` already holds the same PGD) ≈ (6 + r)·k + 10 gradient passes, i.e. about
8-9 PGD-k evaluations for r = 2. Failures are printed to stderr as ``SANITY CHECK FAILED: ...``
and raise :class:`SanityError` with ``strict=True``.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from .checks import (MASKING, SanityCheck, SanityError, check_eps_monotone, check_fgsm_vs_pgd,
                     check_finite_outputs, check_large_eps, check_more_restarts, check_more_steps,
                     check_no_rise, check_randomness, check_train_mode, check_zero_gradients,
                     skipped_check)
from .metrics import eval_mode, logits_of
from .robust import evaluate_attack
from .validate import validate_batch, validate_count, validate_model, validate_step

FGSM_NAMES = ("fgsm", "fgsm-rs")
ATTACK_CHECKS = ("eps_monotone", "more_steps", "more_restarts", "fgsm_vs_pgd", "large_eps")
AUTOATTACK_NAMES = ("autoattack", "autoattack-custom", "autoattack-plus", "autoattack-rand")


def default_build(kind: str, threat, **kw):
    """The attacks the checks need: ``"fgsm"`` (no random start, α = ε) or ``"pgd"`` (CE)."""
    from robustlayers.attacks import FGSM, PGD

    if kind == "fgsm":
        return FGSM(threat, seed=kw.get("seed", 0))
    if kind == "pgd":
        return PGD(threat, **kw)
    raise ValueError(f"unknown sanity attack kind {kind!r}; expected 'fgsm' or 'pgd'")


def large_eps_for(norm: str, shape) -> float:
    """A budget that reaches every image in [0, 1]^d: 1 for ℓ∞, sqrt(d) for ℓ2."""
    return 1.0 if norm == "linf" else math.sqrt(math.prod(shape))


def report_checks(checks: list[SanityCheck], *, strict: bool = False, stream=None) -> None:
    """Print every failed check prominently to stderr, and every skipped one with its reason;
    with ``strict`` raise SanityError."""
    failed = [c for c in checks if not c.passed]
    stream = sys.stderr if stream is None else stream
    for c in checks:
        if c.skipped:
            print(f"sanity check skipped: {c.name}: {c.detail.removeprefix('skipped: ')}",
                  file=stream)
    for c in failed:
        print(f"SANITY CHECK FAILED: {c.name} [{c.severity}]: {c.detail}\n"
              f"    suggestion: {c.suggestion}", file=stream)
    if strict and failed:
        raise SanityError(failed)


# --------------------------------------------------------------------------- from results

def _key(config: dict, *drop) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in drop + ("seed",)))


def _budget_check(attacks) -> SanityCheck | None:
    over = []
    for name, r in attacks.items():
        norm, eps = r.config.get("norm"), r.config.get("eps")
        if norm in ("linf", "l2") and isinstance(eps, (int, float)) and r.max_perturbation:
            size = r.max_perturbation[norm]
            if size > eps * (1 + 1e-4) + 1e-5:
                over.append(f"{name}: {norm} {size:.5g} > ε={eps:.5g}")
    if not any(r.config.get("norm") in ("linf", "l2") for r in attacks.values()):
        return None
    return SanityCheck("perturbation_budget", not over,
                       "; ".join(over) or "every adversarial example lies inside its ε-ball",
                       "the attack left its threat model: its projection/clipping is broken, "
                       "so its accuracy is not a robustness number", data={"violations": over})


def _attack_pairs(attacks, field_name: str):
    """(fewer, more) pairs of PGD results that differ only in ``field_name``."""
    pgd = [(n, r) for n, r in attacks.items() if r.config.get("name") in ("pgd", "pgd-cw")]
    for i, (na, a) in enumerate(pgd):
        for nb, b in pgd[i + 1:]:
            if _key(a.config, field_name) != _key(b.config, field_name):
                continue
            va, vb = a.config.get(field_name), b.config.get(field_name)
            if isinstance(va, int) and isinstance(vb, int) and va != vb:
                yield ((na, a), (nb, b)) if va < vb else ((nb, b), (na, a))


def checks_from_results(result) -> list[SanityCheck]:
    """Checks that need no extra attack, read from an EvaluationResult."""
    attacks, n = result.attacks, result.n
    out = [check_train_mode(result.training_modules)]
    budget = _budget_check(attacks)
    if budget is not None:
        out.append(budget)
    zero = {k: r.report["zero_grad_fraction"] for k, r in attacks.items()
            if isinstance(r.report.get("zero_grad_fraction"), (int, float))}
    if zero:
        bad = {k: v for k, v in zero.items() if v > 0.01}
        out.append(SanityCheck("attack_zero_gradients", not bad,
                               "; ".join(f"{k}: {100 * v:.1f}% of examples had a zero gradient at "
                                         f"the first step" for k, v in (bad or zero).items()),
                               MASKING, data={"zero_grad_fraction": zero}))
    aa = {k: r.report.get("flags", []) for k, r in attacks.items()
          if r.config.get("name") in AUTOATTACK_NAMES or r.config.get("package") == "pyautoattack"}
    if aa:
        flags = {k: v for k, v in aa.items() if v}
        out.append(SanityCheck("autoattack_flags", not flags,
                               "; ".join(f"{k}: {' | '.join(v)}" for k, v in flags.items())
                               or "AutoAttack raised none of its own check flags",
                               "AutoAttack's checks flagged the model (see pyautoattack "
                               "flags_doc.md): randomised → version='rand' / EOT; zero gradients "
                               "→ BPDA / transfer; probabilities instead of logits → return "
                               "logits", data={"flags": flags}))
    for (nf, f), (nm, m) in _attack_pairs(attacks, "steps"):
        out.append(check_more_steps(f.accuracy, m.accuracy, n, steps=(f.config["steps"],
                                                                      m.config["steps"])))
    for (nf, f), (nm, m) in _attack_pairs(attacks, "restarts"):
        out.append(check_more_restarts(f.accuracy, m.accuracy, n,
                                       restarts=(f.config["restarts"], m.config["restarts"])))
    for nf, f in attacks.items():
        if f.config.get("name") not in FGSM_NAMES:
            continue
        for np_, p in attacks.items():
            same = all(p.config.get(k) == f.config.get(k) for k in ("norm", "eps"))
            if p.config.get("name") == "pgd" and same and not p.config.get("targeted"):
                c = check_fgsm_vs_pgd(f.accuracy, p.accuracy, n)
                c.detail = f"{nf} vs {np_}: " + c.detail
                out.append(c)
    return out


# --------------------------------------------------------------------------- runner

def _num_classes(model, x) -> int:
    with eval_mode(model):
        return int(logits_of(model, x[:1]).shape[1])


def _reused_accuracy(results, attack) -> float | None:
    if results is None:
        return None
    config = attack.config()
    for r in results.attacks.values():
        if r.config == config and r.n == len(results.clean_correct):
            return r.accuracy
    return None


def run_sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat,
                      steps: int = 10, alpha: float | None = None, restarts: int = 2,
                      seed: int = 0, num_classes: int | None = None, results=None,
                      attack_checks: bool = True, large_eps: float | None = None,
                      build=None, batch_size: int = 256, strict: bool = False,
                      report: bool = True) -> list[SanityCheck]:
    """Run the sanity checks (module docstring) on ``model`` and (x, y) under ``threat``.

    ``results`` (an EvaluationResult on the same examples) adds :func:`checks_from_results` and
    lets the PGD-k run be reused. ``build(kind, threat, **kw)`` makes the attacks (default
    :func:`default_build`; tests inject crafted ones). ``attack_checks=False`` skips the checks
    that need extra attacks (1-4). Failures are printed (``report``); ``strict`` raises
    :class:`SanityError`.
    """
    validate_model(model)
    x, y = validate_batch(x, y)
    if getattr(threat, "norm", None) not in ("linf", "l2") or not hasattr(threat, "eps"):
        raise ValueError(f"threat must be a robustlayers.attacks.ThreatModel(norm, eps), got "
                         f"{threat!r}")
    steps = validate_count(steps, name="steps")
    restarts = validate_count(restarts, name="restarts", minimum=2)
    if alpha is not None:
        alpha = validate_step(alpha)
    build = default_build if build is None else build
    training = list(results.training_modules) if results is not None else []
    training += [n for n, m in model.named_modules() if m.training and n not in training]
    finite = check_finite_outputs(model, x, batch_size=batch_size)
    checks = [check_train_mode(training), finite]
    if not finite.passed:
        reason = "the model's outputs are not finite (see finite_outputs)"
        names = ("randomness", "zero_gradients") + (ATTACK_CHECKS if attack_checks else ())
        checks += [skipped_check(name, reason) for name in names]
    else:
        checks += [check_randomness(model, x, batch_size=batch_size),
                   check_zero_gradients(model, x, y, batch_size=batch_size)]
        if attack_checks and threat.eps > 0:
            checks += _attack_checks(model, x, y, threat, steps, alpha, restarts, seed,
                                     num_classes or _num_classes(model, x), results, large_eps,
                                     build, batch_size)
        elif attack_checks:
            checks += [skipped_check(name, f"ε = {threat.eps:g}: there is no perturbation to "
                                     "attack with") for name in ATTACK_CHECKS]
    if results is not None:
        checks += [c for c in checks_from_results(results) if c.name != "train_mode"]
    if report:
        report_checks(checks, strict=strict)
    elif strict and any(not c.passed for c in checks):
        raise SanityError([c for c in checks if not c.passed])
    return checks


def _attack_checks(model, x, y, threat, steps, alpha, restarts, seed, num_classes, results,
                   large_eps, build, batch_size) -> list[SanityCheck]:
    from robustlayers.attacks import ThreatModel

    n, eps = len(x), threat.eps

    def accuracy(attack) -> float:
        reused = _reused_accuracy(results, attack)
        if reused is not None:
            return reused
        return evaluate_attack(model, attack, x, y, batch_size=batch_size).accuracy

    def pgd(e, k=steps, r=1):
        a = None if alpha is None else alpha * e / eps
        return build("pgd", ThreatModel(threat.norm, e), steps=k, alpha=a, restarts=r,
                     random_start=True, seed=seed)

    acc_k = accuracy(pgd(eps))
    out = [check_more_steps(acc_k, accuracy(pgd(eps, 2 * steps)), n, steps=(steps, 2 * steps)),
           check_more_restarts(acc_k, accuracy(pgd(eps, steps, restarts)), n,
                               restarts=(1, restarts)),
           check_fgsm_vs_pgd(accuracy(build("fgsm", threat, seed=seed)), acc_k, n)]
    big = large_eps_for(threat.norm, x.shape[1:]) if large_eps is None else float(large_eps)
    sweep = {0.0: None, eps / 2: None, eps: acc_k}
    if 2 * eps < big:
        sweep[2 * eps] = None
    with eval_mode(model):
        sweep[0.0] = (logits_of(model, x, batch_size=batch_size).argmax(1) == y.to(x.device)) \
            .float().mean().item()
    for e in sweep:
        if sweep[e] is None:
            sweep[e] = accuracy(pgd(e))
    if big > eps:
        k_big = max(steps, 10)
        big_attack = build("pgd", ThreatModel(threat.norm, big), steps=k_big, alpha=None,
                           restarts=1, random_start=True, seed=seed)
        sweep[big] = accuracy(big_attack)
        out.append(check_large_eps(sweep[big], n=n, num_classes=num_classes, eps=big,
                                   norm=threat.norm))
    else:  # ε itself reaches every image: the PGD at ε is the large-ε attack
        large = check_large_eps(acc_k, n=n, num_classes=num_classes, eps=eps, norm=threat.norm)
        large.detail += f" (ε ≥ {big:.4g} reaches every image: measured with the PGD at ε)"
        out.append(large)
    monotone = check_eps_monotone(list(sweep), list(sweep.values()), n)
    if 2 * eps >= big:
        monotone.detail += f"; no 2ε point: 2ε ≥ {big:.4g} already reaches every image"
    out.insert(0, monotone)
    return out


__all__ = ["SanityCheck", "SanityError", "check_no_rise", "checks_from_results",
           "default_build", "large_eps_for", "report_checks", "run_sanity_checks"]
