"""The self-contained HTML report of a diagnosis: ``write_report(diagnosis, out_dir)``.

One page, no external files needed: plots are embedded as base64 PNG data URIs (and also saved
next to ``report.html``); every text is escaped with ``html.escape``. Plain string templates.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from robustlayers.report import plots
from robustlayers.report.summary import summarize
from robustlayers.runs.atomic import atomic_write_text

REPORT_NAME = "report.html"

SECTIONS = (
    ("summary", "Summary"),
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
           "per-image ratio; boxes show the per-image spread. A smaller PSR means the layer "
           "keeps the perturbation small relative to the signal.",
    "criticality": "W_ε(F_i) = (1/N_i)·E_x||F_i(x+δ) − F_i(x)||_2 with one PGD perturbation δ "
                   "shared by all layers; C_i = W_i / W_{i−1}, C_1 = W_1. Large C_i = the layer "
                   "amplifies the feature perturbation most (CLAT's critical layers).",
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
max-width:1200px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}th{background:#f4f4f4}
tr.sel td{background:#fff7e0}img{max-width:100%;border:1px solid #eee}
.meta{color:#666}.note{color:#666;font-size:.9em}nav a{margin-right:1em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(headers, rows, *, classes=None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{_e(alt)}"></p>'


def _pre(obj) -> str:
    return f"<pre>{_e(json.dumps(obj, indent=1, sort_keys=True, default=str))}</pre>"


def _psr_body(section: dict, figure: str) -> str:
    models = section["models"]
    norm = plots.psr_norm(section)
    names = next(iter(models.values()))["layers"]
    rows = []
    for name in names:
        row = [name]
        for result in models.values():
            match = [r for r in result["norms"].get(norm, {"layers": []})["layers"]
                     if r["layer"] == name]
            row.append(match[0]["mean_db"] if match else None)
        rows.append(row)
    headers = ["layer"] + [f"{label}: mean PSR (dB, p={norm})" for label in models]
    gaps = [[g["reference"], g["other"], g.get("opens_at"), g.get("max_abs_gap_db")]
            for g in section.get("gaps", [])]
    out = figure + _table(headers, rows)
    if gaps:
        out += _table(["reference", "other", f"gap opens at (> {section['gap_threshold_db']} dB)",
                       "max |gap| (dB)"], gaps)
    return out + f'<p class="note">dB form: {_e(section["db_form"])}.</p>'


def _criticality_body(section: dict, figure: str) -> str:
    out = figure
    for label, entry in section["models"].items():
        crit = entry["criticality"]
        stab = entry.get("stability") or {}
        freq = stab.get("frequency", {})
        rows = [[name, crit["weakness"][i], crit["criticality"][i],
                 name in crit["top_k"], freq.get(name)] for i, name in enumerate(crit["layers"])]
        out += f"<h3>{_e(label)}</h3>" + _table(
            ["layer", "W_ε (Eq. 2)", "C_i (Eq. 3)", f"top-{crit['k']}", "top-k frequency"],
            rows, classes=["sel" if r[3] else "" for r in rows])
        timing = entry.get("timing")
        if timing:
            out += _table(["criticality (s)", "PGD-AT epoch (s)", "ratio", "epoch measured"],
                          [[timing["criticality_s"], timing["epoch"]["epoch_s"], timing["ratio"],
                            f"{timing['epoch']['measured_batches']} of "
                            f"{timing['epoch']['epoch_batches']} batches"]])
    return out


def _filter_body(section: dict, figure: str) -> str:
    out = figure
    for label, result in section["models"].items():
        rank = {name: i + 1 for i, name in enumerate(result["ranking_by_mean"])}
        rows = [[name, result["mean"][i], result["max"][i], rank[name], result["n_kernels"][i]]
                for i, name in enumerate(result["layers"])]
        out += f"<h3>{_e(label)}</h3>" + _table(
            ["layer", f"mean ||w||_{result['norm']}", f"max ||w||_{result['norm']}",
             "rank (by mean)", "kernels"], rows)
    return out


def _quant_body(section: dict, figure: str) -> str:
    out = figure
    for label, q in section["models"].items():
        rows = []
        for cell in q["cells"]:
            rows.append([cell["placement"], cell["beta"], cell["clean_accuracy"],
                         *[cell["bpda"].get(e["key"]) for e in q["eps_grid"]],
                         *[cell["transfer"].get(e["key"]) for e in q["eps_grid"]],
                         *[(cell["pgd_masked"] or {}).get(e["key"]) for e in q["eps_grid"]]])
        keys = [e["key"] for e in q["eps_grid"]]
        headers = (["placement", "β", "clean"] + [f"BPDA {k}" for k in keys]
                   + [f"transfer {k}" for k in keys] + [f"plain PGD {k} (masked)" for k in keys])
        best = q["best"]
        classes = ["sel" if (c["placement"], c["beta"]) == (best["placement"], best["beta"])
                   else "" for c in q["cells"]]
        places = "; ".join(f"{p['spec']} = {p['where']} of {p['module']}" for p in q["placements"])
        out += (f"<h3>{_e(label)}</h3><p class=\"note\">Unquantised: clean "
                f"{_e(_fmt(q['baseline']['clean_accuracy']))}, PGD "
                f"{_e(', '.join(f'{k}: {_fmt(v)}' for k, v in q['baseline']['pgd'].items()))}. "
                f"Step sizes: BPDA α = {_e(_fmt(q.get('bpda_alpha_over_eps')))}·ε, transfer and "
                f"unquantised PGD α = {_e(_fmt(q.get('test_alpha_over_eps')))}·ε. "
                f"Placements: {_e(places)}. Best: {_e(q['best_rule'])}.</p>"
                + _table(headers, rows, classes=classes))
    return out


def _preact_body(section: dict, figure: str) -> str:
    rows = [[label, s["module"], s["mean"], s["std"], s["fraction_positive"],
             s["quantiles"]["q5"], s["quantiles"]["q50"], s["quantiles"]["q95"], s["n_images"]]
            for label, s in section["models"].items()]
    out = figure + _table(["model", "module (input)", "mean", "std", "share > 0", "q5",
                           "median", "q95", "images"], rows)
    corrupted = {label: s["corruptions"] for label, s in section["models"].items()
                 if s.get("corruptions")}
    if corrupted:
        first = next(iter(corrupted.values()))["rows"]
        rows = [[r["corruption"], r["severity"]] + [c["rows"][i]["mean"]
                                                    for c in corrupted.values()]
                for i, r in enumerate(first)]
        rows.append(["all", "all"] + [c["mean"] for c in corrupted.values()])
        out += "<h3>CIFAR-10-C</h3>" + _table(
            ["corruption", "severity"] + [f"{label}: mean" for label in corrupted], rows)
    return out


def _setup_body(diagnosis: dict) -> str:
    rows = [["seed", diagnosis.get("seed")], ["eps", diagnosis.get("eps")],
            ["selection", diagnosis.get("selection") or "analysis defaults"],
            ["data", diagnosis.get("data")], ["created", diagnosis.get("created")],
            ["timings (s)", diagnosis.get("timing_s")]]
    out = _table(["setting", "value"], [[k, json.dumps(v, default=str)] for k, v in rows])
    configs = {}
    for key, section in diagnosis.get("analyses", {}).items():
        for label, entry in section.get("models", {}).items():
            configs.setdefault(key, {})[label] = _configs_of(entry)
    out += "<h3>Attack and selection records</h3>" + _pre(configs)
    out += "<h3>Models</h3>" + _pre(diagnosis.get("models_info", {}))
    return out + "<h3>Versions</h3>" + _pre(diagnosis.get("environment", {}))


def _configs_of(entry: dict) -> dict:
    """The attack / selection / seed fields of one analysis entry (recursively)."""
    keep = {}
    for key, value in entry.items():
        if key in ("attack", "attacks", "selection", "seed", "eps", "criticality_attack"):
            keep[key] = value
        elif isinstance(value, dict) and key in ("criticality", "stability", "timing", "epoch"):
            keep[key] = _configs_of(value)
    return keep


def _layers_body(diagnosis: dict) -> str:
    out = ""
    for label, info in diagnosis.get("models_info", {}).items():
        rows = info.get("layer_map", [])
        table = _table(["index", "name", "kind", "block", "params", "out shape", "selected"],
                       [[r["index"], r["name"], r["kind"], r["block"], r["params"],
                         "×".join(map(str, r["out_shape"] or [])), r["selected"]] for r in rows],
                       classes=["sel" if r["selected"] else "" for r in rows])
        out += (f"<details><summary>{_e(label)}: {len(rows)} layers; selected = "
                f"{_e(info.get('selected_by', ''))}</summary>{table}</details>")
    return out or "<p>No layer map recorded.</p>"


_BODIES = {"psr": (_psr_body, plots.plot_psr), "criticality": (_criticality_body,
           plots.plot_criticality), "filter_norms": (_filter_body, plots.plot_filter_norms),
           "quantization": (_quant_body, plots.plot_quantization),
           "preactivation": (_preact_body, plots.plot_preactivation)}


def write_report(diagnosis: dict, out_dir) -> Path:
    """Write ``report.html`` (plus one PNG per analysis next to it) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analyses = diagnosis.get("analyses", {})
    summary = diagnosis.get("summary") or summarize(diagnosis)
    parts = {"summary": "<ul>" + "".join(f"<li>{_e(s)}</li>" for s in summary) + "</ul>"
             if summary else "<p>No analyses were run.</p>"}
    for key, (body, draw) in _BODIES.items():
        if key not in analyses:
            parts[key] = "<p class=\"note\">Not run in this diagnosis.</p>"
            continue
        png = draw(analyses[key], out_dir / f"{key}.png")
        figure = _image(png, dict(SECTIONS)[key])
        parts[key] = f"<p>{_e(EXPLAIN[key])}</p>" + body(analyses[key], figure)
    parts["setup"] = _setup_body(diagnosis)
    parts["layers"] = _layers_body(diagnosis)
    labels = ", ".join(diagnosis.get("models_info", {}).keys()) or "models"
    nav = "".join(f'<a href="#{key}">{_e(title.split(" (")[0])}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{parts[key]}</section>'
                       for key, title in SECTIONS)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e('robustlayers diagnosis: ' + labels)}</title>"
            f"<style>{_STYLE}</style></head><body>"
            f"<h1>{_e('Layer diagnosis: ' + labels)}</h1>"
            f'<p class="meta">{_e(_meta_line(diagnosis))}</p><nav>{nav}</nav>{sections}'
            f"</body></html>\n")
    path = out_dir / REPORT_NAME
    atomic_write_text(path, page)
    return path


def _meta_line(diagnosis: dict) -> str:
    data = diagnosis.get("data") or {}
    env = diagnosis.get("environment") or {}
    return (f"dataset {data.get('dataset', 'given tensors')}, {data.get('n_examples', '?')} "
            f"examples, seed {diagnosis.get('seed')}, robustlayers {env.get('robustlayers', '?')} "
            f"({env.get('code_version', '?')}), created {diagnosis.get('created', '?')}")
