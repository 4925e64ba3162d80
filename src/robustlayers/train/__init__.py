"""Training engine: one loop (:func:`train`), methods as small objects, configs and presets.

    from robustlayers.train import preset, train
    run = train(preset("fmnist-quick", epochs=2))      # -> robustlayers.runs.RunDir
    resume_run(run.path)                                # continue a killed run exactly
"""

from robustlayers.train.config import (TrainConfig, apply_overrides, config_from_dict,
                                       load_config_file, merge)
from robustlayers.train.presets import list_presets, preset
from robustlayers.train.context import TrainContext, derive_seed, resolve_threat
from robustlayers.train.loop import TIME_FIELDS, evaluate_split, train_step, train_steps
from robustlayers.train.runner import resume_run, train
from robustlayers.train.methods import (Method, StepOutput, list_methods, make_method,
                                        register_method)
from robustlayers.train.optim import LRSchedule, build_optimizer, build_scheduler, lr_factor

resume = resume_run

__all__ = [
    "LRSchedule", "Method", "StepOutput", "TIME_FIELDS", "TrainConfig", "TrainContext",
    "apply_overrides", "build_optimizer", "build_scheduler", "config_from_dict", "derive_seed",
    "evaluate_split", "list_methods", "list_presets", "load_config_file", "lr_factor", "make_method",
    "merge", "preset", "register_method", "resolve_threat", "resume", "resume_run", "train",
    "train_step", "train_steps",
]

# robustlayers.train(...) calls train(...): the package object itself is callable
from robustlayers import _make_callable  # noqa: E402

_make_callable("train")
