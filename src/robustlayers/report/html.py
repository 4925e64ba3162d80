"""The self-contained HTML report of a diagnosis: ``write_report(diagnosis, out_dir)``.

One page, no external files needed: figures are embedded as SVG (``data:image/svg+xml``; the
SVG and a PNG of each are kept next to ``report.html``); tabular data is shown as tables and the
full record is linked (``diagnosis.json``), never dumped as raw JSON. Every text is escaped with
``html.escape``. Sections beyond the analyses: the models (source, input normalisation), the
evaluation table (clean / FGSM / PGD / AutoAttack, when ``diagnosis["evaluation"]`` is given)
and the training curves (when ``diagnosis["training"]`` holds the runs' metrics rows).
"""

from __future__ import annotations

import base64
from pathlib import Path

from robustlayers.report import curves, plots
from robustlayers.report.layers import layers_body
from robustlayers.report.summary import summarize
from robustlayers.report.tables import e, fmt, pct, table
from robustlayers.runs.atomic import atomic_write_text

REPORT_NAME = "report.html"

SECTIONS = (
    ("summary", "Summary"),
    ("models", "Models"),
    ("evaluation", "Evaluation: clean and adversarial accuracy"),
    ("training", "Training curves"),
    ("psr", "Perturbation-to-signal ratio (EARLY Eq. 2)"),
    ("criticality", "Layer criticality (CLAT Eqs. 2–3)"),
    ("filter_norms", "Convolution-filter norms (SPECTRUM §5)"),
    ("quantization", "Feature quantisation (SPECTRUM §4)"),
    ("preactivation", "Final pre-activations (SPECTRUM §6)"),
    ("setup", "Attacks, selections, seed, versions"),
    ("layers", "Layer map"),
)

EXPLAIN = {
    "psr": "PSR_l = ||f_l(x) − f_l(x+e)||_p / ||f_l(x)||_p per image and layer, e = an adversarial "
           "perturbation crafted against each model itself. Curves show 20·log10 of the mean "
           "per-image ratio for p = 1, 2, ∞; ΔPSR is the reference model's curve minus the "
           "other's. A smaller PSR means the layer keeps the perturbation small relative to the "
           "signal.",
    "criticality": "W_ε(F_i) = (1/N_i)·E_x||F_i(x+δ) − F_i(x)||_2 with one PGD perturbation δ "
                   "shared by all layers; C_i = W_i / W_{i−1} for i > 1 and C₁ = W₁ (the first "
                   "layer's weakness itself, not a ratio). Large C_i = the layer amplifies the "
                   "feature perturbation most (CLAT's critical layers).",
    "filter_norms": "For each conv layer: mean and max over its k×k kernels of the kernel norm. "
                    "SPECTRUM finds the first two conv layers far above the rest in robust "
                    "ResNets.",
    "quantization": "q(x) = floor(βx)/β inserted at one placement. BPDA: PGD with a "
                    "straight-through quantiser; Transfer-PGD: PGD on the unquantised model, "
                    "images rounded to 8 bit. Cells average accuracy over the attack-ε grid.",
    "preactivation": "Distribution of the input of the last activation before global "
                     "pooling / the head over the analysed images.",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1250px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.sel td{background:#fff7e0}figure{margin:.8em 0}figure img{max-width:100%;
border:1px solid #eee}figcaption{color:#666;font-size:.85em}
.meta{color:#666}.note{color:#666;font-size:.9em}nav a{margin-right:1em}
"""


def _figure(svg_path: Path, caption: str) -> str:
    data = base64.b64encode(Path(svg_path).read_bytes()).decode("ascii")
    png = Path(svg_path).with_suffix(".png").name
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{e(caption)}">'
            f'<figcaption>{e(caption)} (also <a href="{e(png)}">{e(png)}</a>)</figcaption>'
            f"</figure>")


def _psr_body(section: dict, out_dir: Path) -> str:
    models = section["models"]
    norm = plots.psr_norm(section)
    out = _figure(plots.plot_psr(section, out_dir / "psr"), "Mean PSR per layer for p = 1, "
                  "2, ∞ and ΔPSR between the models")
    out += _figure(plots.plot_psr_spread(section, out_dir / "psr_spread"),
                   f"Per-image PSR distribution, p = {norm}")
    names = plots._union_layers(m["layers"] for m in models.values())
    norms = [n for n in ("1", "2", "inf") if n in next(iter(models.values()))["norms"]]
    rows = []
    for name in names:
        row = [name]
        for result in models.values():
            for n in norms:
                row.append(plots._psr_rows(result, n).get(name, {}).get("mean_db"))
        rows.append(row)
    headers = ["layer"] + [f"{label}: PSR dB, {plots.NORM_LABELS[n]}" for label in models
                           for n in norms]
    out += table(headers, rows)
    gaps = [[g["reference"], g["other"], g["norm"], g.get("opens_at"), g.get("max_abs_gap_db")]
            for g in section.get("gaps", [])]
    if gaps:
        out += table(["reference", "other", "norm", f"gap opens at (> "
                      f"{section['gap_threshold_db']} dB)", "max |ΔPSR| (dB)"], gaps)
    accuracy = [[label, pct(r["clean_accuracy"]), pct(r["adversarial_accuracy"]), r["n_images"]]
                for label, r in models.items()]
    out += table(["model", "clean accuracy", "accuracy under the PSR attack", "images"],
                 accuracy)
    return out + f'<p class="note">dB form: {e(section["db_form"])}.</p>'


def _criticality_body(section: dict, out_dir: Path) -> str:
    out = _figure(plots.plot_criticality(section, out_dir / "criticality"),
                  "Criticality C_i per layer (C₁ = W₁ hatched) and top-k stability")
    for label, entry in section["models"].items():
        crit = entry["criticality"]
        freq = (entry.get("stability") or {}).get("frequency", {})
        rows = [[name + (" (C₁ = W₁)" if i == 0 else ""), crit["weakness"][i],
                 crit["criticality"][i], name in crit["top_k"], freq.get(name)]
                for i, name in enumerate(crit["layers"])]
        out += f"<h3>{e(label)}</h3>" + table(
            ["layer", "W_ε (Eq. 2)", "C_i (Eq. 3)", f"top-{crit['k']}", "top-k frequency"],
            rows, classes=["sel" if r[3] else "" for r in rows])
        timing = entry.get("timing")
        if timing:
            out += table(["criticality (s)", "PGD-AT epoch (s)", "ratio", "epoch measured"],
                         [[timing["criticality_s"], timing["epoch"]["epoch_s"], timing["ratio"],
                           f"{timing['epoch']['measured_batches']} of "
                           f"{timing['epoch']['epoch_batches']} batches"]])
    return out


def _filter_body(section: dict, out_dir: Path) -> str:
    out = _figure(plots.plot_filter_norms(section, out_dir / "filter_norms"),
                  "Mean and max kernel norm per conv layer")
    for label, result in section["models"].items():
        rank = {name: i + 1 for i, name in enumerate(result["ranking_by_mean"])}
        rows = [[name, result["mean"][i], result["max"][i], rank[name], result["n_kernels"][i]]
                for i, name in enumerate(result["layers"])]
        out += f"<h3>{e(label)}</h3>" + table(
            ["layer", f"mean ||w||_{result['norm']}", f"max ||w||_{result['norm']}",
             "rank (by mean)", "kernels"], rows)
    return out


def _quant_body(section: dict, out_dir: Path) -> str:
    out = _figure(plots.plot_quantization(section, out_dir / "quantization"),
                  "Accuracy per placement and β (mean over the ε grid)")
    for label, q in section["models"].items():
        keys = [x["key"] for x in q["eps_grid"]]
        rows = [[c["placement"], c["beta"], c["clean_accuracy"],
                 *[c["bpda"].get(k) for k in keys], *[c["transfer"].get(k) for k in keys],
                 *[(c["pgd_masked"] or {}).get(k) for k in keys]] for c in q["cells"]]
        headers = (["placement", "β", "clean"] + [f"BPDA {k}" for k in keys]
                   + [f"transfer {k}" for k in keys] + [f"plain PGD {k} (masked)" for k in keys])
        best = q["best"]
        classes = ["sel" if (c["placement"], c["beta"]) == (best["placement"], best["beta"])
                   else "" for c in q["cells"]]
        places = "; ".join(f"{p['spec']} = {p['where']} of {p['module']}" for p in q["placements"])
        out += (f"<h3>{e(label)}</h3><p class=\"note\">Unquantised: clean "
                f"{e(fmt(q['baseline']['clean_accuracy']))}, PGD "
                f"{e(', '.join(f'{k}: {fmt(v)}' for k, v in q['baseline']['pgd'].items()))}. "
                f"Step sizes: BPDA α = {e(fmt(q.get('bpda_alpha_over_eps')))}·ε, transfer and "
                f"unquantised PGD α = {e(fmt(q.get('test_alpha_over_eps')))}·ε. "
                f"Placements: {e(places)}. Best: {e(q['best_rule'])}.</p>"
                + table(headers, rows, classes=classes))
    return out


def _preact_body(section: dict, out_dir: Path) -> str:
    out = _figure(plots.plot_preactivation(section, out_dir / "preactivation"),
                  "Final pre-activation values")
    rows = [[label, s["module"], s["mean"], s["std"], s["fraction_positive"],
             s["quantiles"]["q5"], s["quantiles"]["q50"], s["quantiles"]["q95"], s["n_images"]]
            for label, s in section["models"].items()]
    out += table(["model", "module (input)", "mean", "std", "share > 0", "q5", "median", "q95",
                  "images"], rows)
    corrupted = {label: s["corruptions"] for label, s in section["models"].items()
                 if s.get("corruptions")}
    if corrupted:
        first = next(iter(corrupted.values()))["rows"]
        rows = [[r["corruption"], r["severity"]] + [c["rows"][i]["mean"]
                                                    for c in corrupted.values()]
                for i, r in enumerate(first)]
        rows.append(["all", "all"] + [c["mean"] for c in corrupted.values()])
        out += "<h3>CIFAR-10-C</h3>" + table(
            ["corruption", "severity"] + [f"{label}: mean" for label in corrupted], rows)
    return out


_BODIES = {"psr": _psr_body, "criticality": _criticality_body, "filter_norms": _filter_body,
           "quantization": _quant_body, "preactivation": _preact_body}


def _page(diagnosis: dict, parts: dict) -> str:
    labels = ", ".join(diagnosis.get("models_info", {}).keys()) or "models"
    nav = "".join(f'<a href="#{key}">{e(title.split(" (")[0].split(":")[0])}</a>'
                  for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{e(title)}</h2>{parts[key]}</section>'
                       for key, title in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{e('robustlayers diagnosis: ' + labels)}</title>"
            f"<style>{_STYLE}</style></head><body>"
            f"<h1>{e('Layer diagnosis: ' + labels)}</h1>"
            f'<p class="meta">{e(_meta_line(diagnosis))} Full record: '
            f'<a href="diagnosis.json">diagnosis.json</a>.</p><nav>{nav}</nav>{sections}'
            f"</body></html>\n")


def write_report(diagnosis: dict, out_dir) -> Path:
    """Write ``report.html`` (plus an SVG and a PNG per figure next to it); return its path."""
    from robustlayers.report import sections as extra

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analyses = diagnosis.get("analyses", {})
    summary = diagnosis.get("summary") or summarize(diagnosis)
    parts = {"summary": "<ul>" + "".join(f"<li>{e(s)}</li>" for s in summary) + "</ul>"
             if summary else "<p>No analyses were run.</p>"}
    for key, body in _BODIES.items():
        if key not in analyses:
            parts[key] = '<p class="note">Not run in this diagnosis.</p>'
        else:
            parts[key] = f"<p>{e(EXPLAIN[key])}</p>" + body(analyses[key], out_dir)
    parts["models"] = extra.models_body(diagnosis)
    parts["evaluation"] = extra.evaluation_body(diagnosis.get("evaluation"))
    training = diagnosis.get("training")
    parts["training"] = extra.training_body(
        training, _figure(curves.plot_training(training, out_dir / "training"),
                          "Per-epoch accuracy and loss of the training runs") if training else "")
    parts["setup"] = extra.setup_body(diagnosis)
    parts["layers"] = layers_body(diagnosis)
    path = out_dir / REPORT_NAME
    atomic_write_text(path, _page(diagnosis, parts))
    return path


def _meta_line(diagnosis: dict) -> str:
    data = diagnosis.get("data") or {}
    env = diagnosis.get("environment") or {}
    return (f"dataset {data.get('dataset') or 'given tensors'}, {data.get('n_examples', '?')} "
            f"examples, seed {diagnosis.get('seed')}, {env.get('code_version', '?')}, "
            f"created {diagnosis.get('created', '?')}.")
