"""``robustlayers evaluate``: clean and robust accuracy/loss of a trained model, with sanity checks.

Clean accuracy and loss, accuracy and loss under each attack (FGSM, PGD of Madry et al.,
AutoAttack of Croce & Hein) with its full configuration — the loss too, since EARLY (Bakiskan,
Cekic, Madhow) shows it stays informative when accuracy is near zero — the per-example worst
case over the attacks, and sanity checks against gradient masking on the same examples. The checks that need extra attacks
(ε monotonicity + large ε, more steps, more restarts, FGSM vs PGD) cost about 8-9 PGD-k
evaluations and run by default; ``--no-sanity`` skips them (the cheap checks - training mode,
randomness, zero gradients, budget, AutoAttack flags - always run). ``--strict`` turns a failed
check into exit code 1 (after the output is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from robustlayers.cli.common import (HelpFormatter, add_device_option, add_normalize_option,
                                     add_quiet_option, check_output_path, print_json,
                                     print_table, resolve_device)

ATTACK_CHOICES = ("pgd", "fgsm", "fgsm-rs", "pgd-cw", "autoattack", "apgd")
PGD_LIKE = ("pgd", "pgd-cw")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="clean and adversarial accuracy/loss of a trained model, with sanity checks",
        description=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR",
                     help="a training run directory: model, dataset, norm and ε come from its config")
    src.add_argument("--model", metavar="NAME", help="zoo model name (with --checkpoint)")
    p.add_argument("--which", default=None, metavar="best|last",
                   help="checkpoint of --run to evaluate (default best; also an epoch tag)")
    p.add_argument("--checkpoint", metavar="FILE", help="weights file for --model")
    add_normalize_option(p)
    p.add_argument("--dataset", default=None,
                   help="dataset (default: the run's; with --model: fashion-mnist for smallcnn)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="folder holding the dataset")
    p.add_argument("--attack", action="append", default=None, metavar="NAME",
                   help=f"attack(s), repeatable or comma-separated: {', '.join(ATTACK_CHOICES)} "
                   f"(default pgd)")
    p.add_argument("--norm", choices=("linf", "l2"), default=None,
                   help="threat model (default: the run's, else linf)")
    p.add_argument("--eps", default=None, metavar="EPS",
                   help="budget, e.g. 8/255 or 0.1 (default: the run's, else the dataset's ℓ∞ "
                   "default; required for l2)")
    p.add_argument("--steps", type=int, default=20, help="PGD steps")
    p.add_argument("--alpha", default=None, metavar="ALPHA",
                   help="PGD step size, e.g. 1/255 (default 2.5·ε/steps); FGSM: its step")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts")
    p.add_argument("--fab-targets", type=int, default=None, metavar="N",
                   help="AutoAttack FAB-T target classes (standard 9; CLAT (Gopal et al.) "
                   "evaluates with 3)")
    p.add_argument("--n-examples", type=int, default=1000,
                   help="seeded random test subset size (default 1000; 0 = the whole test split)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per attack batch")
    p.add_argument("--seed", type=int, default=0, help="subset and attack seed")
    add_device_option(p)
    p.add_argument("--no-sanity", action="store_true",
                   help="skip the sanity checks that need extra attacks (≈8 PGD-k runs)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a sanity check fails")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the JSON record to FILE")
    add_quiet_option(p)
    return p


def parse_attack_names(values) -> list[str]:
    """Flatten repeatable/comma-separated ``--attack`` values; unknown names raise ValueError."""
    names = []
    for value in values or ["pgd"]:
        for part in str(value).split(","):
            name = part.strip().lower().replace("_", "-")
            if not name:
                continue
            if name not in ATTACK_CHOICES:
                raise ValueError(f"unknown attack {part.strip()!r}; choose from "
                                 f"{', '.join(ATTACK_CHOICES)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError(f"--attack is empty; choose from {', '.join(ATTACK_CHOICES)}")
    return names


def build_attacks(names, threat, *, steps, alpha, restarts, seed, fab_targets=None) -> dict:
    """Display name -> attack; --steps/--alpha/--restarts apply to PGD (α also to FGSM)."""
    from robustlayers.attacks import make_attack

    attacks = {}
    for name in names:
        if name in PGD_LIKE:
            key = f"{name}-{steps}" + (f"x{restarts}" if restarts > 1 else "")
            attacks[key] = make_attack(name, threat, steps=steps, alpha=alpha, restarts=restarts,
                                       seed=seed)
        elif name in ("fgsm", "fgsm-rs"):
            kw = {"alpha": alpha} if alpha is not None else {}
            attacks[name] = make_attack(name, threat, seed=seed, **kw)
        elif name == "autoattack" and fab_targets is not None:
            attacks[name] = make_attack(name, threat, seed=seed, fab_targets=fab_targets)
        else:
            attacks[name] = make_attack(name, threat, seed=seed)
    return attacks


def load_model(args):
    """(model in eval(), source record, dataset, data_dir, run config or {}) from the
    ``--run/--which`` or ``--model/--checkpoint`` (+ ``--dataset``, ``--data-dir``) of ``args``."""
    if args.run is not None:
        if args.checkpoint is not None or args.normalize is not None:
            raise ValueError("--checkpoint and --normalize go with --model; --run takes its "
                             "weights and normalisation from the run (and --which best|last)")
        from robustlayers.runs import load_run_model

        which = args.which or "best"
        model, config = load_run_model(args.run, which)
        dataset = args.dataset or config.get("dataset")
        if not dataset:
            raise ValueError(f"the config of run {args.run} names no dataset; pass --dataset")
        source = {"run": str(args.run), "which": which, "name": config.get("model"),
                  "normalization": getattr(model, "normalization", None)}
        return model, source, dataset, args.data_dir or config.get("data_dir"), config
    if args.checkpoint is None:
        raise ValueError("--model needs --checkpoint FILE (or use --run RUN_DIR)")
    if args.which is not None:
        raise ValueError("--which goes with --run")
    from robustlayers.cli.common import default_dataset_for

    from robustlayers.builders import build_model

    dataset = args.dataset or default_dataset_for(args.model)
    model = build_model(args.model, dataset, checkpoint=args.checkpoint,
                        normalize=args.normalize).eval()
    source = {"name": args.model, "checkpoint": str(args.checkpoint),
              "normalization": model.normalization}
    return model, source, dataset, args.data_dir, {}


def _threat(args, config, info):
    from robustlayers.attacks import ThreatModel, parse_eps

    norm = args.norm or config.get("norm") or "linf"
    if args.eps is not None:
        eps = parse_eps(args.eps, norm=norm)
    elif config.get("eps") is not None and norm == config.get("norm", "linf"):
        eps = float(config["eps"])
    elif norm == "linf":
        eps = info.default_eps
    else:
        raise ValueError("--norm l2 needs --eps (e.g. 128/255 as in RAT); datasets define "
                         "only an ℓ∞ default")
    return ThreatModel(norm, eps)


def _check_counts(args):
    from robustlayers.evaluate import validate_count

    validate_count(args.steps, name="--steps")
    validate_count(args.restarts, name="--restarts")
    validate_count(args.batch_size, name="--batch-size")
    validate_count(args.n_examples, name="--n-examples", minimum=0)


def evaluate_record(args) -> tuple[dict, list]:
    """Run the evaluation described by ``args``; return (JSON record, sanity checks)."""
    from robustlayers.attacks import describe_eps, parse_eps
    from robustlayers.data import get_dataset_info, load_dataset
    from robustlayers.evaluate import evaluate_model, run_sanity_checks, validate_step
    from robustlayers.provenance import environment

    _check_counts(args)
    names = parse_attack_names(args.attack)
    device = resolve_device(args.device)
    model, source, dataset, data_dir, config = load_model(args)
    info = get_dataset_info(dataset)
    threat = _threat(args, config, info)
    alpha = None if args.alpha is None else validate_step(parse_eps(args.alpha, norm=threat.norm),
                                                          name="--alpha")
    data = load_dataset(dataset, "test", data_dir=data_dir, subset=args.n_examples or None,
                        seed=args.seed)
    torch.manual_seed(args.seed)
    model = model.to(device).eval()
    x, y = data.x.to(device), data.y.to(device)
    attacks = build_attacks(names, threat, steps=args.steps, alpha=alpha, restarts=args.restarts,
                            seed=args.seed, fab_targets=args.fab_targets)
    result = evaluate_model(model, x, y, attacks, batch_size=args.batch_size)
    checks = run_sanity_checks(model, x, y, threat=threat, steps=args.steps, alpha=alpha,
                               restarts=max(2, args.restarts), seed=args.seed,
                               num_classes=info.num_classes, results=result,
                               attack_checks=not args.no_sanity, batch_size=args.batch_size)
    record = {
        "command": "evaluate", "model": source, "dataset": info.name, "split": "test",
        "n": result.n, "seed": args.seed, "device": str(device),
        "threat": {"norm": threat.norm, "eps": describe_eps(threat.eps)},
        **result.to_dict(),
        "sanity": {"passed": all(c.passed for c in checks), "attack_checks": not args.no_sanity,
                   "failed": [c.name for c in checks if not c.passed],
                   "checks": [c.to_dict() for c in checks]},
        "environment": environment(),
    }
    return record, checks


def _print_human(record: dict) -> None:
    m = record["model"]
    print(f"model {m.get('name')} ({m.get('checkpoint') or m.get('run')}), {record['dataset']} "
          f"test, n={record['n']}, {record['threat']['norm']} "
          f"ε={record['threat']['eps']['value']:.4g} ({record['threat']['eps']['over_255']:g}/255)"
          f", seed {record['seed']}, {record['device']}")
    rows = [{"attack": "clean", "accuracy": f"{100 * record['clean']['accuracy']:.2f}%",
             "loss": f"{record['clean']['loss']:.4f}", "seconds": "", "steps": ""}]
    for name, a in record["attacks"].items():
        rows.append({"attack": name, "accuracy": f"{100 * a['accuracy']:.2f}%",
                     "loss": f"{a['loss']:.4f}", "seconds": f"{a['seconds']:.2f}",
                     "steps": str(a["config"].get("steps") or "")})
    if record["attacks"]:
        w = record["worst_case"]
        rows.append({"attack": "worst case", "accuracy": f"{100 * w['accuracy']:.2f}%",
                     "loss": f"{w['loss']:.4f}", "seconds": "", "steps": ""})
    print_table(rows, ["attack", "accuracy", "loss", "seconds", "steps"])
    s = record["sanity"]
    n_fail = len(s["failed"])
    print(f"sanity checks: {len(s['checks']) - n_fail} passed, {n_fail} failed"
          + (f" ({', '.join(s['failed'])}; details on stderr)" if n_fail else "")
          + ("" if s["attack_checks"] else " [attack checks skipped: --no-sanity]"))


def run(args) -> int:
    from robustlayers.evaluate.progress import show_progress

    if args.out:
        check_output_path(args.out, kind="file")  # before the evaluation, not after it
    with show_progress(not args.quiet):
        record, checks = evaluate_record(args)
    if args.out:
        from robustlayers.runs import atomic_write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, record)
    if args.json:
        print_json(record)
    else:
        _print_human(record)
    failed = [c for c in checks if not c.passed]
    if args.strict and failed:
        print(f"robustlayers evaluate: {len(failed)} sanity check(s) failed (--strict): "
              f"{', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0
