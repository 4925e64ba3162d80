"""Layer diagnosis of a natural vs a PGD-AT small CNN on Fashion-MNIST (the diagnosis issue).

    .venv/bin/python bench/diagnose_fmnist.py RUN_NATURAL RUN_PGD_AT [--out DIR] [--device cpu]

Both arguments are run directories written by ``robustlayers train`` (smallcnn, fashion-mnist).
Reports: per-layer PSR (dB) of both models and where the gap opens (EARLY Eq. 2), the top-3
critical layers and their stability over 100 random batches of 10 (CLAT Eqs. 2–3, §4.4), the
filter-norm ranking (SPECTRUM §5), the best quantisation placement (SPECTRUM §4), the
criticality / PGD-AT-epoch time ratio (CLAT Table 10), and plain verdicts on the papers'
qualitative findings. Prints a text summary, writes ``bench_diagnose_fmnist.json`` (the full
diagnosis plus a ``bench`` section) and ``report.html`` into ``--out``.

Verdict rules (stated in the JSON):
* EARLY "the PSR gap opens early": the first conv layer where |PSR_natural − PSR_pgd-at| > 3 dB
  lies in the first half of the conv layers, and |gap| at the middle conv layer is at least half
  of |gap| at the last conv layer.
* SPECTRUM "the first layers' filter norms dominate" (robust model): the two conv layers with
  the largest mean ‖w‖∞ are the first two, their mean is at least 1.5× the rest's, and that
  ratio is at least 1.1× the natural model's (fan-in-scaled initialisation alone already makes
  the first conv layer's kernels the largest, so dominance by itself says nothing about AT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from robustlayers.analysis import diagnose
from robustlayers.data import get_dataset_info, load_dataset
from robustlayers.runs import atomic_write_json, load_run_model

GAP_DB = 3.0
DOMINANCE = 1.5
MARGIN = 1.1      # the robust model's first-two/rest ratio must exceed the natural one's by 10%
NOT_ABOVE = " (not clearly above natural: the pattern is architectural/initialisation, not AT)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("natural", help="run directory of the naturally trained smallcnn")
    p.add_argument("pgd_at", help="run directory of the PGD-AT smallcnn")
    p.add_argument("--which", default="best", choices=("best", "last"))
    p.add_argument("--out", default="bench/out/diagnose_fmnist")
    p.add_argument("--n-examples", type=int, default=1000, help="test images analysed")
    p.add_argument("--eps", type=float, default=None,
                   help="attack ε (default: the PGD-AT run's ε, else the dataset default 0.1)")
    p.add_argument("--quant-examples", type=int, default=500,
                   help="images of the quantisation grid (its 5 β × 3 placements BPDA runs "
                   "are the costliest part)")
    p.add_argument("--psr-steps", type=int, default=100, help="EARLY: PGD-100")
    p.add_argument("--repeats", type=int, default=100, help="stability batches (issue: 100)")
    p.add_argument("--batch", type=int, default=10, help="stability batch size (issue: 10)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--epoch-batches", type=int, default=20,
                   help="PGD-AT epoch batches timed, extrapolated to the 60k-image epoch "
                   "(-1 = time the full epoch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load(run_dir: str, which: str, device: str):
    model, config = load_run_model(run_dir, which)
    if config.get("dataset") != "fashion-mnist":
        raise ValueError(f"{run_dir} trained on {config.get('dataset')!r}, not fashion-mnist")
    return model.to(device).eval(), config


def psr_verdict(psr: dict) -> dict:
    gap = psr["gaps"][0]
    values = [abs(g) if g is not None else 0.0 for g in gap["gap_db"]]
    n = len(values)
    mid = max(0, (n + 1) // 2 - 1)           # last conv layer of the first half
    opens = gap["opens_at_position"]
    early = opens is not None and opens <= mid
    front_loaded = n > 0 and values[mid] >= values[-1] / 2
    return {
        "claim": "EARLY: the PSR gap between natural and adversarial training opens early",
        "rule": f"the first conv layer with |gap| > {GAP_DB} dB is in the first half of the conv "
                "layers, and |gap| at the middle layer is at least half of |gap| at the last",
        "layers": gap["layers"], "gap_db": gap["gap_db"], "opens_at": gap["opens_at"],
        "opens_at_position": opens, "mid_layer": gap["layers"][mid] if n else None,
        "gap_at_mid_db": values[mid] if n else None, "gap_at_last_db": values[-1] if n else None,
        "holds": bool(early and front_loaded),
    }


def filter_verdict(norms: dict) -> dict:
    out = {"claim": "SPECTRUM: the first two conv layers' filter norms dominate (robust model)",
           "rule": f"in the PGD-AT model the top-2 by mean ||w||_inf are the first two conv "
                   f"layers and their mean is >= {DOMINANCE}x the rest's, and that ratio is at "
                   f"least {MARGIN}x the natural model's (initialisation alone favours the first "
                   f"layer)",
           "models": {}}
    for label, r in norms["models"].items():
        top2 = set(r["ranking_by_mean"][:2]) == set(r["layers"][:2])
        ratio = r["first_two_over_rest"]
        out["models"][label] = {"ranking_by_mean": r["ranking_by_mean"],
                                "first_two_over_rest": ratio, "first_two_on_top": top2,
                                "holds": bool(top2 and ratio is not None and ratio >= DOMINANCE)}
    robust = out["models"]["pgd-at"]["first_two_over_rest"]
    natural = out["models"]["natural"]["first_two_over_rest"]
    # fan-in-scaled initialisation alone makes the first conv layer's kernels largest (fan-in 9
    # for a 1-channel 3x3 input), so the robust model must also beat the natural one
    out["robust_above_natural"] = bool(robust is not None and natural is not None
                                       and robust > MARGIN * natural)
    out["holds"] = bool(out["models"]["pgd-at"]["holds"] and out["robust_above_natural"])
    return out


def _ordinal(position) -> str:
    return "none" if position is None else str(position + 1)


def summarize(diag: dict, verdicts: dict) -> list[str]:
    a = diag["analyses"]
    lines = ["Per-layer PSR (p=2, dB = 20*log10(mean per-image ratio)):"]
    nat, adv = (a["psr"]["models"][k]["norms"]["2"]["layers"] for k in ("natural", "pgd-at"))
    lines.append(f"  {'layer':<12}{'natural':>10}{'pgd-at':>10}{'gap':>8}")
    for rn, ra in zip(nat, adv):
        lines.append(f"  {rn['layer']:<12}{rn['mean_db']:>10.2f}{ra['mean_db']:>10.2f}"
                     f"{rn['mean_db'] - ra['mean_db']:>8.2f}")
    for label, entry in a["criticality"]["models"].items():
        c, s, t = entry["criticality"], entry["stability"], entry["timing"]
        lines.append(f"{label}: top-{c['k']} critical layers {c['top_k']} "
                     f"({c['n_examples']} images); modal top-{s['k']} over {s['repeats']} "
                     f"batches of {s['batch_size']}: {s['modal_top_k']}, changes in "
                     f"{100 * s['change_rate']:.1f}% of batches")
        lines.append(f"  criticality {t['criticality_s']:.3f} s vs PGD-AT epoch "
                     f"{t['epoch']['epoch_s']:.1f} s: ratio {t['ratio']:.5f}"
                     f"{' (epoch extrapolated)' if t['epoch']['extrapolated'] else ''}")
    for label, r in a["filter_norms"]["models"].items():
        lines.append(f"{label}: filter-norm ranking (mean ||w||_inf) {r['ranking_by_mean']}; "
                     f"first two / rest = {r['first_two_over_rest']:.2f}")
    for label, q in a["quantization"]["models"].items():
        b = q["best"]
        lines.append(f"{label}: best quantisation placement {b['placement']} β={b['beta']:g}: "
                     f"BPDA {100 * b['bpda_mean']:.1f}% transfer {100 * b['transfer_mean']:.1f}% "
                     f"clean {100 * b['clean_accuracy']:.1f}% (unquantised PGD "
                     f"{100 * b['unquantised_pgd_mean']:.1f}%, clean "
                     f"{100 * b['unquantised_clean']:.1f}%)")
    p, f = verdicts["psr_gap_opens_early"], verdicts["first_layers_filter_norms_dominate"]
    lines.append(f"EARLY (PSR gap opens early): {'HOLDS' if p['holds'] else 'DOES NOT HOLD'} "
                 f"here — the gap first exceeds {GAP_DB:g} dB at {p['opens_at']} (conv layer "
                 f"{_ordinal(p['opens_at_position'])} of {len(p['layers'])}); |gap| "
                 f"{p['gap_at_mid_db']:.2f} dB at "
                 f"{p['mid_layer']} vs {p['gap_at_last_db']:.2f} dB at the last conv layer.")
    r = f["models"]["pgd-at"]
    lines.append(f"SPECTRUM (first layers' filter norms dominate): "
                 f"{'HOLDS' if f['holds'] else 'DOES NOT HOLD'} here for pgd-at — ranking "
                 f"{r['ranking_by_mean']}, first two / rest = {r['first_two_over_rest']:.2f} "
                 f"vs natural {f['models']['natural']['first_two_over_rest']:.2f}"
                 f"{'' if f['robust_above_natural'] else NOT_ABOVE}.")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    natural, _ = load(args.natural, args.which, args.device)
    pgd_at, config = load(args.pgd_at, args.which, args.device)
    info = get_dataset_info("fashion-mnist")
    eps = args.eps or config.get("eps") or info.default_eps
    test = load_dataset("fashion-mnist", "test")
    train = load_dataset("fashion-mnist", "train")
    start = time.perf_counter()
    diag = diagnose(
        {"natural": natural, "pgd-at": pgd_at}, test, n_examples=args.n_examples,
        seed=args.seed, eps=float(eps), dataset="fashion-mnist", psr_steps=args.psr_steps,
        quant_examples=args.quant_examples, k=args.top_k, stability_repeats=args.repeats,
        stability_batch=args.batch,
        train_data=train, epoch_batches=None if args.epoch_batches < 0 else args.epoch_batches,
        sources={"natural": args.natural, "pgd-at": args.pgd_at}, out_dir=None,
        log=lambda m: print(m, file=sys.stderr))
    verdicts = {"psr_gap_opens_early": psr_verdict(diag["analyses"]["psr"]),
                "first_layers_filter_norms_dominate":
                    filter_verdict(diag["analyses"]["filter_norms"])}
    diag["bench"] = {"script": "bench/diagnose_fmnist.py", "argv": sys.argv[1:],
                     "wall_s": round(time.perf_counter() - start, 1), "verdicts": verdicts,
                     "runs": {"natural": args.natural, "pgd-at": args.pgd_at},
                     "checkpoint": args.which}
    lines = summarize(diag, verdicts)
    diag["bench"]["text"] = lines
    out = Path(args.out)
    from robustlayers.analysis import write_outputs

    paths = write_outputs(diag, out)
    atomic_write_json(out / "bench_diagnose_fmnist.json", diag)
    print("\n".join(lines))
    print(f"wrote {out / 'bench_diagnose_fmnist.json'} and {paths['report']}")
    print(json.dumps({"verdicts": {k: v["holds"] for k, v in verdicts.items()},
                      "wall_s": diag["bench"]["wall_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
