"""Tables, figures and claim verdicts of the ``eps-spectrum`` study (SPECTRUM: Sridhar et al.,
"Towards Alternative Techniques for Improving Adversarial Robustness: Analysis of Adversarial
Training at a Spectrum of Perturbations").

All models are attacked on the same test images, so two models' robust errors are compared
*paired*: the sampling noise of their difference is two standard errors of the per-example
difference of outcomes (:func:`paired_noise`), much smaller than that of two independent
accuracies. ε*(δ) is an argmin over noisy errors, so the overdesign claim compares the best
error among models trained at ε ≤ δ with the best among models at ε > δ: when the two differ by
no more than their noise, which side holds the minimum is not resolved and the verdict is
inconclusive. With two or more seeds every claim uses the seed-to-seed spread instead.
"""

from __future__ import annotations

import math

import numpy as np

from robustlayers.studies.claims import combine, compare, missing
from robustlayers.studies.eps_spectrum import PAPER, _tag
from robustlayers.studies.eps_spectrum_analysis_parts import (
    corruption_claim, filter_claims, quantisation_claims, quantisation_tables, series_figure,
)
from robustlayers.studies.eps_spectrum_eval import unpack_bits

OVERDESIGN = ("For a PGD attack of strength δ, the model with the lowest robust error was "
              "trained at a budget ε* > δ (overdesign, SPECTRUM §3)")
NOT_FAR = ("Train a bit above δ, not far above: the model at the largest ε has a higher robust "
           "error than the best model between δ and it (SPECTRUM §3)")


def paired_noise(correct_a: np.ndarray, correct_b: np.ndarray, z: float = 2.0) -> float:
    """``z`` standard errors of the difference of two accuracies measured on the *same* n
    examples: the standard error of the mean of the per-example differences (variance floored
    at 1/n, as :func:`~robustlayers.studies.claims.accuracy_noise` does)."""
    n = len(correct_a)
    if n == 0:
        return math.inf
    d = correct_a.astype(float) - correct_b.astype(float)
    return z * math.sqrt(max(float(d.var()), 1.0 / n) / n)


class Spectrum:
    """The study's numbers by (ε label, seed): robust errors and outcomes per δ, filter norms,
    quantisation grids and corruption accuracy (None where a task did not finish)."""

    def __init__(self, opts, results):
        self.opts, self.results = opts, results
        self.eps, self.deltas, self.seeds = opts.eps(), opts.deltas(), opts.seed_list()
        self.robust = {(lab, s): results.evaluation(f"robust/{_tag(lab, s)}")
                       for lab, _ in self.eps for s in self.seeds}
        self.quant = {(lab, s): results.evaluation(f"quant/{_tag(lab, s)}")
                      for lab, _ in self.eps for s in self.seeds}
        self.corrupt = {(lab, s): results.evaluation(f"corrupt/{_tag(lab, s)}")
                        for lab, _ in self.eps for s in self.seeds}

    def point(self, label: str, seed: int, delta: float) -> dict | None:
        record = self.robust.get((label, seed))
        for p in (record or {}).get("points", []):
            if math.isclose(p["delta"], delta, rel_tol=1e-9, abs_tol=1e-12):
                return p
        return None

    def error(self, label: str, seed: int, delta: float) -> float | None:
        p = self.point(label, seed, delta)
        return None if p is None else float(p["error"])

    def correct(self, label: str, seed: int, delta: float) -> np.ndarray | None:
        p, record = self.point(label, seed, delta), self.robust.get((label, seed))
        if p is None or "correct" not in p:
            return None
        return unpack_bits(p["correct"], record["source"]["n_examples"])

    def mean_error(self, label: str, delta: float) -> float | None:
        values = [self.error(label, s, delta) for s in self.seeds]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    def collapsed(self, label: str) -> bool:
        """Whether a run of this ε collapsed (its last clean accuracy near chance)."""
        return any((self.results.final(f"train/{_tag(label, s)}") or {}).get("collapsed")
                   for s in self.seeds)

    def n_examples(self) -> int | None:
        return next((r["source"]["n_examples"] for r in self.robust.values() if r), None)


def _argmin(sp: Spectrum, labels: list[str], seed: int, delta: float):
    """(label, error) of the lowest error among ``labels`` for one seed; None if any is missing."""
    errors = [(lab, sp.error(lab, seed, delta)) for lab in labels]
    if any(e is None for _, e in errors):
        return None
    return min(errors, key=lambda item: item[1])


def _paired_compare(sp: Spectrum, claim_id: str, text: str, delta: float, group_a, group_b,
                    names) -> dict:
    """compare(best error of group_a, best error of group_b, ">") per seed, with the paired
    sampling noise of the two argmin models with one seed."""
    a, b, picks = [], [], []
    for seed in sp.seeds:
        best_a, best_b = _argmin(sp, group_a, seed, delta), _argmin(sp, group_b, seed, delta)
        if best_a is None or best_b is None:
            return missing(claim_id, PAPER, text, "a robust error of this δ is missing (a run "
                           "or evaluation did not finish)")
        a.append(best_a[1])
        b.append(best_b[1])
        picks.append((best_a[0], best_b[0], seed))
    noise = None
    if len(sp.seeds) == 1:
        lab_a, lab_b, seed = picks[0]
        ca, cb = sp.correct(lab_a, seed, delta), sp.correct(lab_b, seed, delta)
        noise = None if ca is None or cb is None else paired_noise(ca, cb)
    record = compare(claim_id, PAPER, text, a, b, relation=">", noise=noise, names=names)
    if record["measured"]:
        record["measured"].update({"argmin " + names[0]: picks[0][0],
                                   "argmin " + names[1]: picks[0][1]})
    return record


def overdesign_cases(sp: Spectrum) -> tuple[list[dict], list[dict]]:
    """Per δ > 0: (the overdesign case ε* > δ, the not-far-above case) claim records."""
    over, far = [], []
    for d_label, delta in sp.deltas:
        if delta <= 0:
            continue
        below = [lab for lab, e in sp.eps if e <= delta]
        above = [lab for lab, e in sp.eps if e > delta]
        if below and above:   # else the ε list cannot tell (δ outside the trained range)
            over.append(_paired_compare(sp, f"overdesign δ={d_label}", OVERDESIGN, delta, below,
                                        above, ("best error at ε ≤ δ", "best error at ε > δ")))
        if len(above) >= 2:
            far.append(_paired_compare(sp, f"not far above δ={d_label}", NOT_FAR, delta,
                                       above[-1:], above[:-1],
                                       ("error at the largest ε", "best error at δ < ε < max")))
    return over, far


def overdesign_claims(sp: Spectrum) -> tuple[list[dict], list[dict]]:
    over, far = overdesign_cases(sp)
    claims = [combine("overdesign", PAPER, OVERDESIGN, over,
                      "for every δ with trained models on both sides of it: best robust "
                      "error at ε ≤ δ − best at ε > δ > 0"),
              combine("not-far-above", PAPER, NOT_FAR, far,
                      "for every δ with two or more models above it: error at the largest ε − "
                      "best error at δ < ε < largest > 0")]
    return claims, over


def robust_error_table(sp: Spectrum) -> dict:
    n = sp.n_examples()
    rows = [[lab + (" (collapsed)" if sp.collapsed(lab) else "")]
            + [_pct(sp.mean_error(lab, d)) for _, d in sp.deltas] for lab, _ in sp.eps]
    return {"name": "robust-error", "title": "Robust error (%) of each ε-model against PGD_δ",
            "caption": f"PGD_δ-{sp.opts.attack_steps}, α = {sp.opts.attack_alpha_over_delta:g}·δ,"
                       f" random start, on {n} fixed test images (mean over seeds "
                       f"{sp.opts.seeds}); δ = 0 is the clean error.",
            "columns": ["ε \\ δ"] + [lab for lab, _ in sp.deltas], "rows": rows}


def eps_star_table(sp: Spectrum, cases: list[dict]) -> dict:
    rows, by_id = [], {c["id"]: c for c in cases}
    for d_label, delta in sp.deltas:
        if delta <= 0:
            continue
        errors = [(lab, e, sp.mean_error(lab, delta)) for lab, e in sp.eps]
        known = [t for t in errors if t[2] is not None]
        star = min(known, key=lambda t: t[2]) if known else None
        case = by_id.get(f"overdesign δ={d_label}", {})
        m = case.get("measured") or {}
        rows.append([d_label, star[0] if star else None,
                     _round(star[1] - delta) if star else None, _pct(star[2]) if star else None,
                     _pct(m.get("best error at ε ≤ δ")), _pct(m.get("best error at ε > δ")),
                     _pct(m.get("noise")), case.get("verdict", "not tested: no model on "
                                                    "one side of δ")])
    return {"name": "eps-star", "title": "ε*(δ): the training budget of the lowest robust error",
            "caption": "ε* − δ > 0 is overdesign. The verdict compares the best error at ε ≤ δ "
                       "with the best at ε > δ against their noise (paired sampling error with "
                       "one seed, seed-to-seed spread with several).",
            "columns": ["δ", "ε*", "ε* − δ", "error at ε* (%)", "best at ε ≤ δ (%)",
                        "best at ε > δ (%)", "noise (%)", "ε* > δ"], "rows": rows}


def models_table(sp: Spectrum) -> dict:
    rows = []
    for lab, eps in sp.eps:
        for seed in sp.seeds:
            key = f"train/{_tag(lab, seed)}"
            final = sp.results.final(key) or {}
            last = final.get("last") or {}
            attack = final.get("attack") or {}
            rows.append([lab, seed, "natural" if eps == 0 else "pgd-at", sp.results.status(key),
                         _pct(_num(last.get("clean_acc"))), _pct(_num(last.get("robust_acc"))),
                         f"PGD-{attack.get('steps')} ε={_round(attack.get('eps'))}"
                         if attack else None, final.get("collapsed")])
    return {"name": "models", "title": "The ε-models (the run's own final evaluation)",
            "caption": "Clean and PGD accuracy of the last checkpoint at the run's own training "
                       "ε (natural runs: the preset's ε), on the run's final test images; "
                       "collapsed runs are kept and marked.",
            "columns": ["ε", "seed", "method", "status", "clean acc (%)", "PGD acc (%)",
                        "attack", "collapsed"], "rows": rows}


def analyse(opts, results) -> dict:
    """The study's tables, figures, claims and notes (see the module docstring)."""
    sp = Spectrum(opts, results)
    over_claims, cases = overdesign_claims(sp)
    tables = [models_table(sp), robust_error_table(sp), eps_star_table(sp, cases)]
    figures = [series_figure(
        "robust-error", "Robust error vs training ε, one line per attack δ (SPECTRUM Fig. 1)",
        "PGD_δ robust error on the fixed test subset; the minimum of each line is ε*(δ).",
        "training ε", "robust error (%)", [lab for lab, _ in sp.eps],
        [(f"δ = {dl}", [_pct(sp.mean_error(lab, d)) for lab, _ in sp.eps])
         for dl, d in sp.deltas])]
    filter_parts = filter_claims(sp)
    tables += filter_parts["tables"] + quantisation_tables(sp)
    figures += filter_parts["figures"]
    corrupt = corruption_claim(sp)
    tables += corrupt["tables"]
    figures += corrupt["figures"]
    claims = over_claims + filter_parts["claims"] + quantisation_claims(sp) + corrupt["claims"]
    return {"tables": tables, "figures": figures, "claims": claims, "notes": _notes(sp)}


def _notes(sp: Spectrum) -> list[str]:
    notes = [f"Every model is evaluated at checkpoint '{sp.opts.checkpoint}' on the same "
             f"{sp.n_examples()} test images (seeded subset), so differences between models are "
             f"paired; with one seed a difference counts only when it exceeds two standard "
             f"errors of the per-example differences."]
    collapsed = [f"ε = {lab}" for lab, _ in sp.eps if sp.collapsed(lab)]
    if collapsed:
        notes.append("Collapsed runs (kept in every table): " + ", ".join(collapsed) + ".")
    init = next((r.get("filter_norms_at_init") for r in sp.robust.values()
                 if r and r.get("filter_norms_at_init")), None)
    if init and init.get("first_two_over_rest") is not None:
        notes.append(f"At initialisation the first two conv layers' mean filter norm is already "
                     f"{init['first_two_over_rest']:.2f}× the rest's (the default "
                     f"initialisation scales kernels by fan-in): read the filter-norm claims "
                     f"against that reference.")
    failed = [k for k in sp.results.tasks if not sp.results.ok(k)]
    if failed:
        notes.append("Not finished (their numbers are missing, claims that need them are "
                     "inconclusive): " + ", ".join(failed) + ".")
    return notes


def _num(value) -> float | None:
    return None if value is None else float(value)


def _pct(value) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def _round(value) -> float | None:
    return None if value is None else round(float(value), 6)

