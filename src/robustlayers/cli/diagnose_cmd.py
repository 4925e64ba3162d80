"""``robustlayers diagnose``: layer analyses of one or more trained classifiers, as one report.

    robustlayers diagnose --run runs/natural --compare runs/pgd-at --dataset fashion-mnist
    robustlayers diagnose --model smallcnn --checkpoint a.safetensors --compare b.safetensors \\
        --label natural --label robust --analyses psr,filter-norms --n-examples 200

Writes ``diagnosis.json`` and ``report.html`` into ``--out`` and prints the report's path.
"""

from __future__ import annotations

from pathlib import Path

from robustlayers.analysis.diagnose import ANALYSES, diagnose, parse_analyses
from robustlayers.analysis.quantization import DEFAULT_BETA, DEFAULT_BETAS
from robustlayers.cli.common import (HelpFormatter, add_device_option, add_normalize_option,
                                     add_quiet_option, check_output_path, resolve_device)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "diagnose", help="layer analyses (PSR, criticality, filter norms, quantisation, "
        "pre-activations) of trained models, as an HTML report",
        formatter_class=HelpFormatter,
        description="Run the layer analyses on one model or compare several on the same "
        "images; writes diagnosis.json and a self-contained report.html. Analyses: the "
        "perturbation-to-signal ratio per layer (EARLY: Bakiskan, Cekic, Madhow, 'Early Layers "
        "Are More Important For Adversarial Robustness', Eq. 2); the layer criticality index "
        "(CLAT: Gopal et al., 'Criticality Leveraged Adversarial Training', Eqs. 2-3); "
        "convolution-filter norms, feature quantisation and final pre-activations (SPECTRUM: "
        "Sridhar et al., 'Analysis of Adversarial Training at a Spectrum of Perturbations', "
        "§§4-6).")
    _add_model_args(parser)
    _add_analysis_args(parser)
    _add_quantization_args(parser)
    _add_output_args(parser)
    return parser


def _add_model_args(parser) -> None:
    """Which models, and which images they are analysed on."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR",
                        help="a run directory from `robustlayers train`")
    source.add_argument("--checkpoint", metavar="FILE", help="weights file (needs --model)")
    parser.add_argument("--model", help="zoo model name for --checkpoint / checkpoint --compare")
    add_normalize_option(parser)
    parser.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR_OR_CHECKPOINT",
                        help="more models to compare on the same images (trained on the same "
                        "dataset)")
    parser.add_argument("--evaluation", nargs="+", default=[], metavar="FILE",
                        help="evaluation records (`robustlayers evaluate --out FILE`) of the "
                        "models, in model order: shown as the report's evaluation table")
    parser.add_argument("--label", action="append", default=[], metavar="NAME",
                        help="label of each model in order (repeat); default: run/file name")
    parser.add_argument("--which", default="best", choices=("best", "last"),
                        help="checkpoint of a run directory")
    parser.add_argument("--dataset", help="dataset (default: the run's dataset)")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    parser.add_argument("--split", default="test", choices=("test", "train"),
                        help="split the analysed images come from")
    parser.add_argument("--n-examples", type=int, default=256,
                        help="images analysed (seeded subset)")


def _add_analysis_args(parser) -> None:
    """Analyses, layers, attack budgets and the criticality / PSR settings."""
    parser.add_argument("--select", metavar="EXPR", default=None,
                        help="layer selection for PSR / criticality / filter norms "
                        "(default: kind:conv, kind:conv,linear, kind:conv)")
    parser.add_argument("--analyses", default=",".join(ANALYSES),
                        help=f"comma-separated subset of {','.join(ANALYSES)}")
    parser.add_argument("--eps", nargs="+", default=None, metavar="EPS",
                        help="attack ε like 8/255 or 0.1 (default: the dataset's, e.g. 0.1 for "
                        "fashion-mnist, 8/255 for cifar10); several values form the "
                        "quantisation δ grid, the first is used elsewhere")
    parser.add_argument("--psr-steps", type=int, default=100,
                        help="PGD steps for PSR (EARLY tests with PGD-100)")
    parser.add_argument("--crit-steps", type=int, default=10,
                        help="PGD steps for criticality (CLAT: PGD-10)")
    parser.add_argument("--stability-repeats", type=int, default=100,
                        help="random batches for criticality stability (0 = skip)")
    parser.add_argument("--stability-batch", type=int, default=10,
                        help="batch size of each stability repeat (CLAT §4.4: 10)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="number of critical layers, 1 to the number of candidates (the "
                        "selected layers less the classifier; default 3, or all when fewer)")
    parser.add_argument("--preact-module", default=None,
                        help="module whose input is the final pre-activation (default: auto)")
    parser.add_argument("--corruption-dir", default=None,
                        help="CIFAR-10-C folder: adds the final pre-activation mean per "
                        "corruption to the preact analysis (SPECTRUM §6)")
    parser.add_argument("--corruptions", default=None,
                        help="comma-separated CIFAR-10-C corruptions (default: all 19)")
    parser.add_argument("--epoch-batches", type=int, default=10,
                        help="batches timed for the PGD-AT epoch, extrapolated to the train set "
                        "(0 = skip timing, -1 = a full epoch)")


def _add_quantization_args(parser) -> None:
    parser.add_argument("--quant-steps", type=int, default=20,
                        help="PGD steps for BPDA / transfer (SPECTRUM: PGD-20)")
    parser.add_argument("--quant-examples", type=int, default=None,
                        help="images for the quantisation grid (default: all --n-examples)")
    parser.add_argument("--betas", default=",".join(str(b) for b in DEFAULT_BETAS),
                        help="quantiser β grid, q(x) = floor(βx)/β (SPECTRUM §4)")
    parser.add_argument("--default-beta", type=float, default=DEFAULT_BETA,
                        help="β of the plain-PGD masking demo; must be in --betas")
    parser.add_argument("--placements", default=None,
                        help="comma-separated quantiser placements (default conv0 + stages), "
                        "e.g. conv0,layer1 or input:layer1.1.act")


def _add_output_args(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=128, help="examples per batch")
    add_device_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="subset and attack seed")
    parser.add_argument("--out", default="diagnosis", help="output folder")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary (paths + sentences) instead of text")
    add_quiet_option(parser)


def _load_one(spec: str, *, model_name, dataset, which, normalize=None):
    """(model, config-or-None, default label) from a run directory or a checkpoint file."""
    from robustlayers.runs import load_run_model

    path = Path(spec)
    if path.is_dir():
        model, config = load_run_model(path, which)
        return model, config, path.resolve().name
    if not path.exists():
        raise FileNotFoundError(f"no run directory or checkpoint file at {spec!r}")
    if not model_name:
        raise ValueError(f"{spec!r} is a checkpoint file: say which architecture with --model "
                         f"NAME (see `robustlayers models`)")
    if not dataset:
        raise ValueError("--dataset is required with checkpoint files")
    from robustlayers.builders import build_model

    return (build_model(model_name, dataset, checkpoint=path, normalize=normalize), None,
            path.stem)


def _labels(defaults: list[str], given: list[str]) -> list[str]:
    if len(given) > len(defaults):
        raise ValueError(f"{len(given)} --label values for {len(defaults)} models; give at most "
                         f"one label per model (primary first, then --compare in order)")
    labels = list(given) + defaults[len(given):]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def _csv(text: str | None, cast=str) -> list | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ValueError(f"cannot parse {text!r} as a comma-separated list of numbers") from None


def _betas(text: str, default_beta: float) -> list[float]:
    """The β grid of --betas; it must be non-empty and contain --default-beta."""
    betas = _csv(text, float)
    if not betas:
        raise ValueError(f"--betas {text!r} names no β; give a comma-separated list such as "
                         f"{','.join(str(b) for b in DEFAULT_BETAS)}")
    if default_beta not in betas:
        raise ValueError(f"--default-beta {default_beta:g} is not in --betas {betas}; add it to "
                         f"--betas or pass --default-beta with one of them")
    return betas


def _positive(name: str, value: int, *, allow_zero: bool = False) -> None:
    if value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")


def _check_args(args) -> None:
    for name in ("n_examples", "psr_steps", "crit_steps", "quant_steps", "stability_batch",
                 "batch_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.top_k is not None:
        _positive("--top-k", args.top_k)
    _positive("--stability-repeats", args.stability_repeats, allow_zero=True)
    if args.checkpoint and not args.model:
        raise ValueError("--checkpoint needs --model NAME (the architecture of the weights)")


def _same_dataset(dataset: str | None, loaded: list) -> str:
    """The dataset of the analysis: ``--dataset`` or the first run's. Every run directory must
    have been trained on it (checkpoint files record none)."""
    from robustlayers.data import get_dataset_info

    recorded = [(spec, config.get("dataset")) for _, config, _, spec in loaded
                if config is not None and config.get("dataset")]
    chosen = dataset or (recorded[0][1] if recorded else None)
    if not chosen:
        raise ValueError("--dataset is required (the runs do not record one)")
    name = get_dataset_info(chosen).name
    for spec, trained_on in recorded:
        if get_dataset_info(trained_on).name != name:
            source = "--dataset" if dataset else f"the first run, {recorded[0][0]}"
            raise ValueError(f"{spec} was trained on {trained_on!r} but the analysis uses "
                             f"{name!r} (from {source}); compare models trained on the same "
                             f"dataset")
    return name


def _load_models(args):
    """(models by label, sources by label, dataset name) for --run/--checkpoint + --compare."""
    loaded, dataset = [], args.dataset
    for spec in [args.run or args.checkpoint, *args.compare]:
        model, config, label = _load_one(spec, model_name=args.model, dataset=dataset,
                                         which=args.which, normalize=args.normalize)
        dataset = dataset or (config or {}).get("dataset")    # checkpoints use the first run's
        loaded.append((model, config, label, spec))
    dataset = _same_dataset(args.dataset, loaded)
    labels = _labels([item[2] for item in loaded], args.label)
    device = resolve_device(args.device)
    models = {label: item[0].to(device).eval() for label, item in zip(labels, loaded)}
    return models, {label: str(item[3]) for label, item in zip(labels, loaded)}, dataset


def _training_rows(sources: dict) -> dict:
    """The metrics.jsonl rows of every model that comes from a run directory."""
    from robustlayers.runs import RunDir

    return {label: RunDir.open(spec).metrics() for label, spec in sources.items()
            if Path(spec).is_dir()}


def _evaluations(files: list[str], labels: list[str]) -> dict | None:
    """Evaluation records (JSON of `robustlayers evaluate --out`) matched to the models in
    order."""
    if not files:
        return None
    if len(files) > len(labels):
        raise ValueError(f"{len(files)} --evaluation files for {len(labels)} models; give at "
                         f"most one per model, in model order (primary first, then --compare)")
    import json

    records = {}
    for label, name in zip(labels, files):
        try:
            record = json.loads(Path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"--evaluation {name}: cannot read a JSON record ({err})") from None
        if not isinstance(record, dict) or "clean" not in record:
            raise ValueError(f"--evaluation {name}: not an evaluation record (write one with "
                             f"`robustlayers evaluate ... --out FILE`)")
        records[label] = record
    return records


def run(args) -> int:
    from robustlayers.evaluate.progress import show_progress

    with show_progress(not args.quiet):
        return _run(args)


def _run(args) -> int:
    from robustlayers.attacks import parse_eps
    from robustlayers.data import get_dataset_info, load_dataset

    check_output_path(args.out, kind="dir")  # before the analyses, not after them
    analyses = parse_analyses(args.analyses)
    _check_args(args)
    betas = _betas(args.betas, args.default_beta)
    models, sources, dataset = _load_models(args)
    evaluation = _evaluations(args.evaluation, list(models))
    eps_values = [parse_eps(e) for e in args.eps] if args.eps else \
        [get_dataset_info(dataset).default_eps]
    data = load_dataset(dataset, args.split, data_dir=args.data_dir)
    train_data = None
    if "criticality" in analyses and args.epoch_batches != 0:
        train_data = data if args.split == "train" else load_dataset(
            dataset, "train", data_dir=args.data_dir)
    diagnosis = diagnose(
        models, data, analyses=analyses, selection=args.select, n_examples=args.n_examples,
        seed=args.seed, out_dir=args.out, eps=eps_values[0], dataset=dataset,
        psr_steps=args.psr_steps, crit_steps=args.crit_steps, k=args.top_k,
        stability_repeats=args.stability_repeats, stability_batch=args.stability_batch,
        quant_steps=args.quant_steps, quant_examples=args.quant_examples, betas=betas,
        default_beta=args.default_beta, eps_grid=eps_values, placements=_csv(args.placements),
        preact_module=args.preact_module, corruption_dir=args.corruption_dir,
        corruptions=_csv(args.corruptions), train_data=train_data,
        epoch_batches=(None if args.epoch_batches < 0 else args.epoch_batches),
        batch_size=args.batch_size, sources=sources, evaluation=evaluation,
        training=_training_rows(sources) or None)
    _print_result(diagnosis, list(models), analyses, as_json=args.json)
    return 0


def _print_result(diagnosis: dict, labels: list[str], analyses, *, as_json: bool) -> None:
    paths = diagnosis["paths"]
    if as_json:
        from robustlayers.cli.common import print_json

        print_json({"report": paths["report"], "diagnosis": paths["diagnosis"],
                    "models": labels, "analyses": list(analyses),
                    "summary": diagnosis["summary"]})
    else:
        for sentence in diagnosis["summary"]:
            print(f"- {sentence}")
        print(paths["report"])
