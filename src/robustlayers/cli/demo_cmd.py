"""``robustlayers demo``: the main job on the embedded default, end to end on a CPU.

1. the small CNN's layer map on Fashion-MNIST;
2. a natural and a PGD-adversarially-trained small CNN, short schedule (preset ``fmnist-quick``);
3. both evaluated: clean, FGSM and PGD-20 accuracy and loss, with the sanity checks, written as
   ``evaluation.txt`` (the table) and ``evaluation.json`` (every number with its attack
   configuration, seed and versions) in the output folder;
4. a layer diagnosis comparing them (PSR of EARLY, criticality of CLAT, filter norms,
   quantisation and pre-activations of SPECTRUM) written as ``diagnosis.json`` and
   ``report.html``, with the evaluation table and the training curves.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from robustlayers.attacks import FGSM, PGD, ThreatModel
from robustlayers.cli.common import HelpFormatter, format_table, print_table
from robustlayers.data import get_dataset_info, load_dataset
from robustlayers.evaluate import evaluate_model, run_sanity_checks
from robustlayers.layers import layer_map
from robustlayers.runs import RunDir, load_run_model
from robustlayers.train import preset, train

DATASET = "fashion-mnist"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the main job on the embedded default (Fashion-MNIST)",
        formatter_class=HelpFormatter,
        description="Train a natural and a PGD-AT small CNN on Fashion-MNIST, evaluate both "
        "(evaluation.txt, evaluation.json) and write a layer diagnosis comparing them "
        "(report.html): PSR (EARLY: Bakiskan, Cekic, Madhow), criticality (CLAT: Gopal et al.), "
        "filter norms, quantisation and pre-activations (SPECTRUM: Sridhar et al.).")
    parser.add_argument("--out", default="demo-out",
                        help="folder for runs, the evaluation table and the report")
    parser.add_argument("--data-dir", default=None, help="folder holding Fashion-MNIST")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each model")
    parser.add_argument("--train-size", type=int, default=10000, help="training images used")
    parser.add_argument("--eval-size", type=int, default=1000, help="test images attacked")
    parser.add_argument("--diagnose-size", type=int, default=300,
                        help="test images the diagnosis uses")
    parser.add_argument("--seed", type=int, default=0, help="training, subset and attack seed")
    return parser


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _train_pair(args, out: Path) -> dict[str, Path]:
    runs = {}
    for method in ("natural", "pgd-at"):
        config = preset("fmnist-quick", method=method, epochs=args.epochs,
                        train_size=args.train_size, data_dir=args.data_dir, seed=args.seed,
                        out=str(out / "runs" / method), runs_root=str(out / "runs"), quiet=True)
        started = time.perf_counter()
        run = train(config)
        result = run.result or {}
        print(f"{method:8s} trained in {time.perf_counter() - started:5.1f} s -> {run.path}  "
              f"(test clean {result.get('clean_acc', float('nan')):.3f}, "
              f"best robust {result.get('robust_acc_best') or float('nan'):.3f})", flush=True)
        runs[method] = run.path
    return runs


def _evaluate(models: dict, test, eps: float, seed: int, out: Path) -> dict:
    """Evaluate every model; print the table and write it (evaluation.txt) and the records
    (evaluation.json) into ``out``. Returns the records by label."""
    from robustlayers.provenance import environment
    from robustlayers.runs import atomic_write_json, atomic_write_text

    threat = ThreatModel("linf", eps)
    attacks = {"fgsm": FGSM(threat, seed=seed),
               "pgd-20": PGD(threat, steps=20, alpha=eps / 8, seed=seed)}
    rows, records = [], {}
    for label, model in models.items():
        result = evaluate_model(model, test.x, test.y, attacks)
        records[label] = result.to_dict()
        row = {"model": label, "clean acc": f"{result.clean['accuracy']:.3f}"}
        for name, res in result.attacks.items():
            row[f"{name} acc"] = f"{res.accuracy:.3f}"
            row[f"{name} loss"] = f"{res.loss:.2f}"
        checks = run_sanity_checks(model, test.x[:200], test.y[:200], threat=threat, steps=10,
                                   seed=seed, report=False)
        failed = [c.name for c in checks if not c.passed]
        row["sanity"] = "ok" if not failed else "FAILED: " + ", ".join(failed)
        records[label]["sanity"] = [c.to_dict() for c in checks]
        rows.append(row)
    text = format_table(rows, list(rows[0]))
    print(text)
    header = (f"{test.info.name} test, {len(test)} images, linf eps {eps:g}, seed {seed}; "
              f"accuracy and mean cross-entropy loss per attack\n")
    atomic_write_text(out / "evaluation.txt", header + text + "\n")
    atomic_write_json(out / "evaluation.json", {
        "dataset": test.info.name, "split": "test", "n": len(test), "seed": seed,
        "threat": {"norm": "linf", "eps": eps}, "models": records,
        "environment": environment()})
    print(f"evaluation table: {(out / 'evaluation.txt').resolve()}")
    return records


def run(args) -> int:
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if (out / "runs").exists() and any((out / "runs").iterdir()):
        raise ValueError(f"{out} already holds a demo; remove it or pass --out to another folder")
    info = get_dataset_info(DATASET)
    began = time.perf_counter()

    _step(f"Data: {DATASET}")
    test = load_dataset(DATASET, "test", data_dir=args.data_dir)
    print(f"test split: {len(test)} images of shape {info.shape}, {info.num_classes} classes; "
          f"default eps {info.default_eps}")

    _step("Layer map of the small CNN")
    from robustlayers.builders import build_model

    lmap = layer_map(build_model("smallcnn", info))
    rows = [dict(r, out_shape="x".join(map(str, r.get("out_shape") or ())))
            for r in lmap.to_rows()]
    print_table(rows, ["index", "name", "kind", "block", "params", "out_shape"])

    _step(f"Training natural and PGD-AT small CNNs ({args.epochs} epochs, "
          f"{args.train_size} images)")
    runs = _train_pair(args, out)
    models = {label: load_run_model(path, "best")[0] for label, path in runs.items()}

    _step(f"Evaluation on {args.eval_size} test images (eps {info.default_eps})")
    evaluation = test.subset(args.eval_size, seed=args.seed)
    records = _evaluate(models, evaluation, info.default_eps, args.seed, out)

    _step("Layer diagnosis: natural vs PGD-AT")
    from robustlayers.analysis import diagnose

    train_split = load_dataset(DATASET, "train", data_dir=args.data_dir,
                               subset=args.train_size, seed=args.seed)
    diagnosis = diagnose(models, (test.x, test.y), n_examples=args.diagnose_size,
                         seed=args.seed, dataset=DATASET, out_dir=out / "diagnosis",
                         train_data=(train_split.x, train_split.y), epoch_batches=10,
                         sources={k: str(v) for k, v in runs.items()}, log=print,
                         evaluation=records,
                         training={k: RunDir.open(v).metrics() for k, v in runs.items()})
    for line in diagnosis.get("summary", []):
        print(f"- {line}")
    report = out / "diagnosis" / "report.html"
    print(f"\nreport: {report.resolve()}")
    print(f"demo finished in {time.perf_counter() - began:.0f} s")
    return 0
