"""Plain-language sentences about what stands out in a diagnosis (for the report's summary).

Each function reads one JSON section of ``diagnosis.json`` and returns short sentences; they state
numbers and the rule used, not verdicts beyond what the numbers show.
"""

from __future__ import annotations

import numpy as np


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _share(value) -> str:
    """A small ratio as a percentage with two significant digits (0.045%)."""
    return "n/a" if value is None else f"{100 * float(value):.2g}%"


def _db(value) -> str:
    return "n/a" if value is None else f"{float(value):+.1f} dB"


def psr_sentences(section: dict) -> list[str]:
    out = []
    threshold = section.get("gap_threshold_db", 3.0)
    for gap in section.get("gaps", []):
        pair = f"{gap['reference']} and {gap['other']}"
        n = gap["n_common_layers"]
        if gap.get("opens_at") is not None:
            out.append(f"PSR gap between {pair} opens at {gap['opens_at']} "
                       f"(position {gap['opens_at_position'] + 1} of {n}; first |ΔPSR| > "
                       f"{threshold:g} dB, p={gap['norm']}); the largest gap is "
                       f"{gap['max_abs_gap_db']:.1f} dB.")
        elif n:
            out.append(f"PSR of {pair} never differs by more than {threshold:g} dB on their "
                       f"{n} shared layers (largest gap "
                       f"{_db(gap['max_abs_gap_db'])}).")
        else:
            out.append(f"{pair} share no layer names, so their PSR curves are not compared.")
    for label, result in section.get("models", {}).items():
        norm = str(section.get("gap_norm", "2"))
        norm = norm if norm in result["norms"] else next(iter(result["norms"]))
        rows = result["norms"][norm]["layers"]
        if rows:
            out.append(f"{label}: PSR (p={norm}) goes from {_db(rows[0]['mean_db'])} at "
                       f"{rows[0]['layer']} to {_db(rows[-1]['mean_db'])} at "
                       f"{rows[-1]['layer']}; the attack leaves "
                       f"{_pct(result['adversarial_accuracy'])} accuracy "
                       f"(clean {_pct(result['clean_accuracy'])}).")
    return out


def criticality_sentences(section: dict) -> list[str]:
    out = []
    for label, entry in section.get("models", {}).items():
        crit = entry["criticality"]
        text = (f"{label}: most critical layers (top-{crit['k']} by C_i on "
                f"{crit['n_examples']} images): {', '.join(crit['top_k'])}.")
        stab = entry.get("stability")
        if stab:
            text += (f" Over {stab['repeats']} random batches of {stab['batch_size']} the modal "
                     f"top-{stab['k']} set is {', '.join(stab['modal_top_k'])}; the top-k set "
                     f"differs from it in {_pct(stab['change_rate'])} of batches "
                     f"(CLAT reports < 5%).")
        timing = entry.get("timing")
        if timing and timing.get("ratio") is not None:
            epoch = timing["epoch"]
            text += (f" One criticality computation ({timing['criticality_s']:.3g} s) costs "
                     f"{_share(timing['ratio'])} of one PGD-AT epoch ({epoch['epoch_s']:.3g} s"
                     f"{', extrapolated' if epoch['extrapolated'] else ''}).")
        out.append(text)
    return out


def filter_norm_sentences(section: dict) -> list[str]:
    out = []
    for label, result in section.get("models", {}).items():
        ranking = result["ranking_by_mean"]
        ratio = result.get("first_two_over_rest")
        text = f"{label}: largest mean filter norm at {ranking[0]}" if ranking else label
        if ratio is not None:
            text += (f"; the first two conv layers' mean ||w||_{result['norm']} is "
                     f"{ratio:.2f}x that of the rest")
        out.append(text + ".")
    return out


def quantization_sentences(section: dict) -> list[str]:
    out = []
    for label, q in section.get("models", {}).items():
        best = q["best"]
        text = (f"{label}: best quantisation placement {best['placement']} at β={best['beta']:g} "
                f"(BPDA accuracy {_pct(best['bpda_mean'])} vs unquantised PGD "
                f"{_pct(best['unquantised_pgd_mean'])}; transfer {_pct(best['transfer_mean'])}; "
                f"clean {_pct(best['clean_accuracy'])} vs {_pct(best['unquantised_clean'])}).")
        masked = [c["pgd_masked"] for c in q["cells"] if c.get("pgd_masked")]
        bpda = [c["bpda"] for c in q["cells"] if c.get("pgd_masked")]
        if masked:
            m = float(np.mean([np.mean(list(d.values())) for d in masked]))
            b = float(np.mean([np.mean(list(d.values())) for d in bpda]))
            text += (f" Plain PGD through the true quantiser leaves {_pct(m)} accuracy against "
                     f"BPDA's {_pct(b)} at β={q['default_beta']:g}")
            text += (": that gap is gradient masking, not robustness." if m > b + 0.01 else
                     " (no sign of gradient masking at this size).")
        out.append(text)
    return out


def preactivation_sentences(section: dict) -> list[str]:
    models = section.get("models", {})
    if not models:
        return []
    parts = [f"{label} {s['mean']:.3g} ({_pct(s['fraction_positive'])} positive)"
             for label, s in models.items()]
    module = next(iter(models.values()))["module"]
    out = [f"Mean final pre-activation ({module}): " + "; ".join(parts) + "."]
    corrupted = [f"{label} {s['corruptions']['mean']:.3g}" for label, s in models.items()
                 if s.get("corruptions") and s["corruptions"].get("mean") is not None]
    if corrupted:
        out.append("On CIFAR-10-C (SPECTRUM §6: further from zero = fewer ReLU flips): "
                   + "; ".join(corrupted) + ".")
    return out


def summarize(diagnosis: dict) -> list[str]:
    """All sentences, in report order."""
    analyses = diagnosis.get("analyses", {})
    makers = (("psr", psr_sentences), ("criticality", criticality_sentences),
              ("filter_norms", filter_norm_sentences), ("quantization", quantization_sentences),
              ("preactivation", preactivation_sentences))
    out = []
    for key, make in makers:
        if key in analyses:
            out.extend(make(analyses[key]))
    return out
