"""``robustlayers demo``: the main job on the embedded default, end to end on a CPU.

1. the small CNN's layer map on Fashion-MNIST;
2. a natural and a PGD-adversarially-trained small CNN, short schedule (preset ``fmnist-quick``);
3. both evaluated: clean, FGSM and PGD-20 accuracy and loss, with the sanity checks;
4. a layer diagnosis comparing them (PSR, criticality, filter norms, quantisation,
   pre-activations) written as ``diagnosis.json`` and ``report.html``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from robustlayers.attacks import FGSM, PGD, ThreatModel
from robustlayers.cli.common import print_table
from robustlayers.data import get_dataset_info, load_dataset
from robustlayers.evaluate import evaluate_model, run_sanity_checks
from robustlayers.layers import layer_map
from robustlayers.runs import load_run_model
from robustlayers.train import preset, train

DATASET = "fashion-mnist"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the main job on the embedded default (Fashion-MNIST)",
        description="Train a natural and a PGD-AT small CNN on Fashion-MNIST, evaluate both and "
        "write a layer diagnosis comparing them (report.html).")
    parser.add_argument("--out", default="demo-out", help="folder for runs and the report")
    parser.add_argument("--data-dir", default=None, help="folder holding Fashion-MNIST")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each model")
    parser.add_argument("--train-size", type=int, default=10000, help="training images used")
    parser.add_argument("--eval-size", type=int, default=1000, help="test images attacked")
    parser.add_argument("--diagnose-size", type=int, default=300,
                        help="test images the diagnosis uses")
    parser.add_argument("--seed", type=int, default=0)
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


def _evaluate(models: dict, test, eps: float, seed: int) -> None:
    threat = ThreatModel("linf", eps)
    attacks = {"fgsm": FGSM(threat, seed=seed),
               "pgd-20": PGD(threat, steps=20, alpha=eps / 8, seed=seed)}
    rows = []
    for label, model in models.items():
        result = evaluate_model(model, test.x, test.y, attacks)
        row = {"model": label, "clean acc": f"{result.clean['accuracy']:.3f}"}
        for name, res in result.attacks.items():
            row[f"{name} acc"] = f"{res.accuracy:.3f}"
            row[f"{name} loss"] = f"{res.loss:.2f}"
        checks = run_sanity_checks(model, test.x[:200], test.y[:200], threat=threat, steps=10,
                                   seed=seed, report=False)
        failed = [c.name for c in checks if not c.passed]
        row["sanity"] = "ok" if not failed else "FAILED: " + ", ".join(failed)
        rows.append(row)
    print_table(rows, list(rows[0]))


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
    print_table(lmap.to_rows(), ["index", "name", "kind", "block", "params", "out_shape"])

    _step(f"Training natural and PGD-AT small CNNs ({args.epochs} epochs, "
          f"{args.train_size} images)")
    runs = _train_pair(args, out)
    models = {label: load_run_model(path, "best")[0] for label, path in runs.items()}

    _step(f"Evaluation on {args.eval_size} test images (eps {info.default_eps})")
    evaluation = test.subset(args.eval_size, seed=args.seed)
    _evaluate(models, evaluation, info.default_eps, args.seed)

    _step("Layer diagnosis: natural vs PGD-AT")
    from robustlayers.analysis import diagnose

    train_split = load_dataset(DATASET, "train", data_dir=args.data_dir,
                               subset=args.train_size, seed=args.seed)
    diagnosis = diagnose(models, (test.x, test.y), n_examples=args.diagnose_size,
                         seed=args.seed, dataset=DATASET, out_dir=out / "diagnosis",
                         train_data=(train_split.x, train_split.y), epoch_batches=10,
                         sources={k: str(v) for k, v in runs.items()}, log=print)
    for line in diagnosis.get("summary", []):
        print(f"- {line}")
    report = out / "diagnosis" / "report.html"
    print(f"\nreport: {report.resolve()}")
    print(f"demo finished in {time.perf_counter() - began:.0f} s")
    return 0
