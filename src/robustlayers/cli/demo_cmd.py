"""``robustlayers demo``: the main job on the embedded default, end to end on a CPU.

1. the small CNN's layer map on Fashion-MNIST;
2. a natural and a PGD-adversarially-trained small CNN, short schedule (preset ``fmnist-quick``);
3. both evaluated: clean, FGSM and PGD-20 accuracy and loss, with the sanity checks, written as
   ``evaluation.txt`` (the table) and ``evaluation.json`` (every number with its attack
   configuration, seed and versions) in the output folder;
4. a layer diagnosis comparing them (PSR of EARLY, criticality of CLAT, filter norms,
   quantisation and pre-activations of SPECTRUM) written as ``diagnosis/diagnosis.json`` and
   ``diagnosis/report.html``, with the evaluation table and the training curves;
5. a small version (preset ``demo``) of each of the four studies — partial-at (EARLY),
   eps-spectrum (SPECTRUM), layer-subsets (RAT), clat (CLAT) — sharing the two runs above and
   one runs folder, each with its ``study.json``;
6. ``report.html``: every claim of the four papers with its verdict on the first screen, then
   each study's tables and figures, linking the diagnosis.
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
BASE_PRESET = "fmnist-study"
"""The training preset of the demo's two runs and of the studies' demo presets: the studies find
these two runs again in the shared runs folder instead of training them anew."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the main job on the embedded default (Fashion-MNIST)",
        formatter_class=HelpFormatter,
        description="Train a natural and a PGD-AT small CNN on Fashion-MNIST, evaluate both "
        "(evaluation.txt, evaluation.json), write a layer diagnosis comparing them "
        "(diagnosis/report.html): PSR (EARLY: Bakiskan, Cekic, Madhow), criticality (CLAT: "
        "Gopal et al.), filter norms, quantisation and pre-activations (SPECTRUM: Sridhar et "
        "al.); then run a small version of each paper's study (partial-at, eps-spectrum, "
        "layer-subsets (RAT: Nguyen et al.), clat) and write report.html with every claim and "
        "its verdict first.")
    parser.add_argument("--out", default="demo-out",
                        help="folder for runs, the evaluation table and the report")
    parser.add_argument("--data-dir", default=None, help="folder holding Fashion-MNIST")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs of every run (default: preset {BASE_PRESET}'s)")
    parser.add_argument("--train-size", type=int, default=None,
                        help=f"training images used (default: preset {BASE_PRESET}'s)")
    parser.add_argument("--eval-size", type=int, default=500, help="test images attacked")
    parser.add_argument("--diagnose-size", type=int, default=150,
                        help="test images the diagnosis uses")
    parser.add_argument("--seed", type=int, default=0, help="training, subset and attack seed")
    parser.add_argument("--studies", default="all",
                        help="studies to run with their demo preset: all, none, or a "
                        "comma-separated list of partial-at, eps-spectrum, layer-subsets, clat")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs of the studies at once (worker processes)")
    return parser


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _overrides(args) -> dict:
    return {k: v for k, v in (("epochs", args.epochs), ("train_size", args.train_size))
            if v is not None}


def _train_pair(args, out: Path) -> dict[str, Path]:
    runs = {}
    for method in ("natural", "pgd-at"):
        config = preset(BASE_PRESET, method=method, data_dir=args.data_dir, seed=args.seed,
                        runs_root=str((out / "runs").resolve()), quiet=True, **_overrides(args))
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
    names = _study_names(args.studies)
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

    base = preset(BASE_PRESET, **_overrides(args))
    _step(f"Training natural and PGD-AT small CNNs ({base.epochs} epochs, "
          f"{base.train_size} images)")
    runs = _train_pair(args, out)
    models = {label: load_run_model(path, "best")[0] for label, path in runs.items()}

    _step(f"Evaluation on {args.eval_size} test images (eps {info.default_eps})")
    evaluation = test.subset(args.eval_size, seed=args.seed)
    records = _evaluate(models, evaluation, info.default_eps, args.seed, out)

    _step("Layer diagnosis: natural vs PGD-AT")
    from robustlayers.analysis import diagnose

    train_split = load_dataset(DATASET, "train", data_dir=args.data_dir,
                               subset=base.train_size, seed=args.seed)
    diagnosis = diagnose(models, (test.x, test.y), n_examples=args.diagnose_size,
                         seed=args.seed, dataset=DATASET, out_dir=out / "diagnosis",
                         train_data=(train_split.x, train_split.y), epoch_batches=10,
                         sources={k: str(v) for k, v in runs.items()}, log=print,
                         evaluation=records,
                         training={k: RunDir.open(v).metrics() for k, v in runs.items()})
    for line in diagnosis.get("summary", []):
        print(f"- {line}")
    print(f"diagnosis report: {(out / 'diagnosis' / 'report.html').resolve()}")

    study_records = _studies(args, out, names) if names else []
    report = _write_report(out, study_records, base, began)
    print(f"\nreport: {report.resolve()}")
    print(f"demo finished in {time.perf_counter() - began:.0f} s")
    return 0


def _study_names(text: str) -> list[str]:
    from robustlayers.studies import list_studies

    if text.strip() == "none":
        return []
    known = list_studies()
    names = known if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown study {unknown[0]!r} in --studies; choose all, none or "
                         f"from {', '.join(known)}")
    return names


def _studies(args, out: Path, names: list[str]) -> list[dict]:
    """Each study's demo preset, sharing the runs folder (and so the two runs above)."""
    from robustlayers import studies

    records = []
    for name in names:
        began = _step(f"Study {name} (preset demo)")
        record = studies.run(name, "demo", out=out / "studies" / name,
                             runs_root=(out / "runs").resolve(), jobs=args.jobs,
                             seeds=str(args.seed), data_dir=args.data_dir, **_overrides(args))
        for claim in record.get("claims", []):
            print(f"  [{claim['verdict']}] {claim['id']}: {claim['claim']}")
        print(f"{name} finished in {time.perf_counter() - began:.0f} s")
        records.append(record)
    return records


def _write_report(out: Path, records: list[dict], base, began: float) -> Path:
    """``report.html``: the claims of every study first, then the studies, linking the
    evaluation table and the diagnosis."""
    from robustlayers.report.tables import e
    from robustlayers.studies.report import write_study_report

    intro = (f'<p class="meta">robustlayers demo on {e(DATASET)} ({e(base.model)}, preset '
             f"{e(BASE_PRESET)}: {base.epochs} epochs on {base.train_size} training images, "
             f"eps {base.eps}), {time.perf_counter() - began:.0f} s. The layer diagnosis of the "
             f'natural and the PGD-AT model: <a href="diagnosis/report.html">'
             f'diagnosis/report.html</a>; their evaluation: <a href="evaluation.txt">'
             f"evaluation.txt</a>. On this small CPU setting the papers' qualitative claims are "
             f"what can be tested; each verdict is computed from the numbers below.</p>")
    return write_study_report(records, out / "report.html",
                              title="robustlayers demo: the papers' claims on Fashion-MNIST",
                              intro=intro)
