"""Reports: PNG plots (matplotlib, Agg) and the self-contained HTML page of a diagnosis.

    from robustlayers.report import write_report
    write_report(diagnosis, "out/")     # -> out/report.html (+ one PNG per analysis)
"""

from robustlayers.report.html import REPORT_NAME, SECTIONS, write_report
from robustlayers.report.plots import (
    plot_criticality, plot_filter_norms, plot_preactivation, plot_psr, plot_quantization,
)
from robustlayers.report.summary import summarize

__all__ = [
    "REPORT_NAME", "SECTIONS", "plot_criticality", "plot_filter_norms", "plot_preactivation",
    "plot_psr", "plot_quantization", "summarize", "write_report",
]
