"""The report's layer map: every layer of each model and which analysis used it.

Analyses may also hook modules that are not layers (a ResNet block's ``act`` for quantisation
and the final pre-activation): those are listed after the layers, so the table shows every
module any analysis touched.
"""

from __future__ import annotations

from robustlayers.report.tables import e, table

COLUMNS = ("PSR", "criticality", "filter norms", "quantisation", "pre-activation")


def used_modules(analyses: dict, label: str) -> dict[str, dict[str, str]]:
    """module name -> {analysis column: mark} for one model."""
    used: dict[str, dict[str, str]] = {}

    def mark(name, column, text="✓"):
        used.setdefault(name, {})[column] = text

    psr = analyses.get("psr", {}).get("models", {}).get(label)
    for name in (psr or {}).get("layers", []):
        mark(name, "PSR")
    crit = (analyses.get("criticality", {}).get("models", {}).get(label) or {}).get(
        "criticality") or {}
    for name in crit.get("layers", []):
        mark(name, "criticality", f"✓ top-{crit.get('k')}" if name in crit.get("top_k", [])
             else "✓")
    norms = analyses.get("filter_norms", {}).get("models", {}).get(label)
    for name in (norms or {}).get("layers", []):
        mark(name, "filter norms")
    quant = analyses.get("quantization", {}).get("models", {}).get(label)
    for place in (quant or {}).get("placements", []):
        mark(place["module"], "quantisation", f"{place['where']} ({place['spec']})")
    pre = analyses.get("preactivation", {}).get("models", {}).get(label)
    if pre and pre.get("module"):
        mark(pre["module"], "pre-activation", "input")
    return used


def layers_body(diagnosis: dict) -> str:
    analyses = diagnosis.get("analyses", {})
    out = ""
    for label, info in diagnosis.get("models_info", {}).items():
        used = used_modules(analyses, label)
        rows, classes = [], []
        known = set()
        for r in info.get("layer_map", []):
            known.add(r["name"])
            marks = used.get(r["name"], {})
            rows.append([r["index"], r["name"], r["kind"], r["block"], r["params"],
                         "×".join(map(str, r["out_shape"] or [])) or "—",
                         *[marks.get(c, "") for c in COLUMNS]])
            classes.append("sel" if marks else "")
        for name, marks in used.items():
            if name not in known:
                rows.append(["—", name, "module (not a layer)", "", "", "",
                             *[marks.get(c, "") for c in COLUMNS]])
                classes.append("sel")
        out += (f"<h3>{e(label)}: {len(info.get('layer_map', []))} layers "
                f"({sum(1 for c in classes if c)} used by an analysis)</h3>"
                + table(["index", "name", "kind", "block", "params", "out shape", *COLUMNS],
                        rows, classes=classes))
    return out or "<p>No layer map recorded.</p>"
