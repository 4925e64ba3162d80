"""EARLY's claims (Bakiskan, Cekic & Madhow, "Early Layers Are More Important For Adversarial
Robustness") as verdicts on the ``partial-at`` study's numbers.

Each claim compares final numbers at a reference cut (:func:`reference_cuts`: ``middle`` = the
deepest cut with at most half the layers before it, so the early side never has more layers
than the late one; ``quarter``; ``deep``). Noise: with two or more seeds, the seed-to-seed spread
(:func:`~robustlayers.studies.claims.compare`); with one seed, two standard errors of the
compared combination — binomial for accuracies, the measured per-image spread for losses (the
study's loss-noise evaluations; without them a loss claim is inconclusive).
"""

from __future__ import annotations

import math

from robustlayers.studies.claims import accuracy_noise, combine, compare, missing
from robustlayers.studies.partial_at_analysis import PAPER, SINGLE, Grid, reference_cuts


def sampling_noise(grid: Grid, terms, metric: str) -> float | None:
    """Two standard errors of Σ weight·value over ``terms`` [(code, cut, weight)] with one seed
    (independent errors); None with several seeds or when a term's error is unknown."""
    if len(grid.seeds) != 1:
        return None
    total = 0.0
    for code, cut, weight in terms:
        if metric.endswith("acc"):
            p, n = grid.mean(code, cut, metric), grid.n(code, cut)
            if p is None or not n:
                return None
            two_se = accuracy_noise(p, n)
        else:
            se = grid.loss_se(code, cut, metric)
            if se is None:
                return None
            two_se = 2.0 * se
        total += (weight * two_se) ** 2
    return math.sqrt(total)


def _where(grid: Grid, cut: int) -> str:
    return f"the cut before {grid.layers[cut]} ({cut} of {grid.total} layers before it)"


def pair(grid: Grid, cid: str, text: str, a: str, b: str, cut, metric: str,
         relation: str) -> dict:
    """compare(a, b) of one metric at one cut."""
    if cut is None or not (grid.has(a, cut) and grid.has(b, cut)):
        return missing(cid, PAPER, text, f"{a} and {b} are not both run at a usable cut")
    out = compare(cid, PAPER, text, grid.values(a, cut, metric), grid.values(b, cut, metric),
                  relation=relation, names=(a, b),
                  noise=sampling_noise(grid, [(a, cut, 1), (b, cut, 1)], metric))
    what = metric.replace("robust", "adversarial").replace("_", " ")
    out["threshold"] = f"{out['threshold']} ({what} at {_where(grid, cut)})"
    return out


def early_vs_late(grid: Grid, ref: dict, metric: str) -> dict:
    what = "accuracy" if metric.endswith("acc") else "loss"
    cid = f"early-adversarial-layers-{what}"
    text = (f"With the same stage-1 network and the same retraining, adversarial early layers "
            f"give more robustness than adversarial late layers: at the middle cut the "
            f"adversarial {what} of A1N2 is {'above' if what == 'accuracy' else 'below'} "
            f"N2A1's, and A2N1's {'above' if what == 'accuracy' else 'below'} N1A2's (EARLY "
            f"§4.3, Appendix A.3)")
    relation = ">" if what == "accuracy" else "<"
    parts = [pair(grid, f"{a}-vs-{b}", text, a, b, ref["middle"], metric, relation)
             for a, b in (("A1N2", "N2A1"), ("A2N1", "N1A2"))
             if ref["middle"] is not None and grid.has(a, ref["middle"])
             and grid.has(b, ref["middle"])]
    if not parts:
        return missing(cid, PAPER, text, "needs A1N2 and N2A1, or A2N1 and N1A2, at a cut with "
                       "at most half the layers before it")
    out = combine(cid, PAPER, text, parts, f"each pair: early-A {relation} late-A in "
                                           f"adversarial {what} at {_where(grid, ref['middle'])}")
    return out


def natural_early_layers(grid: Grid, ref: dict) -> dict:
    text = ("Adversarially retraining the later layers on top of frozen naturally trained "
            "early layers (N1A2) recovers less robustness than on top of adversarially trained "
            "ones (A1A2): at the deepest cut A1A2's adversarial accuracy is above N1A2's; past "
            "some cut N1A2 cannot learn at all (EARLY §4.2, §5)")
    out = pair(grid, "natural-early-layers-block-robustness", text, "A1A2", "N1A2",
               ref["deep"], "robust_acc", ">")
    if out["measured"] is not None:
        out["measured"]["N1A2 collapsed before"] = ", ".join(
            grid.layers[c] for c in grid.cuts("N1A2") if grid.collapsed("N1A2", c)) or "none"
    return out


def loss_gap(grid: Grid, ref: dict) -> dict:
    cid = "first-layers-close-most-of-the-loss-gap"
    text = ("The first layers play the major role: with the earlier half trained "
            "adversarially (A1N2 at the middle cut) the adversarial loss is closer to the "
            "all-adversarial network's (A1A2) than to the all-natural one's (N1N2), i.e. "
            "N1N2 - A1N2 > A1N2 - A1A2 (EARLY §4.2, Fig. 3)")
    cut = ref["middle"]
    if cut is None or not all(grid.has(c, cut) for c in ("N1N2", "A1N2", "A1A2")):
        return missing(cid, PAPER, text, "needs N1N2, A1N2 and A1A2 at the middle cut")
    nat, part, adv = (grid.values(c, cut, "robust_loss") for c in ("N1N2", "A1N2", "A1A2"))
    gained = [None if None in (x, y) else x - y for x, y in zip(nat, part)]
    left = [None if None in (x, y) else x - y for x, y in zip(part, adv)]
    noise = sampling_noise(grid, [("N1N2", cut, 1), ("A1A2", cut, 1), ("A1N2", cut, 2)],
                           "robust_loss")
    out = compare(cid, PAPER, text, gained, left, relation=">", noise=noise,
                  names=("(N1N2 - A1N2)", "(A1N2 - A1A2)"))
    out["threshold"] += f" (adversarial loss at {_where(grid, cut)})"
    return out


def loss_before_accuracy(grid: Grid, ref: dict) -> dict:
    text = ("Loss, not accuracy, shows the first layers' effect: with about a quarter of the "
            "layers trained adversarially (A1N2 at the cut nearest a quarter), the adversarial "
            "loss is already below the all-natural network's (N1N2), even where the adversarial "
            "accuracy is still near zero (EARLY §4, Figs. 2–3)")
    out = pair(grid, "loss-shows-early-layers", text, "A1N2", "N1N2", ref["quarter"],
               "robust_loss", "<")
    if out["measured"] is not None:
        for code in ("A1N2", "N1N2"):
            out["measured"][f"adversarial acc {code}"] = grid.mean(code, ref["quarter"],
                                                                   "robust_acc")
    return out


def single_layers(grid: Grid) -> dict:
    cid = "early-single-layers-matter-more"
    text = ("Retraining one early layer naturally in an adversarial network costs more "
            "robustness than one late layer: the adversarial-accuracy drop AsAr - NsAr, "
            "averaged over the layers of the first half, exceeds the average over the second "
            "half (EARLY §4.4, Fig. 5)")
    cuts = sorted(set(grid.cuts("AsAr")) & set(grid.cuts("NsAr")))
    early = [c for c in cuts if c < grid.total / 2]
    late = [c for c in cuts if c >= grid.total / 2]
    if not early or not late:
        return missing(cid, PAPER, text, "needs AsAr and NsAr for layers in both halves")

    def drops(layer_cuts):
        per_seed = []
        for i in range(len(grid.seeds)):
            values = [(grid.values("AsAr", c, "robust_acc")[i],
                       grid.values("NsAr", c, "robust_acc")[i]) for c in layer_cuts]
            per_seed.append(None if any(None in v for v in values)
                            else sum(a - b for a, b in values) / len(values))
        return per_seed

    def noise(layer_cuts):
        terms = [(code, c, 1) for c in layer_cuts for code in ("AsAr", "NsAr")]
        value = sampling_noise(grid, terms, "robust_acc")
        return None if value is None else value / len(layer_cuts)

    n_early, n_late = noise(early), noise(late)
    return compare(cid, PAPER, text, drops(early), drops(late), relation=">",
                   noise=None if None in (n_early, n_late) else math.hypot(n_early, n_late),
                   names=("early-layer drop", "late-layer drop"))


def all_claims(grid: Grid) -> list[dict]:
    ref = reference_cuts(grid.total, [c for code, c in grid.cells if code not in SINGLE])
    return [early_vs_late(grid, ref, "robust_acc"), early_vs_late(grid, ref, "robust_loss"),
            natural_early_layers(grid, ref), loss_gap(grid, ref), loss_before_accuracy(grid, ref),
            single_layers(grid)]
