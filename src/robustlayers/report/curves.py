"""Training curves of the runs the diagnosed models come from (their metrics.jsonl rows)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from robustlayers.report.plots import COLORS, _figure, _legend_below, _plot

TRAINING_CURVES = (("test_robust_acc", "test robust accuracy"),
                   ("train_adv_acc", "train adversarial accuracy"),
                   ("test_clean_acc", "test clean accuracy"),
                   ("train_loss", "train loss"))


def figure_training(training: dict) -> Figure:
    """Per-epoch curves of the runs the models come from (metrics.jsonl): test robust, train
    adversarial and test clean accuracy and train loss, one line per model on shared axes;
    the best epoch (the checkpoint "best") is a star, the last epoch a square."""
    present = [(key, title) for key, title in TRAINING_CURVES
               if any(r.get(key) is not None for rows in training.values() for r in rows)]
    cols = 2
    rows_n = max(1, -(-len(present) // cols))
    fig = _figure(11.0, 3.0 * rows_n + 0.8)
    axes = fig.subplots(rows_n, cols, sharex=True, squeeze=False).flatten()
    for ax, (key, title) in zip(axes, present):
        for m, (label, rows) in enumerate(training.items()):
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            if not points:
                continue
            color = COLORS[m % len(COLORS)]
            xs, ys = zip(*points)
            ax.plot(xs, ys, "-", color=color, lw=1.3, label=label)
            best = [(r["epoch"], r[key]) for r in rows if r.get("best") and r.get(key) is not None]
            if best:
                ax.plot(*best[-1], "*", color=color, ms=11, mec="k", mew=0.6)
            ax.plot(xs[-1], ys[-1], "s", mfc="none", mec=color, ms=12, mew=1.2, zorder=3)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(title.split(" ", 1)[1] if "accuracy" in title else "loss")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelbottom=True)
        ax.grid(alpha=0.3)
    for ax in axes[len(present):]:
        ax.set_visible(False)
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    handles, labels = list(seen.values()), list(seen)

    handles += [Line2D([], [], marker="*", ls="", color="0.4", mec="k", ms=10),
                Line2D([], [], marker="s", ls="", mfc="none", mec="0.3", ms=10, mew=1.2)]
    _legend_below(fig, handles, labels + ["best epoch (checkpoint 'best')", "last epoch"],
                  title="run")
    return fig



plot_training = _plot(figure_training, "training")
