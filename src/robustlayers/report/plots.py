"""PNG plots of a diagnosis (matplotlib, Agg; no pyplot global state).

Every function takes the JSON-able section of ``diagnosis.json`` it draws, so a report can be
re-drawn from a saved diagnosis, and writes one PNG; it returns the path.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustlayers.runs.atomic import atomic_write_bytes

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
DPI = 110


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())   # a reader never sees a half-written PNG
    return path


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _num(value, default=np.nan) -> float:
    return default if value is None else float(value)


def _layer_axis(ax, names: list[str]) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([_short(n) for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)


def psr_norm(section: dict) -> str:
    """The norm the PSR plots/tables show: the gap norm (p=2 by default) if computed."""
    norms = next(iter(section["models"].values()))["norms"]
    wanted = str(section.get("gap_norm", "2"))
    return wanted if wanted in norms else next(iter(norms))


def plot_psr(section: dict, path, norm: str | None = None) -> Path:
    """Top: mean PSR in dB (20·log10 mean ratio, EARLY Fig. 6b) per layer, one line per model,
    with the layer where each gap opens marked. Bottom: per-image PSR distribution per layer
    (box = q25–q75, whiskers = q5–q95, line = median), models side by side (EARLY Fig. 6a)."""
    models = section["models"]
    norm = norm or psr_norm(section)
    fig = _figure(max(7.0, 0.55 * max(len(m["layers"]) for m in models.values()) + 3), 7.5)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    names = next(iter(models.values()))["layers"]
    width = 0.8 / max(1, len(models))
    for m, (label, result) in enumerate(models.items()):
        rows = result["norms"][norm]["layers"]
        pos = [names.index(r["layer"]) if r["layer"] in names else i for i, r in enumerate(rows)]
        color = COLORS[m % len(COLORS)]
        top.plot(pos, [_num(r["mean_db"]) for r in rows], "o-", color=color, label=label)
        stats = []
        for r in rows:
            q = r["quantiles_db"]
            stats.append({"whislo": _num(q["q5"]), "q1": _num(q["q25"]), "med": _num(q["q50"]),
                          "q3": _num(q["q75"]), "whishi": _num(q["q95"]), "fliers": []})
        offsets = [p - 0.4 + width * (m + 0.5) for p in pos]
        artists = bottom.bxp(stats, positions=offsets, widths=width * 0.9, patch_artist=True,
                             showfliers=False, manage_ticks=False)
        for box in artists["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.55)
    for g, gap in enumerate(section.get("gaps", [])):
        if gap.get("opens_at") in names:
            x = names.index(gap["opens_at"])
            top.axvline(x, color="k", ls="--", lw=1)
            top.annotate(f"gap > {section.get('gap_threshold_db', 3):g} dB\n"
                         f"({gap['reference']} vs {gap['other']})", (x, 0.05 + 0.12 * g),
                         xycoords=("data", "axes fraction"), fontsize=7, ha="left")
    top.set_ylabel(f"mean PSR (dB), p={norm}")
    top.set_title("Perturbation-to-signal ratio per layer: 20·log10(mean per-image ratio)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    _layer_axis(top, names)
    bottom.set_ylabel(f"per-image PSR (dB), p={norm}")
    bottom.set_title("Per-image distribution (box q25–q75, whiskers q5–q95)")
    bottom.grid(alpha=0.3)
    _layer_axis(bottom, names)
    return _save(fig, path)


def plot_criticality(section: dict, path) -> Path:
    """Per model: C_i per layer (CLAT Eq. 3, log scale) with the top-k bars highlighted, and the
    share of random batches in which each layer was in the top-k."""
    models = section["models"]
    n = len(models)
    width = max(7.0, 0.5 * max(len(m["criticality"]["layers"]) for m in models.values()) + 3)
    fig = _figure(width * 2 if n else width, 3.4 * max(1, n))
    for row, (label, entry) in enumerate(models.items()):
        crit = entry["criticality"]
        names, values, top = crit["layers"], crit["criticality"], set(crit["top_k"])
        ax = fig.add_subplot(n, 2, 2 * row + 1)
        heights = [_num(v, 0.0) for v in values]
        ax.bar(range(len(names)), heights,
               color=["#d62728" if nm in top else "#9ecae1" for nm in names])
        if all(h > 0 for h in heights):
            ax.set_yscale("log")
        ax.set_title(f"{label}: criticality C_i (top-{crit['k']} in red, "
                     f"{crit['n_examples']} images)", fontsize=9)
        ax.set_ylabel("C_i")
        _layer_axis(ax, names)
        ax2 = fig.add_subplot(n, 2, 2 * row + 2)
        stab = entry.get("stability")
        if stab:
            freq = [stab["frequency"].get(nm, 0.0) for nm in names]
            modal = set(stab["modal_top_k"])
            ax2.bar(range(len(names)), freq,
                    color=["#d62728" if nm in modal else "#bdbdbd" for nm in names])
            ax2.set_ylim(0, 1.05)
            ax2.set_title(f"share of {stab['repeats']} batches of {stab['batch_size']} with the "
                          f"layer in the top-{stab['k']} (change rate "
                          f"{100 * stab['change_rate']:.1f}%)", fontsize=9)
        else:
            ax2.text(0.5, 0.5, "stability not computed", ha="center", va="center")
        _layer_axis(ax2, names)
    return _save(fig, path)


def plot_filter_norms(section: dict, path) -> Path:
    """Mean and max over k×k kernels of ‖w‖ per conv layer, one line per model (SPECTRUM Fig. 2
    and App. D)."""
    models = section["models"]
    fig = _figure(12.0, 4.2)
    names = max((m["layers"] for m in models.values()), key=len)
    for col, stat in enumerate(("mean", "max")):
        ax = fig.add_subplot(1, 2, col + 1)
        for m, (label, result) in enumerate(models.items()):
            pos = [names.index(nm) if nm in names else i for i, nm in enumerate(result["layers"])]
            ax.plot(pos, [_num(v) for v in result[stat]], "o-", color=COLORS[m % len(COLORS)],
                    label=label)
        norm = next(iter(models.values()))["norm"]
        ax.set_title(f"{stat} over kernels of ||w||_{norm} per conv layer", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _layer_axis(ax, names)
    return _save(fig, path)


def plot_quantization(section: dict, path) -> Path:
    """Per model, heatmaps β × placement of clean, BPDA and Transfer-PGD accuracy (mean over the
    δ grid), each titled with the unquantised reference (SPECTRUM Table 1 / App. C)."""
    models = section["models"]
    fig = _figure(13.0, 3.6 * max(1, len(models)))
    for row, (label, q) in enumerate(models.items()):
        places = [p["spec"] for p in q["placements"]]
        betas = q["betas"]
        base = q["baseline"]
        pgd_mean = float(np.mean(list(base["pgd"].values()))) if base["pgd"] else np.nan
        panels = (("clean_accuracy", f"clean (unquantised {100 * base['clean_accuracy']:.1f}%)"),
                  ("bpda", f"BPDA (unquantised PGD {100 * pgd_mean:.1f}%)"),
                  ("transfer", f"Transfer-PGD (unquantised PGD {100 * pgd_mean:.1f}%)"))
        for col, (key, title) in enumerate(panels):
            grid = np.full((len(betas), len(places)), np.nan)
            for cell in q["cells"]:
                value = cell[key]
                if isinstance(value, dict):
                    value = np.mean(list(value.values())) if value else np.nan
                grid[betas.index(cell["beta"]), places.index(cell["placement"])] = \
                    100 * _num(value)
            ax = fig.add_subplot(len(models), 3, 3 * row + col + 1)
            image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=100)
            for i in range(len(betas)):
                for j in range(len(places)):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center",
                                fontsize=7, color="w" if grid[i, j] < 60 else "k")
            ax.set_xticks(range(len(places)))
            ax.set_xticklabels(places, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(len(betas)))
            ax.set_yticklabels([f"β={b:g}" for b in betas], fontsize=8)
            ax.set_title(f"{label}: {title}", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def plot_preactivation(section: dict, path) -> Path:
    """Histogram of the final pre-activation values per model with its mean marked
    (SPECTRUM Fig. 3 plots the mean)."""
    models = section["models"]
    fig = _figure(8.0, 4.0)
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
    ax.set_title(f"Input of the final activation ({module})", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
