"""Reports: figures (matplotlib, SVG + PNG) and the self-contained HTML page of a diagnosis.

    from robustlayers.report import write_report
    write_report(diagnosis, "out/")     # -> out/report.html (+ an SVG and a PNG per figure)
"""

from robustlayers.report.curves import figure_training, plot_training
from robustlayers.report.html import REPORT_NAME, SECTIONS, write_report
from robustlayers.report.plots import (
    figure_criticality, figure_filter_norms, figure_preactivation, figure_psr, figure_psr_spread,
    figure_quantization, plot_criticality, plot_filter_norms, plot_preactivation, plot_psr,
    plot_psr_spread, plot_quantization, save_figure,
)
from robustlayers.report.summary import summarize

__all__ = [
    "REPORT_NAME", "SECTIONS", "figure_criticality", "figure_filter_norms",
    "figure_preactivation", "figure_psr", "figure_psr_spread", "figure_quantization",
    "figure_training", "plot_criticality", "plot_filter_norms", "plot_preactivation",
    "plot_psr", "plot_psr_spread", "plot_quantization", "plot_training", "save_figure",
    "summarize", "write_report",
]
