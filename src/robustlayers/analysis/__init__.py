"""Layer analyses (EARLY, CLAT, SPECTRUM): which layers carry a classifier's (non-)robustness.

* :func:`psr` / :func:`compare_psr` — perturbation-to-signal ratio per layer (EARLY Eq. 2)
* :func:`criticality` / :func:`criticality_stability` — CLAT's criticality index (Eqs. 2–3)
* :func:`filter_norms` / :func:`filter_norms_family` — conv-filter norms (SPECTRUM §5)
* :func:`quantization_grid` with :class:`Quantizer` — feature quantisation (SPECTRUM §4)
* :func:`preactivation_stats` — final pre-activation statistics (SPECTRUM §6)
* :func:`diagnose` — all of them on several models, ``diagnosis.json`` + ``report.html``

Every result is a dataclass with ``.to_dict()`` (or a JSON-able dict) recording the attack
configuration, the selection expression and resolved layer names, and the seed.
"""

from robustlayers.analysis.criticality import (
    CriticalityResult, StabilityResult, criticality, criticality_from_weakness,
    criticality_stability, default_criticality_attack, top_k_layers,
)
from robustlayers.analysis.diagnose import (
    ANALYSES, DiagnoseOptions, diagnose, parse_analyses, write_outputs,
)
from robustlayers.analysis.filter_norms import (
    FilterNormFamily, FilterNormResult, filter_norms, filter_norms_family, kernel_norms,
)
from robustlayers.analysis.preactivation import (
    final_activation, preactivation_corruptions, preactivation_stats, probe_final_activation,
)
from robustlayers.analysis.psr import (
    DB_FORM, PSRComparison, PSRResult, compare_psr, default_psr_attack, psr, psr_gap,
)
from robustlayers.analysis.quantization import (
    BPDA_ALPHA_OVER_EPS, DEFAULT_BETA, DEFAULT_BETAS, TEST_ALPHA_OVER_EPS, Placement, Quantizer,
    default_placements, quantization_analysis, quantization_grid, quantized, resolve_placement,
)
from robustlayers.analysis.timing import criticality_epoch_ratio, time_training_epoch

__all__ = [
    "ANALYSES", "BPDA_ALPHA_OVER_EPS", "CriticalityResult", "DB_FORM", "DEFAULT_BETA",
    "DEFAULT_BETAS", "DiagnoseOptions", "FilterNormFamily", "FilterNormResult", "PSRComparison",
    "PSRResult", "Placement", "Quantizer", "StabilityResult", "TEST_ALPHA_OVER_EPS",
    "compare_psr", "criticality", "criticality_epoch_ratio", "criticality_from_weakness",
    "criticality_stability", "default_criticality_attack", "default_placements",
    "default_psr_attack", "diagnose", "filter_norms", "filter_norms_family", "final_activation",
    "kernel_norms", "parse_analyses", "preactivation_corruptions", "preactivation_stats",
    "probe_final_activation", "psr", "psr_gap", "quantization_analysis", "quantization_grid",
    "quantized", "resolve_placement", "time_training_epoch", "top_k_layers", "write_outputs",
]
