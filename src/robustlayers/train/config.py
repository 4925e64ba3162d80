"""Every training hyper-parameter in one place (:class:`TrainConfig`), with why it has its default.

Configs come from three sources that combine in this order, later winning: a preset
(:func:`preset`), a config file (:func:`load_config_file`, YAML or JSON) and command-line flags
(:func:`merge`). Validation (:meth:`TrainConfig.validate`) turns an unknown key or an invalid value
into a ``ValueError`` that names the valid choices (with difflib close matches for keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from robustlayers.devices import DEVICE_CHOICES

METHODS = ("natural", "pgd-at", "trades", "mart", "awp", "fast-at")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("piecewise", "cosine", "onecycle", "constant")
NORMS = ("linf", "l2")
AWP_BASES = ("pgd-at", "trades")
SELECT_BY = ("auto", "robust", "clean")


@dataclass
class TrainConfig:
    # --- what is trained on what -----------------------------------------------------------
    model: str = "smallcnn"            # robustlayers.models name; smallcnn is the CPU default
    activation: str = "relu"           # zoo activation: relu, or swish (SiLU; SPECTRUM §6)
    dataset: str = "fashion-mnist"     # the embedded dataset (SPEC §8)
    data_dir: str | None = None        # None: the dataset's default folder
    method: str = "pgd-at"             # one of METHODS (more plug in through the registry)
    # --- schedule (SPEC §5 "Common schedules") -----------------------------------------------
    epochs: int = 10
    batch_size: int = 128              # all three papers with released code use 128
    optimizer: str = "sgd"             # SGD momentum 0.9 everywhere in SPEC §9
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
    eval_alpha: float | None = None    # None: alpha
    eval_size: int | None = 1000       # test images attacked every epoch (fixed subset)
    eval_batch_size: int = 256         # batch size of the per-epoch evaluation
    eval_every: int = 1                # evaluate every N epochs (and always after the last);
    #                                    RAT evaluates every epoch to pick "best"
    # --- method parameters -------------------------------------------------------------------
    trades_beta: float = 6.0           # TRADES / RAT_WP-TRADES β
    mart_beta: float = 6.0             # MART λ (Wang et al. use 5–6 on CIFAR-10)
    awp_gamma: float = 0.01            # ‖v_j‖ = γ‖w_j‖ (RAT Eq. 10; 0.005 for the TRADES variant)
    awp_warmup: int = 0                # epochs of plain base-method training before AWP starts
    awp_select: str = "all"            # layers whose weight tensors (ndim > 1) are perturbed
    awp_base: str = "pgd-at"           # base loss of AWP: pgd-at or trades
    awp_proxy_lr: float = 0.01         # lr of the proxy ascent step (Wu et al.; RAT §9)
    fast_alpha_scale: float = 1.25     # FGSM-RS step α = 1.25ε (Wong et al.)
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
    #                                    for natural training, robust otherwise (SPEC §5)
    train_clean_metrics: bool = True   # train clean acc for adversarial-only methods costs one
    #                                    extra eval-mode forward per batch; off for speed
    # --- reproducibility and hardware --------------------------------------------------------
    seed: int = 0
    device: str = "auto"               # auto: cuda when available
    amp: bool = True                   # bf16 autocast, CUDA only (CPU always fp32)
    channels_last: bool = True         # CUDA only
    # --- run directory -----------------------------------------------------------------------
    checkpoint_every: int = 1          # epochs between epoch-NNNN checkpoints (last always kept)
    keep_checkpoints: int = 2          # epoch checkpoints kept (best is kept separately)
    out: str | None = None             # run directory; None: a new folder under runs_root
    runs_root: str = "runs"
    quiet: bool = False                # no progress bars

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    def validate(self) -> "TrainConfig":
        """Check every value; raise ValueError naming the valid choices. Returns self."""
        from robustlayers.attacks import parse_eps
        from robustlayers.data import get_dataset_info
        from robustlayers.models import model_info
        from robustlayers.train.methods import list_methods

        model_info(self.model)          # unknown names raise with the zoo's valid choices
        get_dataset_info(self.dataset)  # likewise for datasets
        self.method = _canon(self.method)
        _choice("method", self.method, list_methods())
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("norm", self.norm, NORMS)
        _choice("device", self.device, DEVICE_CHOICES)
        self.awp_base = _canon(self.awp_base)
        _choice("awp_base", self.awp_base, AWP_BASES)
        _choice("select_by", self.select_by, SELECT_BY)
        self.activation = _activation(self.activation)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "checkpoint_every",
                     "keep_checkpoints"):
            _positive_int(name, getattr(self, name))
        for name in ("steps", "eval_steps", "awp_warmup", "val_size"):
            _positive_int(name, getattr(self, name), allow_zero=True)
        for name in ("train_size", "test_size", "eval_size"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.select_by == "robust" and self.eval_steps == 0:
            raise ValueError("select_by 'robust' needs the per-epoch robust evaluation, but "
                             "eval_steps is 0 (no test_robust_acc is ever measured, so no 'best' "
                             "checkpoint would be saved); set eval_steps >= 1 or choose "
                             "select_by from the valid choices with eval_steps=0: clean, auto")
        for name in ("lr", "momentum", "weight_decay", "gamma", "trades_beta", "mart_beta",
                     "awp_gamma", "awp_proxy_lr", "fast_alpha_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("eps", "alpha", "eval_alpha"):
            value = getattr(self, name)
            if value is None:
                continue
            # numbers too: an ℓ∞ budget over 1 (``eps=8``) is a forgotten /255, refused with a
            # hint; strings such as "8/255" (YAML files, --set, CLI flags) are parsed
            try:
                value = parse_eps(value, norm=self.norm)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
            if value <= 0:
                raise ValueError(f"{name} must be a number > 0 or None, "
                                 f"got {getattr(self, name)!r}")
            setattr(self, name, value)
        if not 0 < self.onecycle_peak < 1:
            raise ValueError(f"onecycle_peak must be in (0, 1), got {self.onecycle_peak!r}")
        if self.method in ("pgd-at", "trades", "mart", "awp") and self.steps < 1:
            raise ValueError(f"method {self.method!r} needs steps >= 1, got {self.steps}")
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones must be a list of epochs or fractions, "
                             f"got {self.milestones!r}")
        self.milestones = [float(m) if isinstance(m, float) else int(m) for m in self.milestones]
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be > 0, got {self.milestones}")
        for i, group in enumerate(self.param_groups):
            if not isinstance(group, dict) or "select" not in group:
                raise ValueError(f"param_groups[{i}] must be a dict with a 'select' key, "
                                 f"got {group!r}")
            unknown = set(group) - {"select", "lr", "weight_decay", "schedule"}
            if unknown:
                raise ValueError(f"param_groups[{i}] has unknown keys {sorted(unknown)}; valid "
                                 f"keys: select, lr, weight_decay, schedule")
            if "schedule" in group:
                _choice(f"param_groups[{i}].schedule", group["schedule"], SCHEDULES)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        return self


def _activation(name: Any) -> str:
    """The activation name in lower case, checked against the zoo's activations (ValueError
    naming the valid choices)."""
    from robustlayers.models import make_activation

    if not isinstance(name, str):
        raise ValueError(f"activation must be a string such as 'relu' or 'swish', got {name!r}")
    name = name.strip().lower()
    make_activation(name)  # unknown names raise with the zoo's valid choices
    return name


def _canon(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def _choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"invalid {name} {value!r}{hint}; valid choices: {', '.join(choices)}")


def _positive_int(name: str, value: Any, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def config_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _check_keys(data: dict, where: str) -> None:
    valid = config_keys()
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown config key {key!r} in {where}{hint} "
                             f"(valid keys: {', '.join(valid)})")


def config_from_dict(data: dict, *, base: TrainConfig | None = None,
                     where: str = "config") -> TrainConfig:
    """A validated config: ``base`` (default: TrainConfig()) updated with ``data``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping of config keys, got {type(data).__name__}")
    _check_keys(data, where)
    merged = (base or TrainConfig()).to_dict()
    merged.update(data)
    return TrainConfig(**merged).validate()


def load_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (.yaml/.yml) or JSON file; keys are checked, values are validated
    when combined with :func:`config_from_dict`/:func:`merge`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml
        data = yaml.safe_load(text) or {}
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file {path} must end in .yaml, .yml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of config keys")
    _check_keys(data, str(path))
    return data


def merge(*layers: TrainConfig | dict | None) -> TrainConfig:
    """Combine config layers left to right, later ones winning (preset < file < flags).
    Dict layers hold only the keys they set; ``None`` layers are skipped. Keys are checked per
    layer, values once on the combined config, so that e.g. an ℓ2 ``eps`` of a config file is
    read with the ``norm`` a later flag sets."""
    merged = TrainConfig().to_dict()
    for i, layer in enumerate(layers):
        if layer is None:
            continue
        if isinstance(layer, TrainConfig):
            data = layer.to_dict()
        elif isinstance(layer, dict):
            _check_keys(layer, f"config layer {i}")
            data = layer
        else:
            raise ValueError(f"config layer {i} must be a TrainConfig or a mapping of config "
                             f"keys, got {type(layer).__name__}")
        merged.update(data)
    return TrainConfig(**merged).validate()


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` (``--set``) → (key, value), the value parsed as YAML (numbers, lists,
    booleans, null); dotted keys address list items/dict entries: ``param_groups.0.lr=0.1``."""
    import yaml
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {key}: cannot parse value {raw!r}: {err}") from err
    return key.strip(), value


def apply_overrides(data: dict, overrides: list[str], base: TrainConfig | None = None) -> dict:
    """Apply ``--set key=value`` overrides onto the dict ``data`` (dotted keys for nesting)."""
    base_dict = (base or TrainConfig()).to_dict()
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        _check_keys({parts[0]: None}, "--set")
        if len(parts) == 1:
            data[parts[0]] = value
            continue
        root = data.setdefault(parts[0], json.loads(json.dumps(base_dict[parts[0]])))
        target = root
        for part in parts[1:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if isinstance(target, list):
            target[int(last)] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            raise ValueError(f"--set {key}: {parts[0]} is not a list or mapping")
    return data


# --- presets (SPEC §9 schedules) -----------------------------------------------------------

def _rat_cifar10() -> dict:
    """RAT AT baseline (SPEC §9): PreAct ResNet-18, 200 epochs, batch 128, SGD 0.1 momentum 0.9,
    wd 5e-4, ×0.1 at 50% and 75%, PGD-10 α=2/255 ε=8/255 train, PGD-20 test, best by PGD-20."""
    return dict(model="preact_resnet18", dataset="cifar10", method="pgd-at", epochs=200,
                batch_size=128, lr=0.1, weight_decay=5e-4, schedule="piecewise",
                milestones=[0.5, 0.75], eps=8 / 255, alpha=2 / 255, steps=10, eval_steps=20)


def _rat_wp_cifar10() -> dict:
    """RAT_WP (RAT §3.3, Eqs. 8–10): AWP on the weights of blocks 3–4 only, γ=0.01."""
    return dict(_rat_cifar10(), method="awp", awp_gamma=0.01, awp_select="block:3,4")


def _rat_lr_cifar10() -> dict:
    """RAT_LR (RAT §3.3): blocks 3–4 keep lr 0.1 (constant) while the rest decays."""
    return dict(_rat_cifar10(), param_groups=[{"select": "block:3,4", "lr": 0.1,
                                               "schedule": "constant"}])


def _early_resnet() -> dict:
    """EARLY ResNet schedule (SPEC §9): SGD 0.1, wd 2e-4, batch 128, 80 epochs, one ×0.1 drop at
    epoch 75, PGD-10 ε=8/255 α=2/255, seed 2022."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=80, lr=0.1,
                weight_decay=2e-4, schedule="piecewise", milestones=[75], eps=8 / 255,
                alpha=2 / 255, steps=10, seed=2022)


def _spectrum_resnet() -> dict:
    """SPECTRUM PGD-AT (SPEC §9): SGD 0.1, wd 2e-4, decays at 75 and 90, 100 epochs, batch 256,
    α = (2/255)·ε/8 (the ℓ∞ default rule), test PGD-20 with α = ε/10."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=100, batch_size=256,
                lr=0.1, weight_decay=2e-4, schedule="piecewise", milestones=[75, 90],
                eps=8 / 255, alpha=2 / 255, eval_alpha=0.8 / 255, steps=10, eval_steps=20)


def _clat_pretrain() -> dict:
    """CLAT's PGD-AT starting point: cosine schedule (SPEC §5), ε=0.03, α=0.007, PGD-10."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=100,
                schedule="cosine", eps=0.03, alpha=0.007, steps=10)


def _fmnist_quick() -> dict:
    """A few-minute CPU run on the embedded Fashion-MNIST: small CNN, 5 epochs on 10k images,
    PGD-5 ε=0.1 α=0.025, eval PGD-20 on 500 test images."""
    return dict(model="smallcnn", dataset="fashion-mnist", method="pgd-at", epochs=5,
                train_size=10000, lr=0.05, weight_decay=5e-4, schedule="cosine", eps=0.1,
                alpha=0.025, steps=5, eval_steps=20, eval_size=500)


PRESETS = {
    "rat-cifar10": _rat_cifar10,
    "rat-wp-cifar10": _rat_wp_cifar10,
    "rat-lr-cifar10": _rat_lr_cifar10,
    "early-resnet": _early_resnet,
    "spectrum-resnet": _spectrum_resnet,
    "clat-pretrain": _clat_pretrain,
    "fmnist-quick": _fmnist_quick,
}


def list_presets() -> list[str]:
    return list(PRESETS)


def preset(name: str, **overrides) -> TrainConfig:
    """A validated config from a named preset, with keyword overrides."""
    if name not in PRESETS:
        _choice("preset", name, list(PRESETS))
    return config_from_dict(dict(PRESETS[name](), **overrides), where=f"preset {name!r}")
