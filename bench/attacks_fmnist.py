"""Attack strength and cost on a PGD-trained small CNN on Fashion-MNIST (SPEC §2, §6, §8).

Reports clean, FGSM, PGD-20, PGD-100, AutoAttack custom (APGD-CE + APGD-T) and AutoAttack
standard (APGD-CE, APGD-T, FAB-T, Square) accuracy and loss at ℓ∞ ε = 0.1 on a seeded subset of
the test split (default 1000 images), with the wall-clock time each took on ``--threads`` CPU
threads (default 2), plus the sanity checks that the results themselves allow (FGSM vs PGD,
PGD-20 vs PGD-100, budget, AutoAttack's own flags, zero gradients, randomness, train mode).

    .venv/bin/python bench/attacks_fmnist.py --run runs/<pgd-at smallcnn run> --out bench/results/attacks_fmnist.json
    .venv/bin/python bench/attacks_fmnist.py --model smallcnn --checkpoint W.safetensors

Standard AutoAttack runs FAB-T and Square (5000 queries) on every point still robust after
APGD, so it dominates the run time; ``--attacks`` selects a subset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ALL = ("fgsm", "pgd-20", "pgd-100", "aa-custom", "aa-standard")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="training run directory (model from config)")
    src.add_argument("--model", metavar="NAME", help="zoo model name (with --checkpoint)")
    p.add_argument("--which", default=None, help="checkpoint of --run (default best)")
    p.add_argument("--checkpoint", metavar="FILE")
    p.add_argument("--dataset", default=None, help="default: the run's, else fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--eps", default="0.1", help="ℓ∞ budget (default 0.1)")
    p.add_argument("--n-examples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--attacks", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    p.add_argument("--out", default="bench/results/attacks_fmnist.json", help="JSON output")
    return p.parse_args(argv)


def make_attacks(names, threat, seed):
    from robustlayers.attacks import FGSM, PGD, AutoAttackAdapter

    table = {
        "fgsm": lambda: FGSM(threat, seed=seed),
        # test-time PGD as in RAT/SPECTRUM (20 steps) and EARLY (100 steps): α = 2.5ε/steps
        "pgd-20": lambda: PGD(threat, steps=20, seed=seed),
        "pgd-100": lambda: PGD(threat, steps=100, seed=seed),
        "aa-custom": lambda: AutoAttackAdapter(threat, version="custom",
                                               attacks=["apgd-ce", "apgd-t"], seed=seed),
        "aa-standard": lambda: AutoAttackAdapter(threat, version="standard", seed=seed),
    }
    bad = [n for n in names if n not in table]
    if bad:
        raise SystemExit(f"unknown attack(s) {bad}; choose from {', '.join(ALL)}")
    return {n: table[n]() for n in names}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from robustlayers.attacks import ThreatModel, describe_eps, parse_eps
    from robustlayers.cli.evaluate_cmd import load_model
    from robustlayers.data import load_dataset
    from robustlayers.evaluate import (check_randomness, check_zero_gradients, clean_metrics,
                                       evaluate_model, checks_from_results, report_checks)
    from robustlayers.provenance import environment

    if args.model and not args.dataset:
        args.dataset = "fashion-mnist"
    model, source, dataset, data_dir, _ = load_model(args)
    data = load_dataset(dataset, "test", data_dir=data_dir, subset=args.n_examples,
                        seed=args.seed)
    x, y = data.x, data.y
    threat = ThreatModel("linf", parse_eps(args.eps))
    names = [n.strip() for n in args.attacks.split(",") if n.strip()]
    attacks = make_attacks(names, threat, args.seed)

    start = time.perf_counter()
    clean = clean_metrics(model, x, y, batch_size=args.batch_size)
    clean_seconds = time.perf_counter() - start
    print(f"running {', '.join(attacks)} on {len(x)} images ...", file=sys.stderr, flush=True)
    result = evaluate_model(model, x, y, attacks, batch_size=args.batch_size)
    rows = {"clean": {**clean, "seconds": clean_seconds}}
    for name, r in result.attacks.items():
        rows[name] = {"accuracy": r.accuracy, "loss": r.loss, "n": r.n, "seconds": r.seconds}
    checks = [check_randomness(model, x), check_zero_gradients(model, x, y)]
    checks += checks_from_results(result)
    report_checks(checks)

    record = {
        "bench": "attacks_fmnist", "model": source, "dataset": dataset, "n": len(x),
        "seed": args.seed, "threads": torch.get_num_threads(),
        "threat": {"norm": "linf", "eps": describe_eps(threat.eps)},
        "results": rows, "worst_case": result.worst_case,
        "configs": {n: r.config for n, r in result.attacks.items()},
        "autoattack_reports": {n: {k: v for k, v in r.report.items() if k != "log"}
                               for n, r in result.attacks.items() if n.startswith("aa-")},
        "sanity": [c.to_dict() for c in checks], "environment": environment(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")

    print(f"{source.get('name')} on {dataset} test, n={len(x)}, ℓ∞ ε={threat.eps:g} "
          f"({describe_eps(threat.eps)['over_255']:g}/255), {torch.get_num_threads()} threads")
    print(f"{'attack':<12} {'accuracy':>9} {'loss':>8} {'seconds':>9}")
    for name, row in rows.items():
        print(f"{name:<12} {100 * row['accuracy']:>8.2f}% {row['loss']:>8.4f} "
              f"{row['seconds']:>9.1f}")
    print(f"{'worst case':<12} {100 * result.worst_case['accuracy']:>8.2f}% "
          f"{result.worst_case['loss']:>8.4f}")
    failed = [c.name for c in checks if not c.passed]
    print(f"sanity: {len(checks) - len(failed)} passed, {len(failed)} failed {failed or ''}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
