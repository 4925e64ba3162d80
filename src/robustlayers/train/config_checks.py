"""Validation of a :class:`~robustlayers.train.config.TrainConfig`: every value's type and range,
choices with close matches, budgets parsed ("8/255"), non-finite numbers refused, and the
method's own settings (``method_args``) checked against the method's ``Settings``.

Each error is a :class:`ConfigError` (a ``ValueError``) that names the key, the value and what
is valid. Values are normalised in place (method names canonical, budgets as floats, the
method's settings with every default filled in).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from robustlayers.devices import DEVICE_CHOICES
from robustlayers.train.settings import ConfigError, build_settings, settings_dict

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("piecewise", "cosine", "onecycle", "constant")
NORMS = ("linf", "l2")
SELECT_BY = ("auto", "robust", "clean")
ATTACK_MODES = ("eval", "train")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
GROUP_KEYS = ("select", "lr", "weight_decay", "schedule")

POSITIVE_INTS = ("epochs", "batch_size", "eval_batch_size", "eval_every", "checkpoint_every",
                 "keep_checkpoints")
NON_NEGATIVE_INTS = ("steps", "eval_steps", "val_size", "seed")
OPTIONAL_POSITIVE_INTS = ("train_size", "test_size", "eval_size", "final_steps")
NON_NEGATIVE_FLOATS = ("lr", "momentum", "weight_decay", "gamma")
BOOLS = ("nesterov", "augment", "train_clean_metrics", "final_eval", "amp", "channels_last",
         "quiet", "sync_bn")
OPTIONAL_STRINGS = ("data_dir", "init_from", "reinit", "freeze", "out", "normalize", "log_uri")
BUDGETS = ("eps", "alpha", "eval_alpha", "final_alpha")


def canon(name: Any) -> str:
    return str(name).strip().lower().replace("_", "-")


def choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"invalid {name} {value!r}{hint}; valid choices: {', '.join(choices)}")


def integer(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def number(name: str, value: Any, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{name} must be a number {'>' if strict else '>='} {low}, "
                          f"got {value!r}")
    return value


def string(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if optional and not value.strip():
        raise ConfigError(f"{name} must not be empty (leave it out, or null, for none)")
    return value


def check_config(c) -> None:
    """Validate and normalise the config ``c`` in place (see the module docstring)."""
    from robustlayers.data import get_dataset_info
    from robustlayers.models import model_info
    from robustlayers.train.methods import list_methods, method_class

    for name in ("model", "dataset", "method", "optimizer", "schedule", "norm", "device",
                 "select_by", "activation", "runs_root", "attack_mode", "compile"):
        string(name, getattr(c, name))
    for name in OPTIONAL_STRINGS:
        string(name, getattr(c, name), optional=True)
    if not c.model.startswith("custom:"):      # a user's module (train(model=...))
        _check_raw_inputs(c, model_info(c.model))  # unknown names raise with the valid choices
    if not c.dataset.startswith("custom:"):    # a user's data (train(train_data=...))
        get_dataset_info(c.dataset)  # likewise for datasets
    c.method = canon(c.method)
    choice("method", c.method, list_methods())
    c.attack_mode = c.attack_mode.strip().lower()
    for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("norm", NORMS),
                          ("device", DEVICE_CHOICES), ("select_by", SELECT_BY),
                          ("attack_mode", ATTACK_MODES), ("compile", COMPILE_MODES)):
        choice(name, getattr(c, name), choices)
    c.activation = _activation(c.activation)
    for name in BOOLS:
        if not isinstance(getattr(c, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(c, name)!r}")
    _check_numbers(c)
    _check_budgets(c)
    _check_lists(c)
    _check_keep_epochs(c)
    if c.select_by == "robust" and c.eval_steps == 0:
        raise ConfigError("select_by 'robust' needs the per-epoch robust evaluation, but "
                          "eval_steps is 0 (no test_robust_acc is ever measured, so no 'best' "
                          "checkpoint would be saved); set eval_steps >= 1 or choose "
                          "select_by from the valid choices with eval_steps=0: clean, auto")
    cls = method_class(c.method)
    if getattr(cls, "uses_pgd", False) and c.steps < 1:
        raise ConfigError(f"method {c.method!r} needs steps >= 1, got {c.steps}")
    if not isinstance(c.method_args, dict):
        raise ConfigError(f"method_args must be a mapping of {c.method}'s settings, "
                          f"got {c.method_args!r}")
    c.method_args = settings_dict(build_settings(cls.Settings, c.method_args, method=c.method))
    _check_extras(c)


def _check_extras(c) -> None:
    """Normalisation and experiment trackers (names and installed packages)."""
    from robustlayers.builders import parse_normalize
    from robustlayers.tracking import _check_installed, parse_tracker_names

    if c.normalize is not None and not c.dataset.startswith("custom:"):
        try:
            parse_normalize(c.normalize, c.dataset)
        except ValueError as err:
            raise ConfigError(f"normalize: {err}") from None
    try:
        c.log = parse_tracker_names(c.log)
        for name in c.log:
            _check_installed(name)
    except ValueError as err:
        raise ConfigError(f"log: {err}") from None


def _check_numbers(c) -> None:
    for name in POSITIVE_INTS:
        integer(name, getattr(c, name), 1)
    for name in NON_NEGATIVE_INTS:
        integer(name, getattr(c, name), 0)
    for name in OPTIONAL_POSITIVE_INTS:
        if getattr(c, name) is not None:
            integer(name, getattr(c, name), 1)
    if c.train_eval_size is not None:
        integer("train_eval_size", c.train_eval_size, 0)
    for name in NON_NEGATIVE_FLOATS:
        number(name, getattr(c, name))
    for name in ("alpha_ratio", "eval_alpha_ratio"):   # α = ratio·ε (SPECTRUM's rules)
        if getattr(c, name) is not None:
            number(name, getattr(c, name), strict=True)
    number("lr", c.lr, strict=True)
    number("onecycle_peak", c.onecycle_peak, strict=True)
    if not c.onecycle_peak < 1:
        raise ConfigError(f"onecycle_peak must be in (0, 1), got {c.onecycle_peak!r}")


def _check_budgets(c) -> None:
    """ε and step sizes: numbers or strings such as "8/255" (YAML files, --set, CLI flags); an
    ℓ∞ number over 1 (``eps=8``) is a forgotten /255, refused with a hint."""
    from robustlayers.attacks import parse_eps

    for name in BUDGETS:
        value = getattr(c, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{name} must be a number or a string such as '8/255', "
                              f"got {value!r}")
        if isinstance(value, str) and "_" in value:  # float("0_1") is 1.0
            raise ConfigError(f"{name} {value!r} is not a budget: write it as 0.1 or 8/255 "
                              f"(digit separators are not accepted)")
        try:
            parsed = parse_eps(value, norm=c.norm)
        except ValueError as err:
            raise ConfigError(f"{name}: {err}") from None
        if not math.isfinite(parsed) or parsed <= 0:
            raise ConfigError(f"{name} must be a finite number > 0 or None, got {value!r}")
        if parsed < 1e-6:
            raise ConfigError(f"{name} {value!r} is below 1e-6 (less than 1/1000 of one 8-bit "
                              f"grey level): almost certainly a typo; give it as 8/255 or 0.03")
        setattr(c, name, parsed)


def _check_lists(c) -> None:
    if not isinstance(c.milestones, (list, tuple)):
        raise ConfigError(f"milestones must be a list of epochs or fractions, "
                          f"got {c.milestones!r}")
    for m in c.milestones:
        number("milestones entry", m, strict=True)
    c.milestones = [float(m) if isinstance(m, float) else int(m) for m in c.milestones]
    betas = c.adam_betas
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ConfigError(f"adam_betas must be two numbers such as [0.9, 0.999], got {betas!r}")
    for b in betas:
        number("adam_betas entry", b)
        if not b < 1:
            raise ConfigError(f"adam_betas entries must be in [0, 1), got {betas!r}")
    c.adam_betas = tuple(float(b) for b in betas)
    if not isinstance(c.param_groups, list):
        raise ConfigError(f"param_groups must be a list of mappings with a 'select' key, "
                          f"got {c.param_groups!r}")
    for i, group in enumerate(c.param_groups):
        if not isinstance(group, dict) or "select" not in group:
            raise ConfigError(f"param_groups[{i}] must be a mapping with a 'select' key, "
                              f"got {group!r}")
        unknown = sorted(set(group) - set(GROUP_KEYS))
        if unknown:
            raise ConfigError(f"param_groups[{i}] has unknown keys {unknown}; valid keys: "
                              f"{', '.join(GROUP_KEYS)}")
        string(f"param_groups[{i}].select", group["select"])
        for key in ("lr", "weight_decay"):
            if key in group:
                number(f"param_groups[{i}].{key}", group[key])
        if "schedule" in group:
            choice(f"param_groups[{i}].schedule", group["schedule"], SCHEDULES)


def _activation(name: Any) -> str:
    """The activation name in lower case, checked against the zoo's activations."""
    from robustlayers.models import make_activation

    name = name.strip().lower()
    make_activation(name)  # unknown names raise with the zoo's valid choices
    return name


def _check_raw_inputs(c, info) -> None:
    """A zoo model without input normalisation (SPECTRUM's ResNet-18) runs with normalize
    'none', recorded as such; any other normalisation is refused."""
    if not info.raw_inputs:
        return
    if c.normalize is not None and str(c.normalize).strip().lower() != "none":
        raise ConfigError(f"model {c.model!r} takes raw [0, 1] images (no input "
                          f"normalisation), so normalize {c.normalize!r} cannot apply; leave "
                          f"normalize unset or choose 'none'")
    c.normalize = "none"


def _check_keep_epochs(c) -> None:
    """``keep_epochs``: distinct epochs in 1..epochs whose checkpoints are never pruned."""
    value = c.keep_epochs
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"keep_epochs must be a list of epoch numbers such as [76], "
                          f"got {value!r}")
    for epoch in value:
        integer("keep_epochs entry", epoch, 1)
    late = sorted(e for e in value if e > c.epochs)
    if late:
        raise ConfigError(f"keep_epochs {late} lie beyond the run's {c.epochs} epochs, so no "
                          f"such checkpoint would ever be saved; choose epochs from 1 to "
                          f"{c.epochs}, or none (keep_epochs=[], CLI --keep-epochs '')")
    c.keep_epochs = sorted(set(int(e) for e in value))
