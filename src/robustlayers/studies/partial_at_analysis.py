"""The analysis of the ``partial-at`` study: EARLY's tables, figures and claims (Bakiskan, Cekic &
Madhow, "Early Layers Are More Important For Adversarial Robustness").

Every number is the last checkpoint's final evaluation (``result.json["final"]["last"]``: clean
and PGD accuracy and cross-entropy loss on the run's test images), averaged over seeds. A run
whose training collapsed to chance (EARLY §4.2: N1A2 past some cut) is kept and marked, never
dropped; a failed run is a missing cell.
"""

from __future__ import annotations

from robustlayers.studies.base import finite
from robustlayers.train.methods.partial import KIND_METHOD, SINGLE_CODES

PAPER = "EARLY (Bakiskan et al.)"
LATER = ("N1N2", "N1A2", "A1A2", "A1N2")      # EARLY Tables 1–4 (later layers retrained)
EARLIER = ("N2N1", "N2A1", "A2A1", "A2N1")    # EARLY Tables 5–8 (earlier layers retrained)
SINGLE = ("NsNr", "NsAr", "AsAr", "AsNr")     # EARLY Tables 9–12 (one layer retrained)
DIFFERENCES = (("A1A2", "A1N2", "A1N2"), ("N1N2", "A1N2", "A1N2"),
               ("N2N1", "N2A1", "N2A1"), ("N2A1", "A2A1", "N2A1"))
"""EARLY Figs. 2–4: (a, b, the code whose adversarial layer count is the x-axis) of |a − b|."""


def stage1_key(seed: int, kind: str) -> str:
    """Task key of the stage-1 run of kind N or A."""
    return f"s{seed}/stage1/{KIND_METHOD[kind]}"


def stage2_key(seed: int, code: str, layer: str) -> str:
    """Task key of a stage-2 run: code and the layer the cut comes before (or retrained)."""
    return f"s{seed}/{code}/{layer}"


def noise_key(key: str) -> str:
    """Task key of the loss-noise evaluation of run ``key``."""
    return f"loss-se/{key}"


def adversarial_layers(code: str, cut: int, total: int) -> int:
    """How many of the ``total`` layers of the map were last trained adversarially under
    ``code`` — the A side, frozen from stage 1 or retrained in stage 2; ``cut`` is the index of
    the layer the cut comes before (so ``cut`` layers lie before it), or of the single retrained
    layer. A1N2: cut; N1A2, N2A1: total − cut; XsYr: [X = A] + (total − 1)·[Y = A]."""
    if code in SINGLE_CODES:
        return int(code[0] == "A") + (total - 1) * int(code[2] == "A")
    return cut * int(code[0] == "A") + (total - cut) * int(code[2] == "A")


class Grid:
    """Per-seed final numbers of the study's runs by (code, cut index); stage-1 runs are the
    codes ``N`` and ``A`` at cut None."""

    def __init__(self, opts, results, layers, cells):
        self.results, self.layers, self.seeds = results, tuple(layers), opts.seed_list()
        self.total = len(self.layers)
        self.cells = list(cells)
        self.codes = [c for c in opts.code_list() if any(code == c for code, _ in cells)]
        self._finals: dict = {}

    def key(self, seed: int, code: str, cut: int | None) -> str:
        if cut is None:
            return stage1_key(seed, code)
        return stage2_key(seed, code, self.layers[cut])

    def final(self, seed, code, cut) -> dict | None:
        """``result.json["final"]`` of a run (read once), None when it did not finish."""
        key = self.key(seed, code, cut)
        if key not in self._finals:
            self._finals[key] = self.results.final(key)
        return self._finals[key]

    def values(self, code: str, cut: int | None, metric: str) -> list:
        """One value per seed (None where the run is missing or not finite)."""
        out = []
        for seed in self.seeds:
            final = self.final(seed, code, cut)
            out.append(finite((final.get("last") or {}).get(metric)) if final else None)
        return out

    def mean(self, code, cut, metric) -> float | None:
        values = [v for v in self.values(code, cut, metric) if v is not None]
        return sum(values) / len(values) if values else None

    def collapsed(self, code, cut) -> int:
        """How many seeds' runs of (code, cut) collapsed to chance."""
        return sum(bool((self.final(s, code, cut) or {}).get("collapsed")) for s in self.seeds)

    def n(self, code, cut) -> int | None:
        sizes = [(self.final(s, code, cut) or {}).get("n") for s in self.seeds]
        sizes = [s for s in sizes if s]
        return min(sizes) if sizes else None

    def loss_se(self, code, cut, metric: str) -> float | None:
        """Standard error of a loss over images (one seed; the loss-noise evaluation)."""
        if len(self.seeds) != 1:
            return None
        found = self.results.evaluation(noise_key(self.key(self.seeds[0], code, cut)))
        return finite((found or {}).get(f"{metric}_se"))

    def cuts(self, code: str) -> list[int]:
        return [c for k, c in self.cells if k == code]

    def has(self, code: str, cut: int | None) -> bool:
        return (code, cut) in self.cells


# --- tables ---------------------------------------------------------------------------------

def _collapsed_text(grid: Grid, codes, cut) -> str:
    marks = []
    for code in codes:
        k = grid.collapsed(code, cut)
        if k:
            marks.append(code if len(grid.seeds) == 1 else f"{code} ({k}/{len(grid.seeds)} seeds)")
    return ", ".join(marks)


def family_tables(grid: Grid, family: tuple[str, ...], title: str, number: str) -> list[dict]:
    codes = [c for c in family if c in grid.codes]
    if not codes:
        return []
    cuts = sorted({c for code in codes for c in grid.cuts(code)})
    single = family == SINGLE
    first = ["retrained layer", "layer index"] if single else ["cut before", "layers before it"]
    tables = []
    for quantity, suffix in (("losses", "loss"), ("accuracies", "acc")):
        columns = first + [f"clean {c}" for c in codes] + [f"adversarial {c}" for c in codes] \
            + ["collapsed"]
        rows = [[grid.layers[cut], cut]
                + [grid.mean(c, cut, f"clean_{suffix}") if grid.has(c, cut) else None
                   for c in codes]
                + [grid.mean(c, cut, f"robust_{suffix}") if grid.has(c, cut) else None
                   for c in codes]
                + [_collapsed_text(grid, codes, cut)] for cut in cuts]
        tables.append({
            "name": f"{title.split()[0].lower()}-{quantity}", "columns": columns, "rows": rows,
            "title": f"{title} {quantity} (EARLY Tables {number})",
            "caption": f"Last checkpoint on the test images; adversarial = the runs' final PGD "
                       f"attack; accuracies as fractions; mean over seeds {grid.seeds}. "
                       f"'collapsed': stage 2 ended at chance (kept, not dropped)."})
    return tables


def stage1_table(grid: Grid) -> dict:
    rows = [[label, grid.mean(kind, None, "clean_loss"), grid.mean(kind, None, "clean_acc"),
             grid.mean(kind, None, "robust_loss"), grid.mean(kind, None, "robust_acc"),
             "yes" if grid.collapsed(kind, None) else ""]
            for kind, label in (("N", "natural (N)"), ("A", "adversarial (A)"))]
    return {"name": "stage1", "title": "Stage 1: the whole network trained once",
            "caption": "The two stage-1 runs every stage-2 run starts from (EARLY Table 7's "
                       "first and last rows).",
            "columns": ["stage 1", "clean loss", "clean acc", "adversarial loss",
                        "adversarial acc", "collapsed"], "rows": rows}


# --- figures --------------------------------------------------------------------------------

def difference_figure(grid: Grid, metric: str) -> dict | None:
    series, marked = [], {"label": "involves a collapsed run", "x": [], "y": [], "marker": "x",
                          "linestyle": "none"}
    for a, b, axis in DIFFERENCES:
        points = []
        for cut in sorted(set(grid.cuts(a)) & set(grid.cuts(b))):
            va, vb = grid.mean(a, cut, metric), grid.mean(b, cut, metric)
            if va is None or vb is None:
                continue
            x = adversarial_layers(axis, cut, grid.total)
            points.append((x, abs(va - vb)))
            if grid.collapsed(a, cut) or grid.collapsed(b, cut):
                marked["x"].append(x)
                marked["y"].append(abs(va - vb))
        if points:
            points.sort()
            series.append({"label": f"|{a} - {b}|", "x": [p[0] for p in points],
                           "y": [p[1] for p in points]})
    if not series:
        return None
    if marked["x"]:
        series.append(marked)
    what = "loss" if metric.endswith("loss") else "accuracy"
    return {"name": f"differences-{what}", "x_label": "adversarially trained layers",
            "y_label": f"|difference| of adversarial {what}", "series": series,
            "title": f"One-letter differences in adversarial {what} (EARLY Figs. 2–4)",
            "caption": f"x: layers of the map (of {grid.total}) last trained adversarially in "
                       f"the partially adversarial network of each difference (A1N2 or N2A1), "
                       f"as in EARLY; mean over seeds {grid.seeds}."}


def single_figure(grid: Grid) -> dict | None:
    cuts = sorted(set(grid.cuts("AsAr")) & set(grid.cuts("NsAr")))
    points = [(c, grid.mean("AsAr", c, "robust_acc"), grid.mean("NsAr", c, "robust_acc"))
              for c in cuts]
    points = [(c, a - b) for c, a, b in points if a is not None and b is not None]
    if not points:
        return None
    return {"name": "single-layer", "x_label": "retrained layer",
            "y_label": "adversarial accuracy AsAr - NsAr", "x_ticks": list(grid.layers),
            "title": "One layer retrained naturally in an adversarial network (EARLY Fig. 5)",
            "caption": "Robustness lost when the one layer is retrained naturally (NsAr) "
                       "instead of adversarially (AsAr).",
            "series": [{"label": "AsAr - NsAr", "x": [p[0] for p in points],
                        "y": [p[1] for p in points]}]}


# --- reference cuts -------------------------------------------------------------------------

def reference_cuts(total: int, cuts) -> dict:
    """The cuts the claims read: ``middle`` (the deepest with at most half the layers before
    it), ``quarter`` (the nearest to a quarter), ``deep`` (the deepest); cuts with no layer
    before them are left out."""
    usable = sorted(c for c in set(cuts) if c >= 1)
    half = [c for c in usable if c <= total / 2]
    return {"middle": max(half) if half else None,
            "quarter": min(usable, key=lambda c: (abs(c - total / 4), c)) if usable else None,
            "deep": max(usable) if usable else None}


def loss_claim_runs(seed: int, layers, cells) -> list[str]:
    """Keys of the runs the loss claims compare (their loss noise is measured with one seed)."""
    split = [c for code, c in cells if code in LATER + EARLIER]
    ref = reference_cuts(len(layers), split)
    wanted = {(code, ref["middle"]) for code in ("A1N2", "N2A1", "A2N1", "N1A2", "N1N2",
                                                  "A1A2")}
    wanted |= {(code, ref["quarter"]) for code in ("N1N2", "A1N2")}
    return [stage2_key(seed, code, layers[c]) for code, c in cells if (code, c) in wanted]


def attack_note(grid: Grid) -> str:
    """What produced the numbers: the final evaluation of the runs (attack, test images)."""
    for seed in grid.seeds:
        for code, cut in [("A", None), ("N", None)] + grid.cells:
            final = grid.final(seed, code, cut)
            if final and final.get("attack"):
                a = final["attack"]
                return (f"Numbers: last checkpoint of each run on {final.get('n')} test images; "
                        f"adversarial = PGD-{a.get('steps')} ({a.get('norm', 'linf')}, eps "
                        f"{a.get('eps'):.4g}, step {a.get('alpha'):.4g}, random start, fixed "
                        f"seeds); training settings in each run's config.json.")
    return "Numbers: last checkpoint of each run (no finished run to describe the attack)."


# --- the analysis ---------------------------------------------------------------------------

def analyse(opts, results, layers, cells) -> dict:
    """EARLY's tables, figures and claims from the finished runs."""
    from robustlayers.studies.partial_at_claims import all_claims

    grid = Grid(opts, results, layers, cells)
    tables = [stage1_table(grid)]
    tables += family_tables(grid, LATER, "Later layers retrained", "1–4")
    tables += family_tables(grid, EARLIER, "Earlier layers retrained", "5–8")
    tables += family_tables(grid, SINGLE, "Single layer retrained", "9–12")
    figures = [f for f in (difference_figure(grid, "robust_loss"),
                           difference_figure(grid, "robust_acc"), single_figure(grid)) if f]
    failed = [key for key in results.tasks if not results.ok(key)]
    collapsed = [f"{code} at {layers[cut]}" for code, cut in cells if grid.collapsed(code, cut)]
    ref = reference_cuts(len(layers), [c for code, c in cells if code not in SINGLE])
    notes = [f"Layer map of {len(layers)} layers (EARLY's layers: every conv, BN and linear "
             f"module in execution order); a cut before layer c leaves c layers before it.",
             "Adversarially trained layers: those whose weights were last trained "
             "adversarially (the A side of the code), counted in the layer map.",
             "Claims read the cuts " + ", ".join(
                 f"{k}: {layers[v]}" for k, v in ref.items() if v is not None) + "."]
    notes.append(attack_note(grid))
    if collapsed:
        notes.append("Collapsed to chance (kept and marked): " + ", ".join(collapsed) + ".")
    if failed:
        notes.append("Not finished (missing cells, inconclusive claims): "
                     + ", ".join(failed) + ".")
    return {"tables": tables, "figures": figures, "claims": all_claims(grid), "notes": notes}
