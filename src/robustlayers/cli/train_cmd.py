"""``robustlayers train``: build a TrainConfig from a preset, a config file, flags and ``--set``
overrides (later wins: preset < file < flags < --set), run it, print the run dir and metrics.

    robustlayers train --method pgd-at --epochs 5 --train-size 10000 --eps 0.1
    robustlayers train --preset rat-wp-cifar10 --data-dir ~/data --set awp_gamma=0.005
    robustlayers train --config exp.yaml --seed 3 --out runs/exp-s3
    robustlayers train --resume runs/exp-s3          # continue from the newest checkpoint
    robustlayers train --init-from runs/at@best --code A1N2 --cut layer2.0.conv1   # EARLY stage 2
    robustlayers train --method rat-wp --layers block:3,4 --gamma 0.01            # RAT_WP
    torchrun --nproc_per_node 2 -m robustlayers train --batch-size 128 ...  # one run, 2 processes

Under torchrun the processes train one run data-parallel: the global --batch-size is split across
them (gloo on CPU, nccl on CUDA), rank 0 writes the run directory; --sync-bn uses batch-norm
statistics of the global batch.

A method's own settings are flags too (--beta, --gamma, --code, ...; each lists the methods that
have it); giving a setting that only one method has selects that method when --method is not
given (--code implies --method partial-at).
"""

from __future__ import annotations

import argparse
import json
import sys

# flag dest -> (type, help); every one defaults to None ("not given") so that only flags the
# user typed override the preset / config file.
_FLAGS = {
    "model": (str, "model name (robustlayers models)"),
    "dataset": (str, "dataset name (robustlayers data)"),
    "activation": (str, "model activation: relu or swish (SiLU)"),
    "data_dir": (str, "folder holding the dataset files"),
    "method": (str, "training method (see --list-methods)"),
    "init_from": (str, "start from the weights of RUN_DIR[@best|@last|@epoch-N] (default @last) "
                       "or of a weights file; a fresh optimiser and schedule"),
    "reinit": (str, "layer selection re-initialised after loading (EARLY stage 2)"),
    "attack_mode": (str, "training attacks in eval (default; EARLY, TRADES, MART) or train mode "
                         "with an extra clean forward (robust_overfitting, AWP, RAT)"),
    "train_eval_size": (int, "RAT's train robust accuracy: PGD on N fixed training images at "
                             "each epoch end (0: off)"),
    "final_steps": (int, "PGD steps of the final best/last evaluation on the whole test split "
                         "(default: eval-steps)"),
    "epochs": (int, "training epochs"),
    "batch_size": (int, "batch size"),
    "lr": (float, "base learning rate"),
    "optimizer": (str, "sgd or adam"),
    "momentum": (float, "SGD momentum"),
    "schedule": (str, "piecewise, cosine, onecycle or constant (stepped per iteration)"),
    "milestones": (str, "piecewise milestones, comma-separated: fractions (0.5,0.75) or "
                        "epochs (75,90)"),
    "weight_decay": (float, "weight decay"),
    "norm": (str, "linf or l2"),
    "eps": (str, "budget in input units: 8/255 or 0.1 (default: the dataset's)"),
    "alpha": (str, "training PGD step size, 2/255 or 0.01 (default: scaled dataset default)"),
    "steps": (int, "training PGD steps"),
    "freeze": (str, "layer selection frozen for the whole run"),
    "train_size": (int, "train on a seeded subset of N examples"),
    "test_size": (int, "evaluate clean accuracy on a seeded subset of N test examples"),
    "val_size": (int, "hold N training examples out for checkpoint selection"),
    "eval_steps": (int, "PGD steps of the per-epoch robust evaluation (0: off)"),
    "eval_size": (int, "test images attacked every epoch"),
    "seed": (int, "random seed"),
    "keep_epochs": (str, "epochs whose checkpoints are kept for good, comma-separated (e.g. 76, "
                         "SPECTRUM's evaluation epoch; load RUN@epoch-76); '' for none"),
    "device": (str, "cpu, cuda or auto"),
    "out": (str, "run directory to create"),
    "runs_root": (str, "folder new run directories go under (default: runs)"),
    "normalize": (str, "input normalisation inside the model: dataset (default), none (raw "
                       "[0, 1] inputs, e.g. TRADES checkpoints) or MEAN/STD"),
    "log": (str, "experiment trackers, comma-separated: tensorboard, mlflow"),
    "log_uri": (str, "MLflow tracking URI (default: a local store in the run directory)"),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model (natural, PGD-AT, TRADES, MART, AWP, Fast-AT)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from robustlayers.train.config import TrainConfig

    defaults = TrainConfig()
    for dest, (kind, text) in _FLAGS.items():
        default = getattr(defaults, dest)
        shown = "" if default in (None, [], "") or "default" in text else \
            f" (default: {default})"
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, default=None,
                            help=text + shown, metavar=dest.upper())
    parser.add_argument("--nesterov", action="store_true", default=None, help="Nesterov SGD")
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                        help="no data augmentation")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                        help="no bf16 autocast on CUDA")
    parser.add_argument("--no-final-eval", dest="final_eval", action="store_false", default=None,
                        help="skip the final best/last evaluation on the whole test split")
    parser.add_argument("--sync-bn", action="store_true", default=None,
                        help="under torchrun: batch-norm statistics of the global batch "
                             "(default: per process)")
    parser.add_argument("--train-clean-metrics", action="store_true", default=None,
                        help="measure train clean accuracy (one extra forward per batch)")
    settings = parser.add_argument_group(
        "method settings", "each method's own parameters (given to the chosen method only)")
    for name, (text, owners) in _method_settings().items():
        settings.add_argument("--" + name.replace("_", "-"), dest=f"setting_{name}",
                              default=None, metavar="VALUE",
                              help=f"{text} [{', '.join(owners)}]")
    parser.add_argument("--list-methods", action="store_true",
                        help="print the methods and their settings and exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (YAML) and exit without training")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, the run directory and what starting "
                             "it would do (new run, continue, or return a finished one); train "
                             "nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="any config key, dotted for nesting (param_groups.0.lr=0.1); "
                             "the value is read as YAML; repeatable")
    parser.add_argument("--config", help="YAML or JSON file of config keys")
    parser.add_argument("--preset", help="named preset (see --list-presets)")
    parser.add_argument("--list-presets", action="store_true", help="print presets and exit")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue RUN_DIR from its newest complete checkpoint")
    parser.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print result.json to stdout")
    return parser


def _method_settings() -> dict[str, tuple[str, list[str]]]:
    """``{setting: (help, [methods that have it])}`` over every registered method."""
    from robustlayers.train.methods import list_methods, method_class
    from robustlayers.train.settings import settings_help

    out: dict[str, tuple[str, list[str]]] = {}
    for method in list_methods():
        for name, text in settings_help(method_class(method).Settings).items():
            if name in out:
                out[name][1].append(method)
            else:
                out[name] = (text, [method])
    return out


def _method_args(args, configured_method: str | None) -> tuple[dict, str | None]:
    """(method_args given as flags, the method they imply when --method is not given: the one
    method that has all of them, when the configured method lacks one)."""
    given = {name: getattr(args, f"setting_{name}") for name in _method_settings()
             if getattr(args, f"setting_{name}", None) is not None}
    if not given or args.method:
        return given, None
    owners = _method_settings()
    common = set.intersection(*(set(owners[name][1]) for name in given))
    if configured_method in common:
        return given, None
    return given, (sorted(common)[0] if len(common) == 1 else None)


def _flag_values(args) -> dict:
    values = {dest: getattr(args, dest) for dest in _FLAGS if getattr(args, dest) is not None}
    for dest in ("nesterov", "augment", "amp", "quiet", "final_eval", "train_clean_metrics",
                 "sync_bn"):
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    if "keep_epochs" in values:
        text = values["keep_epochs"]
        try:
            values["keep_epochs"] = [int(e) for e in text.split(",") if e.strip()]
        except ValueError:
            raise ValueError(f"--keep-epochs must be comma-separated epoch numbers such as "
                             f"76 or 40,76, got {text!r}") from None
    if "milestones" in values:
        try:
            values["milestones"] = [float(m) if "." in m else int(m)
                                    for m in values["milestones"].split(",") if m.strip()]
        except ValueError:
            raise ValueError(f"--milestones must be comma-separated numbers, got "
                             f"{args.milestones!r}") from None
    return values


def build_config(args):
    """The validated TrainConfig of preset < config file < flags < --set. ``--eps``/``--alpha``
    strings ("8/255", "0.1") are parsed by the config's validation with the final ``norm``."""
    from robustlayers.train.config import (TrainConfig, apply_overrides, load_config_file,
                                           merge)
    from robustlayers.train.presets import preset_values

    layers: list = []
    if args.preset:
        layers.append(preset_values(args.preset))
    if args.config:
        layers.append(load_config_file(args.config))
    flags = _flag_values(args)
    below = next((layer["method"] for layer in reversed(layers) if "method" in layer),
                 TrainConfig().method)
    method_args, implied = _method_args(args, below)
    if implied:
        flags["method"] = implied
    if method_args:
        flags["method_args"] = method_args
    layers.append(flags)
    if args.overrides:
        # dotted keys (param_groups.0.lr) start from the value the layers below give; the
        # layers' keys are already checked (load_config_file, presets, flags)
        below = TrainConfig().to_dict()
        for layer in layers:
            below.update(layer)
        layers.append(apply_overrides({}, args.overrides, base=TrainConfig(**below)))
    config = merge(*layers)
    assert isinstance(config, TrainConfig)
    return config


def run(args) -> int:
    from robustlayers.train import distributed

    try:
        return _run(args)
    finally:
        distributed.shutdown()  # under torchrun: leave the process group


def _run(args) -> int:
    from robustlayers.train import distributed, list_presets, resume_run, train

    if args.list_presets:
        from robustlayers.train.presets import PRESETS
        for name in list_presets():
            doc = " ".join((PRESETS[name].__doc__ or "").split())
            print(f"{name:22s} {doc}")
        return 0
    if args.list_methods:
        _print_methods()
        return 0
    if args.resume:
        given = [f"--{d.replace('_', '-')}" for d in _flag_values(args)
                 if d not in ("quiet", "device", "epochs")]
        given += [flag for flag, value in (("--config", args.config), ("--preset", args.preset),
                                           ("--set", args.overrides)) if value]
        if given:
            raise ValueError(f"--resume continues a run with its own saved config; drop "
                             f"{', '.join(given)} (only --epochs, to extend it, --quiet and "
                             f"--device may accompany it)")
        run_dir = resume_run(args.resume, quiet=args.quiet, device=args.device,
                             epochs=args.epochs)
    else:
        config = build_config(args)
        if args.print_config or args.dry_run:
            return _show_plan(config, dry_run=args.dry_run)
        run_dir = train(config)
    if not distributed.is_main():
        return 0  # under torchrun rank 0 reports the run
    result = run_dir.result or {}
    if result.get("status") == "diverged":
        print(f"robustlayers train: error: run {run_dir.path} diverged: {result.get('error')}; "
              f"its last finite checkpoint is {result.get('last_finite_checkpoint')}",
              file=sys.stderr)
        if args.json:
            print(json.dumps({"run_dir": str(run_dir.path), **result}, indent=2, default=str))
        return 1
    if args.json:
        print(json.dumps({"run_dir": str(run_dir.path), **result}, indent=2, default=str))
        return 0
    print(f"run: {run_dir.path}")
    for label in ("best", "last"):
        row = result.get(label) or {}
        parts = [f"{k} {row[k]:.4f}" for k in ("test_clean_acc", "test_robust_acc",
                                                "val_robust_acc") if row.get(k) is not None]
        print(f"{label} (epoch {row.get('epoch')}): {'  '.join(parts)}")
    gap = result.get("best_minus_last", {})
    if gap:
        print("best - last: " + "  ".join(f"{k} {v:+.4f}" for k, v in gap.items()))
    sys.stdout.flush()
    return 0


def _print_methods() -> None:
    from robustlayers.train.methods import list_methods, method_class
    from robustlayers.train.settings import settings_help

    for name in list_methods():
        cls = method_class(name)
        doc = " ".join((cls.__doc__ or "").split())
        print(f"{name:12s} {doc}")
        for setting, text in settings_help(cls.Settings).items():
            default = getattr(cls.Settings(), setting)
            print(f"    --{setting.replace('_', '-'):12s} {text} (default: {default!r})")


def _show_plan(config, *, dry_run: bool) -> int:
    """--print-config / --dry-run: the resolved config (ε and the α rules filled in as train()
    does, so that the directory named is the one train() uses), and with --dry-run where it
    would run."""
    from pathlib import Path

    import yaml

    from robustlayers.data import get_dataset_info
    from robustlayers.runs import RunDir
    from robustlayers.train.context import resolve_threat
    from robustlayers.train.identity import run_path

    threat, alpha, eval_alpha = resolve_threat(config, get_dataset_info(config.dataset))
    config.eps, config.alpha, config.eval_alpha = threat.eps, alpha, eval_alpha
    data = config.to_dict()
    data["adam_betas"] = list(config.adam_betas)
    print(yaml.safe_dump(data, sort_keys=False).rstrip())
    if dry_run:
        path = Path(config.out) if config.out else run_path(config)
        if (path / "config.json").is_file():
            status = RunDir.open(path).status
            what = ("returns the finished run" if status in ("finished", "diverged") else
                    f"continues the {status} run from its newest checkpoint")
        else:
            what = "starts a new run"
        print(f"# dry run: {path} — {what}; {config.epochs} epochs of {config.method}")
    return 0
