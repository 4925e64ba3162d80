"""Filter-norm, quantisation and corruption parts of the ``eps-spectrum`` analysis (SPECTRUM:
Sridhar et al., "Towards Alternative Techniques for Improving Adversarial Robustness: Analysis
of Adversarial Training at a Spectrum of Perturbations", §4–§6).

Sampling noise with one seed: filter norms — two standard errors of the mean over a layer's
kernels (SPECTRUM's E_w ‖w‖∞ is a mean over kernels); quantisation and corruptions — two
binomial standard errors of each accuracy, combined as if independent (conservative: the
quantised and unquantised models see the same images).
"""

from __future__ import annotations

import math

from robustlayers.studies.claims import FAILS, HOLDS, INCONCLUSIVE, claim, combine, compare, \
    difference_noise, missing
from robustlayers.studies.eps_spectrum import PAPER

FIRST_TWO_FACTOR = 2.0
""""Far above the rest" (SPECTRUM §5), read as: the first two conv layers' mean kernel norm at
least twice the mean of the other conv layers'."""

FIRST_TWO = ("The first two conv layers' mean filter norm E‖w‖∞ is far above the rest (at "
             f"least {FIRST_TWO_FACTOR:g}×) in every robust model (SPECTRUM §5, Fig. 2)")
GROW = ("The first two conv layers' mean filter norm grows with the training ε (SPECTRUM §5)")
QUANT = ("Quantising the features after the first layers raises {attack} accuracy over the "
         "unquantised model, for some robust model (SPECTRUM §4, Table 1)")
CORRUPT = ("Low-ε models handle common corruptions better: the smallest robust ε beats the "
           "largest on mean CIFAR-10-C accuracy (SPECTRUM §6, Table 2)")


def series_figure(name, title, caption, x_label, y_label, ticks, series) -> dict:
    """A line figure over categorical ε ticks: ``series`` is [(label, y values)]."""
    return {"name": name, "title": title, "caption": caption, "x_label": x_label,
            "y_label": y_label, "x_ticks": list(ticks),
            "series": [{"label": lab, "x": list(range(len(ticks))), "y": list(ys)}
                       for lab, ys in series]}


def any_holds(claim_id: str, text: str, parts: list[dict], threshold: str) -> dict:
    """A "for some case" claim: holds when any case holds, does not hold when every case does
    not, else inconclusive."""
    if not parts:
        return missing(claim_id, PAPER, text, "no cases measured")
    verdicts = [p["verdict"] for p in parts]
    verdict = HOLDS if HOLDS in verdicts else FAILS if all(v == FAILS for v in verdicts) \
        else INCONCLUSIVE
    return claim(claim_id, PAPER, text, verdict,
                 {p["id"]: {"verdict": p["verdict"], **(p["measured"] or {})} for p in parts},
                 threshold, "some case must hold (two standard errors each); every case not "
                 "holding decides against")


# ------------------------------------------------------------------------------ filter norms

def _norms(sp, label, seed) -> dict | None:
    record = sp.robust.get((label, seed))
    return None if record is None else record.get("filter_norms")


def _first_two_vs_rest(fn: dict) -> tuple[float, float, float]:
    """(mean of the first two layers' means, factor × mean of the rest, 2 SE of the difference)."""
    mean, se = fn["mean"], fn["se"]
    rest = len(mean) - 2
    first = (mean[0] + mean[1]) / 2
    others = FIRST_TWO_FACTOR * sum(mean[2:]) / rest
    se_first = math.hypot(se[0], se[1]) / 2
    se_rest = FIRST_TWO_FACTOR * math.sqrt(sum(s * s for s in se[2:])) / rest
    return first, others, 2 * math.hypot(se_first, se_rest)


def _first_two_claim(sp) -> dict:
    parts = []
    for label, eps in sp.eps:
        if eps <= 0:
            continue
        records = [_norms(sp, label, s) for s in sp.seeds]
        cid = f"first two ε={label}"
        if any(r is None for r in records):
            parts.append(missing(cid, PAPER, FIRST_TWO, "filter norms missing"))
            continue
        if len(records[0]["mean"]) < 3:
            parts.append(missing(cid, PAPER, FIRST_TWO, "fewer than three conv layers"))
            continue
        values = [_first_two_vs_rest(r) for r in records]
        part = compare(cid, PAPER, FIRST_TWO, [v[0] for v in values], [v[1] for v in values],
                       noise=values[0][2], names=("first two", f"{FIRST_TWO_FACTOR:g} × rest"))
        ratio = records[0].get("first_two_over_rest")
        init = (sp.robust[(label, sp.seeds[0])].get("filter_norms_at_init") or {})
        part["measured"].update({"ratio": ratio, "ratio at init": init.get("first_two_over_rest")})
        parts.append(part)
    return combine("filters-first-two", PAPER, FIRST_TWO, parts,
                   f"every robust ε: mean(first two) − {FIRST_TWO_FACTOR:g} × mean(rest) > 0")


def _grow_claim(sp) -> dict:
    low, high = sp.eps[0][0], sp.eps[-1][0]
    if len(sp.eps) < 2:
        return missing("filters-grow", PAPER, GROW, "needs two or more ε values")
    lows = [_norms(sp, low, s) for s in sp.seeds]
    highs = [_norms(sp, high, s) for s in sp.seeds]
    if any(r is None for r in lows + highs):
        return missing("filters-grow", PAPER, GROW, "filter norms at the smallest or largest ε "
                       "missing")
    parts = []
    for i in range(min(2, len(lows[0]["layers"]))):
        layer = lows[0]["layers"][i]
        noise = 2 * math.hypot(lows[0]["se"][i], highs[0]["se"][i])
        parts.append(compare(f"{layer}", PAPER, GROW, [r["mean"][i] for r in highs],
                             [r["mean"][i] for r in lows], noise=noise,
                             names=(f"ε={high}", f"ε={low}")))
    return combine("filters-grow", PAPER, GROW, parts,
                   f"each of the first two layers: E‖w‖∞ at ε = {high} − at ε = {low} > 0")


def _mean_over_seeds(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def filter_claims(sp) -> dict:
    """The filter-norm table (layers × ε), figure (SPECTRUM Fig. 2) and claims."""
    ref = next((_norms(sp, lab, s) for lab, _ in sp.eps for s in sp.seeds
                if _norms(sp, lab, s)), None)
    layers = ref["layers"] if ref else []

    def mean_norm(label, i):
        return _mean_over_seeds([(_norms(sp, label, s) or {}).get("mean", [None] * len(layers))[i]
                                 for s in sp.seeds])

    rows = [[lab] + [mean_norm(lab, i) for i in range(len(layers))] for lab, _ in sp.eps]
    table = {"name": "filter-norms", "title": "Mean filter norm E‖w‖∞ per conv layer across ε",
             "caption": f"Layers {sp.opts.filter_layers!r} in execution order; mean over each "
                        f"layer's k×k kernels of max|w| (SPECTRUM §5).",
             "columns": ["ε"] + layers, "rows": rows}
    figure = series_figure("filter-norms", "Mean filter norm per layer vs training ε "
                           "(SPECTRUM Fig. 2)", "One line per conv layer.", "training ε",
                           "E‖w‖∞", [lab for lab, _ in sp.eps],
                           [(name, [mean_norm(lab, i) for lab, _ in sp.eps])
                            for i, name in enumerate(layers)])
    return {"tables": [table], "figures": [figure] if layers else [],
            "claims": [_first_two_claim(sp), _grow_claim(sp)]}


# ------------------------------------------------------------------------------ quantisation

def _grid(sp, label, seed) -> dict | None:
    record = sp.quant.get((label, seed))
    return None if record is None else record["grid"]


def _default_cells(grid: dict) -> list[dict]:
    return [c for c in grid["cells"] if c["beta"] == grid["default_beta"]]


def _quant_case(sp, label, placement, attack) -> dict:
    """Mean over δ of (quantised ``attack`` accuracy − unquantised PGD accuracy), per seed."""
    cid = f"{attack} ε={label} after {placement}"
    text = QUANT.format(attack=attack)
    grids = [_grid(sp, label, s) for s in sp.seeds]
    if any(g is None for g in grids):
        return missing(cid, PAPER, text, "quantisation grid missing")
    quantised, plain = [], []
    for grid in grids:
        cell = next(c for c in _default_cells(grid) if c["placement"] == placement)
        quantised.append(_mean(cell[attack].values()))
        plain.append(_mean(grid["baseline"]["pgd"].values()))
    noise = difference_noise(quantised[0], plain[0], grids[0]["n_examples"])
    return compare(cid, PAPER, text, quantised, plain, noise=noise,
                   names=(f"{attack} quantised", "PGD unquantised"))


def quantisation_claims(sp) -> list[dict]:
    if sp.opts.quant_images == 0:
        return [missing(f"quantisation-{a}", PAPER, QUANT.format(attack=a),
                        "quantisation grid off (quant_images = 0)") for a in ("transfer", "bpda")]
    placements = [p.strip() for p in sp.opts.quant_placements.split(",") if p.strip()]
    out = []
    for attack in ("transfer", "bpda"):
        parts = [_quant_case(sp, lab, p, attack) for lab, eps in sp.eps if eps > 0
                 for p in placements]
        out.append(any_holds(f"quantisation-{attack}", QUANT.format(attack=attack), parts,
                             "some (robust ε, placement): mean over δ of quantised accuracy − "
                             "unquantised PGD accuracy > 0, at the default β"))
    return out


def quantisation_tables(sp) -> list[dict]:
    """SPECTRUM Table 1 / App. C: accuracy (%) per δ × placement × β (rows) and ε (columns),
    with the unquantised model's PGD_δ accuracy as the "none" row; one table per attack."""
    grids = {(lab, s): _grid(sp, lab, s) for lab, _ in sp.eps for s in sp.seeds}
    ref = next((g for g in grids.values() if g), None)
    if ref is None:
        return []
    labels = [lab for lab, _ in sp.eps]
    tables = []
    for attack, title in (("transfer", "Transfer-PGD_δ"), ("bpda", "BPDA_δ")):
        rows = []
        for d in ref["eps_grid"]:
            label = _delta_label(sp, d)
            rows.append([label, "none", None] + [_seed_mean(grids, lab, sp.seeds, lambda g: (
                g["baseline"]["pgd"].get(d["key"]))) for lab in labels])
            for cell in ref["cells"]:
                rows.append([label, cell["placement"], cell["beta"]] + [_seed_mean(
                    grids, lab, sp.seeds, lambda g, c=cell: _cell_value(g, c, attack, d["key"]))
                    for lab in labels])
        tables.append({"name": f"quantisation-{attack}",
                       "title": f"{title} accuracy (%) with quantisation q(x) = ⌊βx⌋/β",
                       "caption": f"On {ref['n_examples']} test images; α = "
                                  f"{sp.opts.attack_alpha_over_delta:g}·δ for every attack; "
                                  f"'none' = the unquantised model against PGD_δ.",
                       "columns": ["δ", "quantised after", "β"] + labels, "rows": rows})
    return tables


def _delta_label(sp, point: dict) -> str:
    """The δ as the options wrote it (the grid keys δ in /255 units)."""
    for label, value in sp.deltas + _quant_labels(sp):
        if math.isclose(value, point.get("value", -1.0), rel_tol=1e-9):
            return label
    return point["key"]


def _quant_labels(sp) -> list:
    if sp.opts.quant_deltas is None:
        return []
    from robustlayers.studies.eps_spectrum import _budgets

    return _budgets("quant_deltas", sp.opts.quant_deltas)


def _cell_value(grid, cell, attack, key):
    for c in grid["cells"]:
        if c["placement"] == cell["placement"] and c["beta"] == cell["beta"]:
            return c[attack].get(key)
    return None


def _seed_mean(grids, label, seeds, get):
    values = [get(grids[(label, s)]) for s in seeds if grids.get((label, s))]
    mean = _mean_over_seeds(values)
    return None if mean is None else round(100.0 * mean, 2)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ------------------------------------------------------------------------------ corruptions

def _corruption_mean(sp, label, seed):
    record = sp.corrupt.get((label, seed))
    return None if record is None else record["corruptions"]["mean"]


def corruption_claim(sp) -> dict:
    """Mean CIFAR-10-C accuracy across ε (SPECTRUM Table 2) and the low-ε claim."""
    if sp.opts.corruption_dir is None:
        return {"tables": [], "figures": [], "claims": [missing(
            "corruptions-low-eps", PAPER, CORRUPT, "no CIFAR-10-C folder given "
            "(corruption_dir)")]}
    labels = [lab for lab, _ in sp.eps]
    means = [_mean_over_seeds([_corruption_mean(sp, lab, s) for s in sp.seeds]) for lab in labels]
    pct = [None if m is None else round(100 * m, 2) for m in means]
    table = {"name": "corruptions", "title": "Mean CIFAR-10-C accuracy (%) across ε",
             "caption": f"Severities {sp.opts.corruption_severities}; SPECTRUM Table 2.",
             "columns": ["ε", "mean accuracy (%)"], "rows": [list(r) for r in zip(labels, pct)]}
    figure = series_figure("corruptions", "CIFAR-10-C accuracy vs training ε (SPECTRUM Table 2)",
                           "Mean over corruptions and severities.", "training ε",
                           "accuracy (%)", labels, [("mean accuracy", pct)])
    robust = [lab for lab, eps in sp.eps if eps > 0]
    if len(robust) < 2:
        result = missing("corruptions-low-eps", PAPER, CORRUPT, "needs two robust ε values")
    else:
        low = [_corruption_mean(sp, robust[0], s) for s in sp.seeds]
        high = [_corruption_mean(sp, robust[-1], s) for s in sp.seeds]
        record = sp.corrupt.get((robust[0], sp.seeds[0]))
        n = record["source"]["n_examples"] if record else 0
        noise = difference_noise(low[0], high[0], n) if None not in (low[0], high[0]) else None
        result = compare("corruptions-low-eps", PAPER, CORRUPT, low, high, noise=noise,
                         names=(f"ε={robust[0]}", f"ε={robust[-1]}"))
    return {"tables": [table], "figures": [figure], "claims": [result]}
