"""What a training method sees of the run: :class:`TrainContext`.

The context owns the model, its layer map, the optimiser and schedule (rebuilt when a method
changes the trainable set or the parameter groups), the threat model, a seeded generator for the
method's own randomness and the record of every layer selection used. Layer-targeted methods
plug in through its helpers without touching the loop:

- ``ctx.freeze(expr)`` / ``ctx.unfreeze(expr)`` / ``ctx.set_trainable(expr)``: change the
  trainable set (EARLY partial AT, CLAT, fixed-parameter AT); the optimiser is rebuilt once
  without frozen parameters, keeping the momentum / Adam state of parameters that stay trainable;
- ``ctx.reinit(expr)``: re-initialise a selection (EARLY stage 2), seeded from the run's seed;
- ``ctx.training_batch(n, seed)``: a seeded batch of training images on demand (CLAT's
  criticality); ``ctx.init_source``: the record of the run or file the weights started from;
- ``ctx.set_param_groups([{"select": .., "lr": .., "weight_decay": .., "schedule": ..}])``:
  per-selection learning rates (RAT_LR);
- ``ctx.select(expr, label=...)``: resolve a selection against the model and record its layer
  names in the run (RAT_WP, CLAT's critical layers);
- ``ctx.pgd(...)``, ``ctx.feature_pgd(selection, ...)`` (CLAT's feature-space inner
  maximisation), ``ctx.next_seed()``: attacks seeded from the per-epoch generator, so a resumed
  run draws exactly the random starts of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import torch
from torch import nn

from robustlayers.attacks import PGD, ThreatModel
from robustlayers.layers import build_layer_map, select
from robustlayers.layers import freeze as freeze_layers
from robustlayers.layers import reinit as reinit_layers
from robustlayers.layers import unfreeze as unfreeze_layers
from robustlayers.train.optim import build_optimizer, build_scheduler


def derive_seed(seed: int, *labels) -> int:
    """A 63-bit seed that is a pure function of ``seed`` and the labels (str or int)."""
    words = [int(seed)] + [zlib.crc32(str(label).encode()) for label in labels]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def resolve_threat(config, info) -> tuple[ThreatModel, float, float]:
    """(threat, alpha, eval_alpha) from the config, filling gaps from the dataset defaults.

    ℓ∞: ε defaults to ``info.default_eps``. α, when not given, is ``alpha_ratio·ε`` when that
    rule is set (SPECTRUM, Sridhar et al., trains with α = (ε/8)·2/255 = ε/4 at *every* ε), else
    ``info.default_alpha·ε/default_eps`` (2/255 at 8/255 on CIFAR). ℓ2 has no dataset default ε
    (an explicit ``eps`` is required; RAT uses 128/255 on CIFAR-10); α then defaults to ε·15/128
    (RAT's 15/255). ``eval_alpha``, when not given, is ``eval_alpha_ratio·ε`` when set
    (SPECTRUM's test PGD-20: ε/10), else α. ``train()`` writes the resolved values into the
    run's config.json.
    """
    eps = config.eps
    if eps is None:
        if config.norm == "l2":
            raise ValueError("norm 'l2' has no dataset default eps; set eps (RAT uses 128/255 "
                             "with alpha 15/255 on CIFAR-10)")
        eps = info.default_eps
    alpha, ratio = config.alpha, getattr(config, "alpha_ratio", None)
    if alpha is None and ratio is not None:
        alpha = ratio * eps
    elif alpha is None:
        alpha = (info.default_alpha * eps / info.default_eps if config.norm == "linf"
                 else eps * 15.0 / 128.0)
    eval_alpha, eval_ratio = config.eval_alpha, getattr(config, "eval_alpha_ratio", None)
    if eval_alpha is None:
        eval_alpha = eval_ratio * eps if eval_ratio is not None else alpha
    return ThreatModel(config.norm, float(eps)), float(alpha), float(eval_alpha)


class TrainContext:
    """Shared state of one training run, handed to every method hook.

    Attributes: ``model``, ``layer_map``, ``config``, ``device``, ``info`` (DatasetInfo),
    ``threat``, ``alpha``, ``eval_alpha``, ``optimizer``, ``scheduler``, ``epoch`` (0-based, the
    epoch being trained), ``step`` (optimizer steps so far), ``steps_per_epoch``, ``generator``
    (on ``device``, reseeded at every epoch start from (seed, epoch)), ``group_spec`` (the
    current parameter-group entries), ``selections`` (label → resolved layer names) and
    ``events`` (freeze / unfreeze / param-group changes with their epoch), ``train_data``
    (the training split, for :meth:`training_batch`), ``init_source`` (where the weights
    started, or None) and ``attack_train_mode`` (training attacks in train() mode).
    """

    def __init__(self, model: nn.Module, config, *, device: torch.device, info,
                 steps_per_epoch: int, layer_map=None) -> None:
        self.model, self.config, self.device, self.info = model, config, torch.device(device), info
        self.layer_map = layer_map if layer_map is not None else build_layer_map(model)
        self.threat, self.alpha, self.eval_alpha = resolve_threat(config, info)
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0
        self.step = 0
        self.generator = torch.Generator(device=self.device)
        self._seeds = torch.Generator()  # CPU: drawing attack seeds never syncs the device
        self.group_spec: list[dict] = [dict(g) for g in config.param_groups]
        self.selections: dict[str, dict] = {}
        self.events: list[dict] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.on_selection = None  # callback(label, resolved) set by the loop
        self.train_data = None    # TensorData of the training split, set by the loop
        self.init_source: dict | None = None
        self.attack_train_mode = getattr(config, "attack_mode", "eval") == "train"

    # --- randomness ---------------------------------------------------------------------------
    def seed_epoch(self, epoch: int) -> None:
        """Reseed ``generator`` for ``epoch`` (called by the loop before on_epoch_start)."""
        self.epoch = epoch
        self.generator.manual_seed(derive_seed(self.config.seed, "method", epoch))
        self._seeds.manual_seed(derive_seed(self.config.seed, "attack-seeds", epoch))

    def next_seed(self) -> int:
        """A fresh int seed for an attack's random start (from a CPU generator reseeded with
        ``generator`` at every epoch start)."""
        return int(torch.randint(0, 2**62, (1,), generator=self._seeds).item())

    def pgd(self, *, steps: int | None = None, alpha: float | None = None, **kwargs) -> PGD:
        """The training PGD (config.steps, α, random start) seeded from ``generator``; its step
        compiled when ``config.compile`` is not "off"."""
        kwargs.setdefault("train_mode", self.attack_train_mode)
        if self.config.compile != "off":
            kwargs.setdefault("compile", self.config.compile)
        return PGD(self.threat, steps=self.config.steps if steps is None else steps,
                   alpha=self.alpha if alpha is None else alpha, random_start=True,
                   seed=self.next_seed(), **kwargs)

    def feature_pgd(self, selection, *, steps: int | None = None, alpha: float | None = None,
                    **kwargs):
        """Feature-space PGD on ``selection`` (CLAT Eq. 5: maximise Σ_i ‖F_i(x+δ) − F_i(x)‖₂)
        with the run's threat model, seeded from ``generator``; CLAT's inner maximisation."""
        from robustlayers.attacks import FeaturePGD
        return FeaturePGD(self.threat, selection,
                          steps=self.config.steps if steps is None else steps,
                          alpha=self.alpha if alpha is None else alpha, seed=self.next_seed(),
                          **kwargs)

    def autocast(self):
        """bf16 autocast on CUDA when ``config.amp``; a no-op on CPU (fp32)."""
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def training_batch(self, n: int, seed: int):
        """``(x, y)``: ``n`` training images (no augmentation) drawn without replacement by a
        generator seeded with ``seed``, on the run's device."""
        data = self.train_data
        if data is None:
            raise RuntimeError("training_batch needs the training split (set by the loop)")
        n = min(int(n), len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(seed)))
        idx = order[:n].to(data.x.device)
        return data.x[idx], data.y[idx]

    # --- selections ---------------------------------------------------------------------------
    def select(self, expr, label: str | None = None, *, allow_empty: bool = False):
        """Resolve ``expr`` against the model's layer map; with ``label`` it is recorded in the
        run (``selections.json`` and ``result.json``). A label is write-once per run: a method
        that re-selects over time (CLAT's critical layers) uses one label per choice, e.g.
        ``f"critical@{epoch}"``. ``allow_empty`` admits a valid expression that selects nothing
        (a cut before the first layer); unknown names stay errors."""
        resolved = select(self.layer_map, expr, allow_empty=allow_empty)
        if label is not None:
            self.record_selection(label, resolved)
        return resolved

    def record_selection(self, label: str, resolved) -> None:
        self.selections[label] = {"expression": resolved.expression,
                                  "names": list(resolved.names)}
        if self.on_selection is not None:
            self.on_selection(label, resolved)

    # --- trainable set and optimiser ----------------------------------------------------------
    def freeze(self, expr, label: str | None = None, *, allow_empty: bool = False):
        """Freeze the selected layers (BN running stats keep updating, EARLY §3.1) and rebuild
        the optimiser without them. Returns the resolved selection."""
        resolved = self.select(expr, label, allow_empty=allow_empty)
        if resolved.names:
            freeze_layers(self.model, resolved)
        self._event("freeze", resolved)
        self.rebuild_optimizer()
        return resolved

    def set_trainable(self, expr, label: str | None = None):
        """Train exactly the selected layers: every other parameter frozen, the selection's
        unfrozen, one optimiser rebuild (CLAT's top-k layers). Returns the resolved selection."""
        resolved = self.select(expr, label)
        chosen = {id(p) for m in resolved.modules(self.model).values()
                  for p in m.parameters(recurse=False)}
        for param in self.model.parameters():
            param.requires_grad_(id(param) in chosen)
        self._event("trainable", resolved)
        self.rebuild_optimizer()
        return resolved

    def reinit(self, expr, label: str | None = None, *, allow_empty: bool = False):
        """Re-initialise the selected layers with ``reset_parameters()`` (BN also resets its
        running statistics; EARLY §3.1), seeded from (run seed, label). Returns the resolved
        selection."""
        resolved = self.select(expr, label, allow_empty=allow_empty)
        if resolved.names:
            seed = derive_seed(self.config.seed, "reinit", label or str(expr)) % 2**31
            reinit_layers(self.model, resolved, seed=seed)
        self._event("reinit", resolved)
        return resolved

    def unfreeze(self, expr, label: str | None = None):
        """Make the selected layers trainable again and rebuild the optimiser."""
        resolved = self.select(expr, label)
        unfreeze_layers(self.model, resolved)
        self._event("unfreeze", resolved)
        self.rebuild_optimizer()
        return resolved

    def set_param_groups(self, groups: list[dict]) -> None:
        """Replace the parameter groups (``[{"select", "lr", "weight_decay", "schedule"}]``,
        first match wins, the rest in the default group) and rebuild the optimiser; the
        resolved layer names of each group are recorded as ``param_groups[i]``."""
        for i, spec in enumerate(groups):
            self.select(spec["select"], label=f"param_groups[{i}]")
        self.group_spec = [dict(g) for g in groups]
        self.events.append({"epoch": self.epoch, "event": "param_groups",
                            "groups": [dict(g) for g in groups]})
        self.rebuild_optimizer()

    def rebuild_optimizer(self, keep_state: bool = True) -> None:
        """A new optimiser over the current trainable parameters and ``group_spec``; the
        schedule continues at the current step. Per-parameter state (momentum buffers, Adam
        moments) carries over for parameters still trained when ``keep_state``."""
        old = self.optimizer
        new = build_optimizer(self.model, self.config, self.layer_map, groups=self.group_spec)
        if old is not None and keep_state:
            for group in new.param_groups:
                for param in group["params"]:
                    if param in old.state:
                        new.state[param] = old.state[param]
        self.optimizer = new
        self.scheduler = build_scheduler(new, self.config, self.steps_per_epoch, self.step)

    def frozen_names(self) -> list[str]:
        """Names of the parameters with ``requires_grad=False``."""
        return [n for n, p in self.model.named_parameters() if not p.requires_grad]

    def set_frozen_names(self, names) -> None:
        """Set ``requires_grad`` from a list of frozen parameter names (resume)."""
        frozen = set(names)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name not in frozen)

    def _event(self, kind: str, resolved) -> None:
        self.events.append({"epoch": self.epoch, "event": kind,
                            "expression": resolved.expression, "names": list(resolved.names)})
