"""Figures of a diagnosis (matplotlib, Agg; no pyplot global state), saved as SVG and PNG.

Every ``figure_*`` function takes the JSON-able section of ``diagnosis.json`` it draws (so a report
can be re-drawn from a saved diagnosis) and returns a matplotlib ``Figure`` whose axes all carry
axis labels; ``plot_*`` saves it as ``NAME.svg`` + ``NAME.png`` and returns the SVG path. Models
compared share axes (same scale, one colour each, one legend placed outside the data).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustlayers.runs.atomic import atomic_write_bytes

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
DPI = 110
NORM_LABELS = {"1": "p = 1", "2": "p = 2", "inf": "p = ∞"}
MAX_TICKS = 40
LAYER_AXIS = "layer (execution order)"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` as ``path`` with suffix .svg (text kept as text) and .png, atomically;
    return the SVG path."""
    svg = Path(path).with_suffix(".svg")
    svg.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(svg.with_suffix(".png"), buffer.getvalue())
    buffer = io.BytesIO()
    # text stays text (searchable, sharp); ids salted per file so inlined figures never clash
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": svg.stem}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    atomic_write_bytes(svg, buffer.getvalue())
    return svg


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _num(value, default=np.nan) -> float:
    return default if value is None else float(value)


def _layer_axis(ax, names: list[str], label: bool = True) -> None:
    """Layer names as x ticks (every k-th when there are many), rotated to stay readable."""
    step = max(1, -(-len(names) // MAX_TICKS))
    ticks = list(range(0, len(names), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([_short(names[i]) for i in ticks], rotation=55, ha="right",
                       rotation_mode="anchor", fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    if label:
        ax.set_xlabel(LAYER_AXIS)


def _legend_below(fig: Figure, handles, labels, title: str | None = None) -> None:
    """One legend for the whole figure, below the axes, so it never covers data."""
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
                   fontsize=8, title=title, title_fontsize=8, frameon=False)


def _union_layers(lists) -> list[str]:
    """Layer names of several models in first-seen execution order."""
    return list(dict.fromkeys(name for names in lists for name in names))


def _psr_rows(result: dict, norm: str) -> dict[str, dict]:
    return {r["layer"]: r for r in result["norms"].get(norm, {"layers": []})["layers"]}


def psr_norm(section: dict) -> str:
    """The norm the PSR tables and the ΔPSR gap use: the gap norm (p=2 by default)."""
    norms = next(iter(section["models"].values()))["norms"]
    wanted = str(section.get("gap_norm", "2"))
    return wanted if wanted in norms else next(iter(norms))


def figure_psr(section: dict) -> Figure:
    """Mean PSR in dB (20·log10 of the mean per-image ratio, EARLY Fig. 6b) per layer for
    p = 1, 2, ∞ — one panel per norm, one line per model, shared layer axis — and the ΔPSR
    curve (reference − other, dB) per norm with the ±threshold band and where the gap opens."""
    models = section["models"]
    names = _union_layers(m["layers"] for m in models.values())
    norms = [n for n in ("1", "2", "inf") if n in next(iter(models.values()))["norms"]]
    gaps = section.get("gaps", [])
    panels = len(norms) + (1 if gaps else 0)
    cols = 2 if panels > 1 else 1
    rows = -(-panels // cols)
    fig = _figure(max(9.0, 0.32 * len(names) * cols + 4), 3.3 * rows + 0.8)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).flatten()
    handles = {}
    for ax, norm in zip(axes, norms):
        for m, (label, result) in enumerate(models.items()):
            by_layer = _psr_rows(result, norm)
            xs = [i for i, n in enumerate(names) if n in by_layer]
            line, = ax.plot(xs, [_num(by_layer[names[i]]["mean_db"]) for i in xs], "o-", ms=3,
                            color=COLORS[m % len(COLORS)], label=label)
            handles[label] = line
        ax.set_title(f"mean PSR, {NORM_LABELS[norm]}", fontsize=9)
        ax.set_ylabel("PSR (dB)")
        ax.grid(alpha=0.3)
    if gaps:
        _delta_panel(axes[len(norms)], section, names, norms)
    for ax in axes[panels:]:
        ax.set_visible(False)
    for ax in axes[:panels]:
        _layer_axis(ax, names)
        ax.tick_params(labelbottom=True)
    _legend_below(fig, list(handles.values()), list(handles), title="model")
    return fig


def _delta_panel(ax, section: dict, names: list[str], norms: list[str]) -> None:
    """ΔPSR (dB) = mean PSR of the reference minus the other model, per norm."""
    models = section["models"]
    threshold = float(section.get("gap_threshold_db", 3.0))
    styles = {"1": ":", "2": "-", "inf": "--"}
    reference = next(iter(models))
    for g, gap in enumerate(section.get("gaps", [])):
        color = COLORS[(g + 1) % len(COLORS)]
        for norm in norms:
            ref, other = _psr_rows(models[reference], norm), _psr_rows(models[gap["other"]],
                                                                        norm)
            xs = [i for i, n in enumerate(names) if n in ref and n in other]
            ys = [_num(ref[names[i]]["mean_db"]) - _num(other[names[i]]["mean_db"]) for i in xs]
            ax.plot(xs, ys, styles[norm], color=color, lw=1.4,
                    label=f"{reference} − {gap['other']}, {NORM_LABELS[norm]}")
        if gap.get("opens_at") in names:
            x = names.index(gap["opens_at"])
            ax.axvline(x, color=color, lw=0.8, ls="-.")
            ax.annotate(f"gap opens ({gap['norm']})", (x, 0.98), xycoords=("data", "axes fraction"),
                        fontsize=7, ha="left", va="top", color=color)
    ax.axhspan(-threshold, threshold, color="0.85", alpha=0.5, lw=0,
               label=f"|ΔPSR| ≤ {threshold:g} dB")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_title("ΔPSR between the models (reference − other)", fontsize=9)
    ax.set_ylabel("ΔPSR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def figure_psr_spread(section: dict, norm: str | None = None) -> Figure:
    """Per-image PSR distribution per layer (box q25–q75, whiskers q5–q95, line = median),
    models side by side on one shared axis (EARLY Fig. 6a)."""
    models = section["models"]
    norm = norm or psr_norm(section)
    names = _union_layers(m["layers"] for m in models.values())
    fig = _figure(max(9.0, 0.45 * len(names) + 3), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(models))
    handles = []
    for m, (label, result) in enumerate(models.items()):
        by_layer = _psr_rows(result, norm)
        xs = [i for i, n in enumerate(names) if n in by_layer]
        stats = []
        for i in xs:
            q = by_layer[names[i]]["quantiles_db"]
            stats.append({"whislo": _num(q["q5"]), "q1": _num(q["q25"]), "med": _num(q["q50"]),
                          "q3": _num(q["q75"]), "whishi": _num(q["q95"]), "fliers": []})
        art = ax.bxp(stats, positions=[i - 0.4 + width * (m + 0.5) for i in xs],
                     widths=width * 0.9, patch_artist=True, showfliers=False,
                     manage_ticks=False)
        for box in art["boxes"]:
            box.set_facecolor(COLORS[m % len(COLORS)])
            box.set_alpha(0.6)
        handles.append(art["boxes"][0] if art["boxes"] else None)
    ax.set_ylabel(f"per-image PSR (dB), {NORM_LABELS.get(norm, norm)}")
    ax.set_title("Per-image PSR distribution (box q25–q75, whiskers q5–q95)", fontsize=9)
    ax.grid(alpha=0.3)
    _layer_axis(ax, names)
    pairs = [(h, label) for h, label in zip(handles, models) if h is not None]
    _legend_below(fig, [h for h, _ in pairs], [label for _, label in pairs], title="model")
    return fig


def figure_criticality(section: dict) -> Figure:
    """Criticality C_i per layer (CLAT Eq. 3), models side by side on one log axis. C₁ = W₁ is
    the first layer's feature weakness itself, not a ratio: hatched and labelled as such. Top-k
    layers have a black edge. Below: the share of random batches with each layer in the top-k
    (CLAT §4.4)."""
    models = section["models"]
    names = _union_layers(e["criticality"]["layers"] for e in models.values())
    has_stab = any(e.get("stability") for e in models.values())
    fig = _figure(max(9.0, 0.45 * len(names) + 3), 7.2 if has_stab else 4.2)
    axes = fig.subplots(2 if has_stab else 1, 1, sharex=True, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(models))
    positive = all(_num(v, 0) > 0 for e in models.values() for v in e["criticality"]["criticality"])
    for m, (label, entry) in enumerate(models.items()):
        crit = entry["criticality"]
        color = COLORS[m % len(COLORS)]
        top = set(crit["top_k"])
        for j, name in enumerate(crit["layers"]):
            i = names.index(name)
            value = _num(crit["criticality"][j], 0.0)
            axes[0].bar(i - 0.4 + width * (m + 0.5), value, width * 0.9, color=color,
                        hatch="//" if j == 0 else None, alpha=0.85,
                        edgecolor="k" if name in top else color, linewidth=1.4 if name in top
                        else 0.5, label=label if j == 1 or len(crit["layers"]) == 1 else None)
        if crit["layers"]:
            i0 = names.index(crit["layers"][0])
            axes[0].annotate("C₁ = W₁", (i0 - 0.4 + width * (m + 0.5),
                                          _num(crit["criticality"][0], 0.0)),
                             fontsize=6.5, ha="center", va="bottom", rotation=90, color=color)
    if positive:
        axes[0].set_yscale("log")
    axes[0].set_ylabel("C_i = W_i / W_{i−1}")
    axes[0].set_title("Layer criticality (CLAT Eq. 3); hatched: C₁ = W₁ (weakness of the first "
                      "layer, not a ratio); black edge: top-k", fontsize=9)
    axes[0].grid(alpha=0.3, axis="y")
    if has_stab:
        _stability_panel(axes[1], models, names, width)
    for ax in axes:
        _layer_axis(ax, names)
        ax.tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels, title="model")
    return fig


def _stability_panel(ax, models: dict, names: list[str], width: float) -> None:
    for m, (label, entry) in enumerate(models.items()):
        stab = entry.get("stability")
        if not stab:
            continue
        xs = [names.index(n) - 0.4 + width * (m + 0.5) for n in stab["layers"]]
        ax.bar(xs, [stab["frequency"].get(n, 0.0) for n in stab["layers"]], width * 0.9,
               color=COLORS[m % len(COLORS)], alpha=0.85)
    stab = next(e["stability"] for e in models.values() if e.get("stability"))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"share of batches in top-{stab['k']}")
    ax.set_title(f"Stability: {stab['repeats']} random batches of {stab['batch_size']} images "
                 f"(CLAT §4.4)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")


def figure_filter_norms(section: dict) -> Figure:
    """Mean and max over k×k kernels of ‖w‖ per conv layer, one line per model, shared axes
    (SPECTRUM Fig. 2 and App. D)."""
    models = section["models"]
    names = _union_layers(m["layers"] for m in models.values())
    norm = next(iter(models.values()))["norm"]
    symbol = "∞" if norm == "inf" else norm
    fig = _figure(max(10.0, 0.5 * len(names) + 4), 4.4)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, stat in zip(axes, ("mean", "max")):
        for m, (label, result) in enumerate(models.items()):
            xs = [names.index(n) for n in result["layers"]]
            ax.plot(xs, [_num(v) for v in result[stat]], "o-", ms=3,
                    color=COLORS[m % len(COLORS)], label=label)
        ax.set_title(f"{stat} over k×k kernels of ‖w‖_{symbol}", fontsize=9)
        ax.set_ylabel(f"{stat} ‖w‖_{symbol}")
        ax.grid(alpha=0.3)
        ax.tick_params(labelleft=True)
        _layer_axis(ax, names)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels, title="model")
    return fig


def figure_quantization(section: dict) -> Figure:
    """Per model (rows) heatmaps β × placement of clean, BPDA and Transfer-PGD accuracy (mean
    over the δ grid), each titled with the unquantised reference (SPECTRUM §4, App. C)."""
    models = section["models"]
    first = next(iter(models.values()))
    places, betas = [p["spec"] for p in first["placements"]], first["betas"]
    fig = _figure(13.0, 2.9 * max(1, len(models)) + 0.6)
    axes = fig.subplots(len(models), 3, sharex=True, sharey=True, squeeze=False)
    image = None
    for row, (label, q) in enumerate(models.items()):
        base = q["baseline"]
        pgd = float(np.mean(list(base["pgd"].values()))) if base["pgd"] else np.nan
        panels = (("clean_accuracy", f"clean (unquantised {100 * base['clean_accuracy']:.1f}%)"),
                  ("bpda", f"BPDA (unquantised PGD {100 * pgd:.1f}%)"),
                  ("transfer", f"Transfer-PGD (unquantised PGD {100 * pgd:.1f}%)"))
        for col, (key, title) in enumerate(panels):
            grid = _quant_grid(q, key, betas, places)
            ax = axes[row, col]
            image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=100)
            for i in range(len(betas)):
                for j in range(len(places)):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                                color="w" if grid[i, j] < 60 else "k")
            ax.set_xticks(range(len(places)), places, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas], fontsize=8)
            ax.set_title(f"{label}: {title}", fontsize=8.5)
            ax.set_xlabel("quantiser placement")
            ax.set_ylabel("β")
    bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.01)
    bar.set_label("accuracy (%)")
    return fig


def _quant_grid(q: dict, key: str, betas, places) -> np.ndarray:
    grid = np.full((len(betas), len(places)), np.nan)
    for cell in q["cells"]:
        value = cell[key]
        if isinstance(value, dict):
            value = np.mean(list(value.values())) if value else np.nan
        if cell["placement"] in places and cell["beta"] in betas:
            grid[betas.index(cell["beta"]), places.index(cell["placement"])] = 100 * _num(value)
    return grid


def figure_preactivation(section: dict) -> Figure:
    """Density of the final pre-activation values per model, its mean dashed (SPECTRUM §6,
    Fig. 3 plots the mean)."""
    models = section["models"]
    fig = _figure(9.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for m, (label, stats) in enumerate(models.items()):
        edges = np.array([_num(e) for e in stats["histogram"]["edges"]])
        counts = np.array(stats["histogram"]["counts"], dtype=float)
        if counts.sum() > 0:
            density = counts / counts.sum() / np.diff(edges)
            color = COLORS[m % len(COLORS)]
            ax.stairs(density, edges, color=color, label=f"{label} (mean {stats['mean']:.3g})")
            ax.axvline(stats["mean"], color=color, ls="--", lw=1)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("final pre-activation value")
    ax.set_ylabel("density")
    module = next(iter(models.values()))["module"] if models else ""
    ax.set_title(f"Input of the final activation ({module}); dashed: mean", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    _legend_below(fig, handles, labels, title="model")
    return fig


def _plot(make, name: str):
    def plot(section: dict, path) -> Path:
        return save_figure(make(section), path)
    plot.__name__ = f"plot_{name}"
    plot.__doc__ = f"``{make.__name__}(section)`` saved as SVG + PNG; returns the SVG path."
    return plot


plot_psr = _plot(figure_psr, "psr")
plot_psr_spread = _plot(figure_psr_spread, "psr_spread")
plot_criticality = _plot(figure_criticality, "criticality")
plot_filter_norms = _plot(figure_filter_norms, "filter_norms")
plot_quantization = _plot(figure_quantization, "quantization")
plot_preactivation = _plot(figure_preactivation, "preactivation")
