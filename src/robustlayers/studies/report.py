"""The HTML report of one or more studies: the claims and their verdicts first, then each study's
tables and figures, then what produced them.

A study's analysis describes its tables (``{"name", "title", "caption", "columns", "rows"}``) and
figures (``{"name", "title", "caption", "x_label", "y_label", "series": [{"label", "x", "y"}]}``,
optional ``"x_ticks"`` for categorical axes and ``"x_log"``) as data in study.json; this module
draws them (SVG embedded in the page, the SVG and a PNG kept beside it), so a report can be drawn
again from a saved study.json.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from robustlayers.report.html import _STYLE
from robustlayers.report.plots import COLORS, _figure, save_figure
from robustlayers.report.tables import e, fmt, table
from robustlayers.runs.atomic import atomic_write_text
from robustlayers.studies.claims import FAILS, HOLDS

VERDICT_STYLE = {HOLDS: "#1a7f37", FAILS: "#b42318"}
EXTRA_STYLE = ".verdict{font-weight:600}.claims td{max-width:32em}"


def draw_figure(spec: dict, path: Path) -> Path:
    """One line figure from its spec; returns the SVG path."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, series in enumerate(spec.get("series", [])):
        xs = [x for x, y in zip(series["x"], series["y"]) if y is not None]
        ys = [y for y in series["y"] if y is not None]
        ax.plot(xs, ys, marker=series.get("marker", "o"), markersize=4,
                linestyle=series.get("linestyle", "-"), color=COLORS[i % len(COLORS)],
                label=series.get("label"))
    if spec.get("x_ticks"):
        ax.set_xticks(range(len(spec["x_ticks"])))
        ax.set_xticklabels(spec["x_ticks"], rotation=45, ha="right", fontsize=7)
    if spec.get("x_log"):
        ax.set_xscale("symlog")
    ax.set_xlabel(spec.get("x_label", ""))
    ax.set_ylabel(spec.get("y_label", ""))
    ax.grid(alpha=0.3)
    if any(s.get("label") for s in spec.get("series", [])):
        ax.legend(fontsize=7, frameon=False, loc="best")
    return save_figure(fig, path)


def _measured(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_measured(v)}" for k, v in value.items())
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def claims_table(records: list[dict]) -> str:
    rows = []
    for record in records:
        for c in record.get("claims", []):
            color = VERDICT_STYLE.get(c["verdict"], "#8a6d00")
            rows.append(
                f"<tr><td>{e(record['study'])}</td><td>{e(c['paper'])}</td>"
                f"<td>{e(c['claim'])}</td><td class=\"verdict\" style=\"color:{color}\">"
                f"{e(c['verdict'])}</td><td>{e(_measured(c['measured']))}</td>"
                f"<td>{e(c['threshold'])}<br><span class=\"note\">{e(c.get('rule', ''))}"
                f"</span></td></tr>")
    if not rows:
        return '<p class="note">No claims were tested.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("study", "paper", "claim", "verdict", "measured",
                                             "threshold and rule"))
    return (f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>")


def _embed(svg: Path, caption: str) -> str:
    data = base64.b64encode(svg.read_bytes()).decode()
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{e(caption)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def study_section(record: dict, out_dir: Path) -> str:
    name = record["study"]
    parts = [f"<p>{e(record.get('summary', ''))}</p>"]
    counts = record.get("outcomes", {})
    failed = [k for k, o in counts.items() if o["status"] not in ("done", "reused")]
    parts.append(f'<p class="meta">preset {e(record["preset"])}, {len(record["plan"])} tasks'
                 f"{', not finished: ' + e(', '.join(failed)) if failed else ''}; wall "
                 f"{e(fmt(record.get('wall_s')))} s with executor "
                 f"{e(record['executor']['name'])} (jobs {record['executor']['jobs']})</p>")
    for note in record.get("notes", []):
        parts.append(f'<p class="note">{e(note)}</p>')
    for spec in record.get("tables", []):
        parts.append(f"<h3>{e(spec['title'])}</h3>" + (f"<p class=\"note\">{e(spec['caption'])}"
                     f"</p>" if spec.get("caption") else "")
                     + table(spec["columns"], spec["rows"]))
    for spec in record.get("figures", []):
        svg = draw_figure(spec, out_dir / "figures" / f"{name}-{spec['name']}")
        parts.append(f"<h3>{e(spec['title'])}</h3>" + _embed(svg, spec.get("caption", "")))
    options = ", ".join(f"{k}={v}" for k, v in record["options"].items() if v is not None)
    env = record.get("environment", {})
    parts.append(f'<p class="note">Options: {e(options)}. Versions: '
                 f"{e(', '.join(f'{k} {v}' for k, v in env.items() if isinstance(v, str)))}"
                 f".</p>")
    return f'<section id="{e(name)}"><h2>{e(name)} — {e(record["paper"])}</h2>' \
           f"{''.join(parts)}</section>"


def write_study_report(records: list[dict], path, *, title: str | None = None,
                       intro: str = "") -> Path:
    """Write one HTML page for the study records (claims first); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = title or "robustlayers study: " + ", ".join(r["study"] for r in records)
    nav = "".join(f'<a href="#{e(r["study"])}">{e(r["study"])}</a>' for r in records)
    body = "".join(study_section(r, path.parent) for r in records)
    html = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}'
            f"</title><style>{_STYLE}{EXTRA_STYLE}</style></head><body><h1>{e(title)}</h1>"
            f"{intro}<section id=\"claims\"><h2>Claims and verdicts</h2>"
            f"<p class=\"note\">holds / does not hold / inconclusive: a difference no larger "
            f"than its noise (seed-to-seed spread, or sampling error with one seed) is "
            f"inconclusive.</p>{claims_table(records)}</section><nav>{nav}</nav>{body}"
            f"</body></html>\n")
    atomic_write_text(path, html)
    return path


def redraw(study_json) -> Path:
    """Draw ``report.html`` again beside a saved study.json."""
    record = json.loads(Path(study_json).read_text(encoding="utf-8"))
    return write_study_report([record], Path(study_json).parent / "report.html")
