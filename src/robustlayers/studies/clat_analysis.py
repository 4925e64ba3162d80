"""The ``clat`` study's tables and figures: clean and robust accuracy (best and last checkpoint)
of base PGD-AT, PGD-AT continued, CLAT and its ablations (Gopal et al., CLAT Tables 1, 6, 7, 14,
20; Figs. 2–3), the trainable-parameter share and the criticality stability (§4.4). The claims
are decided in :mod:`robustlayers.studies.clat_claims`.
"""

from __future__ import annotations

from robustlayers.studies.base import finite
from robustlayers.studies.clat import base_epochs, key, main_k, variants

COLUMNS = ["variant", "what", "epochs (base + own)", "seeds", "layers trained",
           "trainable share", "best epoch", "clean best", "robust best", "clean last",
           "robust last", "collapsed", "status"]


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def final_value(results, task_key: str, which: str, metric: str) -> float | None:
    """``final[which][metric]`` of a run (``which``: best or last), None when missing."""
    final = results.final(task_key) or {}
    return finite((final.get(which) or {}).get(metric))


def per_seed(opts, results, name: str, metric: str = "robust_acc",
             which: str = "last") -> list[float | None]:
    return [final_value(results, key(name, s), which, metric) for s in opts.seed_list()]


def test_images(opts, results) -> int:
    """Test images of the final numbers (the first run that has them)."""
    for task_key in results.tasks:
        final = results.final(task_key) if results.tasks[task_key].kind == "train" else None
        if final and final.get("n"):
            return int(final["n"])
    return 0


def share_of(results, task_key: str) -> dict | None:
    """Trainable parameters of a run (CLAT Table 6): the largest share over its reselections
    and the layers of each (``None`` when the run is missing)."""
    run = results.run(task_key)
    if run is None:
        return None
    result = run.result or {}
    history = (result.get("method") or {}).get("history") or []
    if history:
        worst = max(history, key=lambda h: h["trainable_share"])
        return {"share": worst["trainable_share"], "trainable": worst["trainable_params"],
                "total": worst["total_params"],
                "layers": " / ".join(",".join(h["layers"]) for h in history)}
    params = result.get("params") or {}
    total, trainable = params.get("total"), params.get("trainable")
    return {"share": trainable / total if total else None, "trainable": trainable,
            "total": total, "layers": "all"}


def rows_of(opts) -> list[tuple[str, str, str]]:
    """(name, what, epochs text) of every run of a seed: bases first, then the variants."""
    e1 = base_epochs(opts)
    rows = [("base", "PGD-AT base", f"{e1} + 0")]
    all_variants = variants(opts)
    rows += [(v.base, "PGD-AT base", f"{v.base_epochs} + 0") for v in all_variants
             if v.base != "base"]
    rows += [(v.name, v.label, f"{v.base_epochs} + {v.epochs}") for v in all_variants]
    return rows


def variant_row(opts, results, name: str, label: str, epochs: str) -> list:
    """One row of the variants table: seeds finished, layers, trainable share, best epoch(s),
    clean and robust accuracy (best, last; mean over seeds), collapse and status."""
    keys = [key(name, s) for s in opts.seed_list()]
    shares = [s for s in (share_of(results, k) for k in keys) if s]
    finals = [results.final(k) or {} for k in keys]
    best_epochs = sorted({(f.get("best") or {}).get("epoch") for f in finals} - {None})
    accuracy = [mean(per_seed(opts, results, name, metric, which))
                for which in ("best", "last") for metric in ("clean_acc", "robust_acc")]
    return [name, label, epochs, sum(results.ok(k) for k in keys),
            shares[0]["layers"] if shares else None,
            max((s["share"] for s in shares if s["share"] is not None), default=None),
            ",".join(str(e) for e in best_epochs) or None, *accuracy,
            any(bool(f.get("collapsed")) for f in finals),
            ", ".join(sorted({results.status(k) for k in keys}))]


def variants_table(opts, results) -> dict:
    rows = [variant_row(opts, results, *row) for row in rows_of(opts)]
    return {"name": "variants", "title": "Clean and robust accuracy per variant",
            "caption": _caption(opts, results), "columns": COLUMNS, "rows": rows}


def _caption(opts, results) -> str:
    attack = None
    for task_key in results.tasks:
        final = results.final(task_key) if results.tasks[task_key].kind == "train" else None
        if final and final.get("attack"):
            attack = final["attack"]
            break
    what = (f"PGD-{attack['steps']} (eps {attack['eps']:g}, alpha {attack['alpha']:g}, "
            f"{attack['norm']})" if attack else "the runs' final PGD")
    return (f"Final numbers of every run on {test_images(opts, results)} test images, robust = "
            f"{what}; mean over seeds {opts.seeds}. Every variant continues the base named by "
            f"its epochs from its last checkpoint with a fresh optimiser and schedule; "
            f"trainable share is the largest over CLAT's reselections (CLAT Table 6); "
            f"layers lists each reselection of the first seed.")


def stability_table(opts, results) -> dict | None:
    rows = []
    for seed in opts.seed_list():
        record = results.evaluation(key("stability", seed))
        if record is None:
            rows.append([seed, None, None, None, None, None, results.status(
                key("stability", seed))])
            continue
        freq = ", ".join(f"{n} {v:.2f}" for n, v in record["frequency"].items() if v)
        rows.append([seed, record["k"], record["repeats"], ",".join(record["modal_top_k"]),
                     record["change_rate"], freq, "done"])
    if not opts.stability_repeats:
        return None
    return {"name": "stability", "title": "Criticality stability of the base model",
            "caption": (f"Top-k critical set over {opts.stability_repeats} random batches of "
                        f"{opts.stability_batch} training images (CLAT §4.4: < 5% of batches "
                        f"change it); δ from the base run's training PGD; change rate = share "
                        f"of batches whose set differs from the most frequent one."),
            "columns": ["seed", "k", "batches", "most frequent top-k", "change rate",
                        "share of batches per layer", "status"], "rows": rows}


def _curve(opts, results, name: str, offset: int, metric: str) -> tuple[list, list]:
    """Per-epoch ``metric`` of run ``name`` averaged over seeds, at total epoch offset + e."""
    by_epoch: dict[int, list[float]] = {}
    for seed in opts.seed_list():
        for row in results.metrics(key(name, seed)):
            value = finite(row.get(metric))
            if value is not None:
                by_epoch.setdefault(int(row["epoch"]) + offset, []).append(value)
    xs = sorted(by_epoch)
    return xs, [mean(by_epoch[x]) for x in xs]


def curves_figure(opts, results, metric: str = "test_robust_acc") -> dict:
    e1 = base_epochs(opts)
    series = []
    for name, offset in [("base", 0)] + [(v.name, v.base_epochs) for v in variants(opts)
                                         if v.base == "base"]:
        xs, ys = _curve(opts, results, name, offset, metric)
        if xs:
            series.append({"label": name, "x": xs, "y": ys})
    word = "robust" if "robust" in metric else "clean"
    return {"name": f"curves-{word}", "title": f"Test {word} accuracy per epoch",
            "caption": (f"Per-epoch {word} accuracy (the runs' per-epoch evaluation, mean over "
                        f"seeds): base PGD-AT for {e1} epochs, then each variant from its last "
                        f"checkpoint (CLAT Fig. 2)."),
            "x_label": "total epochs", "y_label": f"{word} accuracy", "series": series}


def k_figure(opts, results) -> dict | None:
    k0 = main_k(opts)
    ks = sorted({k0, *opts.k_list()})
    if len(ks) < 2:
        return None
    names = {k: "clat" if k == k0 else f"k={k}" for k in ks}
    series = []
    for metric, word in (("robust_acc", "robust"), ("clean_acc", "clean")):
        series.append({"label": f"CLAT {word}", "x": ks, "y": [
            mean(per_seed(opts, results, names[k], metric)) for k in ks]})
        base = mean(per_seed(opts, results, "baseline", metric))
        series.append({"label": f"PGD-AT continued {word}", "x": ks, "y": [base] * len(ks),
                       "linestyle": "--", "marker": ""})
    return {"name": "k-sweep", "title": "CLAT accuracy vs the number of layers k",
            "caption": "Last checkpoint, mean over seeds (CLAT Fig. 3 and Fig. 7).",
            "x_label": "k (layers trained)", "y_label": "accuracy", "series": series}


def pretrain_figure(opts, results) -> dict | None:
    e1 = base_epochs(opts)
    splits = {e1: "clat", **{v.base_epochs: v.name for v in variants(opts)
                             if v.name.startswith("clat-after-")}}
    if len(splits) < 2:
        return None
    xs = sorted(splits)
    series = []
    for metric, word in (("robust_acc", "robust"), ("clean_acc", "clean")):
        series.append({"label": f"CLAT {word}", "x": xs, "y": [
            mean(per_seed(opts, results, splits[x], metric)) for x in xs]})
        base = mean(per_seed(opts, results, "baseline", metric))
        series.append({"label": f"PGD-AT continued {word}", "x": xs, "y": [base] * len(xs),
                       "linestyle": "--", "marker": ""})
    total = e1 + opts.finetune_epochs
    return {"name": "pretrain-epochs", "title": "CLAT after bases of different lengths",
            "caption": (f"{total} epochs in all: PGD-AT for E epochs, then CLAT for {total} - E; "
                        f"the dashed line is PGD-AT continued after the {e1}-epoch base (CLAT "
                        f"Fig. 2). Last checkpoint, mean over seeds."),
            "x_label": "base PGD-AT epochs E", "y_label": "accuracy", "series": series}


def selection_notes(opts, results) -> list[str]:
    """What CLAT chose: when it kept the same layers at every reselection, dynamic and fixed
    CLAT trained the same layers (their comparison then measures nothing)."""
    notes = []
    for seed in opts.seed_list():
        run = results.run(key("clat", seed))
        history = ((run.result or {}).get("method") or {}).get("history") or [] if run else []
        chosen = {tuple(h["layers"]) for h in history}
        if len(history) > 1 and len(chosen) == 1:
            notes.append(f"seed {seed}: CLAT chose {', '.join(history[0]['layers'])} at each of "
                         f"its {len(history)} reselections, so dynamic and fixed CLAT trained "
                         f"the same layers.")
    return notes


def analyse(opts, results) -> dict:
    from robustlayers.studies.clat_claims import claims

    tables = [variants_table(opts, results), stability_table(opts, results)]
    figures = [curves_figure(opts, results), curves_figure(opts, results, "test_clean_acc"),
               k_figure(opts, results), pretrain_figure(opts, results)]
    notes = [f"{k}: {results.status(k)}" + (f" ({results.outcomes[k].get('error')})"
                                              if results.outcomes.get(k, {}).get("error")
                                              else "")
             for k in results.tasks if not results.ok(k)] + selection_notes(opts, results)
    return {"tables": [t for t in tables if t], "figures": [f for f in figures if f],
            "claims": claims(opts, results), "notes": notes}
