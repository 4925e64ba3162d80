"""Every training hyper-parameter in one place (:class:`TrainConfig`), with why it has its default.

Configs come from three sources that combine in this order, later winning: a preset
(:mod:`robustlayers.train.presets`), a config file (:func:`load_config_file`, YAML or JSON, which
may name a ``preset:`` of its own) and command-line flags (:func:`merge`). A method's own
parameters live in ``method_args`` and are declared by the method (its ``Settings``). Validation
(:meth:`TrainConfig.validate`, :mod:`robustlayers.train.config_checks`) turns an unknown key or
an invalid value into a ``ConfigError`` (a ``ValueError``) that names the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from robustlayers.train.config_checks import canon, check_config
from robustlayers.train.settings import ConfigError

LEGACY_KEYS = {
    # flat method keys of run directories written before methods owned their settings:
    # key -> (methods that read it, setting name)
    "trades_beta": (("trades", "awp"), "beta"),
    "mart_beta": (("mart",), "beta"),
    "awp_gamma": (("awp",), "gamma"),
    "awp_warmup": (("awp",), "warmup"),
    "awp_select": (("awp",), "layers"),
    "awp_base": (("awp",), "base"),
    "awp_proxy_lr": (("awp",), "proxy_lr"),
    "fast_alpha_scale": (("fast-at",), "alpha_scale"),
}


@dataclass
class TrainConfig:
    # --- what is trained on what -----------------------------------------------------------
    model: str = "smallcnn"            # robustlayers.models name; smallcnn is the CPU default
    activation: str = "relu"           # zoo activation: relu, or swish (SiLU; SPECTRUM §6)
    dataset: str = "fashion-mnist"     # the embedded dataset (Fashion-MNIST)
    data_dir: str | None = None        # None: the dataset's default folder
    method: str = "pgd-at"             # one of METHODS (more plug in through the registry)
    # --- schedule (the papers' common schedules) ---------------------------------------------
    epochs: int = 10
    batch_size: int = 128              # all three papers with released code use 128
    optimizer: str = "sgd"             # SGD momentum 0.9 in all the papers' code
    lr: float = 0.1                    # base learning rate of the default group
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4         # RAT; EARLY and SPECTRUM use 2e-4 (see presets)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "piecewise"        # stepped per iteration (see optim.build_scheduler)
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    # ^ floats <= 1 are fractions of training (RAT: 50% and 75%); ints are epochs (EARLY: [75])
    gamma: float = 0.1                 # piecewise decay factor (×0.1 in every paper)
    onecycle_peak: float = 0.4         # fraction of training at which one-cycle peaks (Wong et al.)
    # --- threat model ------------------------------------------------------------------------
    norm: str = "linf"
    eps: float | None = None           # None: DatasetInfo.default_eps (ℓ∞ only); "8/255" ok
    alpha: float | None = None         # PGD step; None: default_alpha·eps/default_eps (ℓ∞),
    #                                    eps·15/128 (ℓ2, RAT's 15/255 for 128/255)
    steps: int = 10                    # training PGD steps (PGD-10 in EARLY, CLAT, RAT)
    eval_steps: int = 20               # per-epoch test attack: PGD-20 (RAT, SPECTRUM); 0 = off
    eval_alpha: float | None = None    # None: eval_alpha_ratio·eps when set, else alpha
    alpha_ratio: float | None = None   # rule α = alpha_ratio·eps, used when alpha is None, so
    #                                    that α follows every eps (SPECTRUM: 1/4 = (eps/8)·2/255)
    eval_alpha_ratio: float | None = None  # per-epoch test α = eval_alpha_ratio·eps when
    #                                    eval_alpha is None (SPECTRUM's test PGD: 1/10). The
    #                                    resolved alpha / eval_alpha go to the run's config.json
    eval_size: int | None = 1000       # test images attacked every epoch (fixed subset)
    eval_batch_size: int = 256         # batch size of the per-epoch evaluation
    eval_every: int = 1                # evaluate every N epochs (and always after the last);
    #                                    RAT evaluates every epoch to pick "best"
    # --- the method's own settings (declared by the method, robustlayers.train.settings) ------
    method_args: dict = field(default_factory=dict)
    # ^ e.g. {"beta": 6} for trades, {"code": "A1N2", "cut": "layer2.0.conv1"} for partial-at;
    #   validated against the method's Settings and recorded with every default filled in
    attack_mode: str = "eval"          # training attacks in eval() (EARLY, TRADES, MART,
    #                                    SPECTRUM) or train() mode plus an extra clean forward
    #                                    after each step (robust_overfitting, AWP, RAT code)
    # --- where the weights start -------------------------------------------------------------
    init_from: str | None = None       # RUN_DIR[@best|@last|@epoch-N] or a weights file; None:
    #                                    fresh initialisation. Stage 2 of EARLY, CLAT fine-tuning
    reinit: str | None = None          # selection re-initialised after loading (EARLY stage 2)
    normalize: str | None = None       # input mean/std inside the model: dataset (None), none
    #                                    (raw [0, 1]) or MEAN/STD; for community checkpoints
    # --- layer selections --------------------------------------------------------------------
    param_groups: list[dict] = field(default_factory=list)
    # ^ [{"select": EXPR, "lr": .., "weight_decay": .., "schedule": ..}], first match wins; the
    #   rest of the trainable parameters form the default group (lr, weight_decay, schedule).
    #   "schedule" per group lets RAT_LR keep blocks 3–4 at a constant lr (RAT §3.3).
    freeze: str | None = None          # selection frozen for the whole run (fixed-parameter AT)
    # --- data --------------------------------------------------------------------------------
    train_size: int | None = None      # None: the whole training split
    test_size: int | None = None       # None: the whole test split (clean accuracy)
    val_size: int = 0                  # held out of train for checkpoint selection; 0 = none
    augment: bool = True               # the dataset's default augmentation, on device
    select_by: str = "auto"            # best checkpoint by robust or clean acc; auto: clean
    #                                    for natural training, robust otherwise
    train_clean_metrics: bool = False  # train clean acc for adversarial-only methods costs one
    #                                    extra eval-mode forward per batch: opt-in
    train_eval_size: int | None = 0    # RAT's train robust accuracy (Figs. 2-4): end of each
    #                                    epoch, eval() mode, PGD-`steps` on a fixed subset of N
    #                                    training images; None: the whole split; 0: off
    # --- final numbers ----------------------------------------------------------------------
    final_eval: bool = True            # after training, best and last on the whole test split
    #                                    (test_size), clean and PGD; RAT's gaps need all of it
    final_steps: int | None = None     # PGD steps of the final evaluation; None: eval_steps
    #                                    (EARLY: PGD-100 with alpha = eps/8)
    final_alpha: float | None = None   # None: eval_alpha
    # --- reproducibility and hardware --------------------------------------------------------
    seed: int = 0
    device: str = "auto"               # auto: cuda when available
    amp: bool = True                   # bf16 autocast, CUDA only (CPU always fp32)
    channels_last: bool = True         # CUDA only
    compile: str = "off"               # the training PGD step as one compiled graph (forward,
    #                                    input gradient, projection): off, default,
    #                                    reduce-overhead (CUDA graphs) or max-autotune
    sync_bn: bool = False              # torchrun (several processes): batch-norm statistics of the
    #                                    global batch instead of per process (train.sync_bn)
    # --- run directory -----------------------------------------------------------------------
    checkpoint_every: int = 1          # epochs between epoch-NNNN checkpoints (last always kept)
    keep_checkpoints: int = 2          # epoch checkpoints kept (best is kept separately)
    keep_epochs: list[int] = field(default_factory=list)
    # ^ epochs whose checkpoint is always saved and never pruned (SPECTRUM evaluates a fixed
    #   epoch: ResNet-18 76, WRN-28-10 80); load it as RUN@epoch-76 or load_run_model(RUN, 76)
    out: str | None = None             # run directory; None: a new folder under runs_root
    runs_root: str = "runs"
    quiet: bool = False                # no progress bars
    log: list[str] = field(default_factory=list)  # experiment trackers: tensorboard, mlflow
    log_uri: str | None = None         # MLflow tracking URI (default: a store in the run dir)

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    def validate(self) -> "TrainConfig":
        """Check and normalise every value (:func:`config_checks.check_config`); ConfigError
        naming the key and the valid choices. Returns self."""
        check_config(self)
        return self


def config_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _check_keys(data: dict, where: str) -> None:
    valid = config_keys()
    for key in data:
        if key not in valid and key not in LEGACY_KEYS:
            close = difflib.get_close_matches(str(key), valid, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {where}{hint} "
                              f"(valid keys: {', '.join(valid)})")


def config_from_dict(data: dict, *, base: TrainConfig | None = None,
                     where: str = "config") -> TrainConfig:
    """A validated config: ``base`` (default: TrainConfig()) updated with ``data``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of config keys, got {type(data).__name__}")
    _check_keys(data, where)
    return merge(base, data)


def load_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (.yaml/.yml) or JSON file; keys are checked, values are validated
    when combined with :func:`config_from_dict`/:func:`merge`. A ``preset: NAME`` key puts the
    preset's values under the file's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .json")
    except (ValueError, ImportError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: "
                          f"{err}") from None
    except Exception as err:  # yaml.YAMLError
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys")
    if "preset" in data:
        from robustlayers.train.presets import preset_values
        name = data.pop("preset")
        data = {**preset_values(name), **data}
    _check_keys(data, str(path))
    return data


def merge(*layers: TrainConfig | dict | None) -> TrainConfig:
    """Combine config layers left to right, later ones winning (preset < file < flags).
    Dict layers hold only the keys they set; ``None`` layers are skipped. Keys are checked per
    layer, values once on the combined config, so that e.g. an ℓ2 ``eps`` of a config file is
    read with the ``norm`` a later flag sets. ``method_args`` merge key by key, and are dropped
    when a later layer names another method."""
    merged, legacy = TrainConfig().to_dict(), {}
    for i, layer in enumerate(layers):
        if layer is None:
            continue
        if isinstance(layer, TrainConfig):
            data = layer.to_dict()
        elif isinstance(layer, dict):
            _check_keys(layer, f"config layer {i}")
            data = dict(layer)
        else:
            raise ConfigError(f"config layer {i} must be a TrainConfig or a mapping of config "
                              f"keys, got {type(layer).__name__}")
        legacy.update({k: data.pop(k) for k in list(data) if k in LEGACY_KEYS})
        if "method" in data and canon(data["method"]) != canon(merged["method"]):
            merged["method_args"] = {}
        args = data.pop("method_args", None)
        merged.update(data)
        if args is not None:
            if not isinstance(args, dict):
                raise ConfigError(f"method_args must be a mapping of the method's settings, "
                                  f"got {args!r}")
            merged["method_args"] = {**merged["method_args"], **args}
    for key, value in legacy.items():
        owners, name = LEGACY_KEYS[key]
        if canon(merged["method"]) in owners:
            merged["method_args"].setdefault(name, value)
    return TrainConfig(**merged).validate()


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` (``--set``) → (key, value), the value parsed as YAML (numbers, lists,
    booleans, null); dotted keys address list items/dict entries: ``param_groups.0.lr=0.1``."""
    import yaml
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
    return key.strip(), value


def apply_overrides(data: dict, overrides: list[str], base: TrainConfig | None = None) -> dict:
    """Apply ``--set key=value`` overrides onto the dict ``data`` (dotted keys for nesting:
    ``param_groups.0.lr=0.1``, ``method_args.beta=3``)."""
    base_dict = (base or TrainConfig()).to_dict()
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        _check_keys({parts[0]: None}, "--set")
        if len(parts) == 1:
            data[parts[0]] = value
            continue
        root = data.setdefault(parts[0], json.loads(json.dumps(base_dict.get(parts[0]))))
        target = root
        for depth, part in enumerate(parts[1:], start=1):
            last = depth == len(parts) - 1
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
                    raise ConfigError(f"--set {key}: {'.'.join(parts[:depth])} has "
                                      f"{len(target)} entries; {part!r} is not an index "
                                      f"from 0 to {len(target) - 1}")
                if last:
                    target[int(part)] = value
                else:
                    target = target[int(part)]
            elif isinstance(target, dict):
                if last:
                    target[part] = value
                else:
                    target = target.setdefault(part, {})
            else:
                raise ConfigError(f"--set {key}: {'.'.join(parts[:depth])} is not a list or "
                                  f"mapping")
    return data
