"""CLAT: criticality-leveraged adversarial training (Gopal et al., "Criticality Leveraged
Adversarial Training", §3.2–3.3, Eqs. 5–6 / 8–9, Algorithm 1).

Fine-tunes a pre-trained model (``init_from``: a PGD-AT, TRADES, MART, AWP or natural run). At
the first epoch and every ``reselect_every`` epochs after (Algorithm 1: ``epoch % 10 == 1`` in
1-based epochs) it computes the layer criticality (Eqs. 2–3, :mod:`robustlayers.criticality_core`)
on ``crit_batch`` training images with δ from the run's PGD against the model output, takes the
top-k layers S and trains exactly S (every other parameter frozen) on

    L = CE(F(x_ce), y) + λ · E_x Σ_{i∈S} ‖F_i(x + δ) − F_i(x)‖₂          (Eq. 9)

where δ maximises the same feature-difference sum by PGD with a random start (Eq. 5, feature
space; ``inner="fgsm-rs"`` takes one step of 1.25ε from the random start: CLAT (Fast)) and
x_ce = x (``ce_input="clean"``, Eq. 9) or x + δ (``"adv"``). The papers give no λ; the default
0.1 and the clean CE input come from a small sweep on Fashion-MNIST (``bench/clat_fmnist.py``:
λ = 0.1 beat 1 and 10; adversarial CE input was within one standard error of clean).

Ablations (CLAT §4.4): ``layers="random"`` (k random candidate layers) or ``"smallest"`` (the k
least critical), ``fixed`` (select once, never again), k. Candidates are the depth layers less
the classifier (``include_classifier`` adds it); ``c1`` chooses C_1 (normalised / literal).
Every selection is recorded as ``critical@EPOCH`` (0-based), with the criticality, the number
and share of trainable parameters (CLAT Table 6) in ``result.json`` under ``method.history``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustlayers.criticality_core import (
    C1_CHOICES, DEPTH_SELECTION, candidate_names, compute_criticality,
)
from robustlayers.train.settings import ConfigError, setting
from robustlayers.train.distributed import broadcast_object

from .base import Method, StepOutput, register_method

# CLAT §4.1: about 5% of the depth layers; the small CNN (6 depth layers) takes one.
DEFAULT_K = {"densenet121": 5, "wrn70_16": 4, "resnet50": 3, "wrn34_10": 2, "vgg19_bn": 1,
             "resnet18": 1, "preact_resnet18": 1, "smallcnn": 1}
FALLBACK_K = 1


@dataclass
class CLATSettings:
    k: int | None = setting(None, "number of layers trained (default per architecture as in "
                                  "CLAT: densenet121 5, wrn70_16 4, resnet50 3, wrn34_10 2, "
                                  "vgg19_bn 1, resnet18 1; smallcnn 1; others 1)")
    lam: float = setting(0.1, "λ, weight of the feature-difference term (CLAT gives none; "
                              "0.1 beat 1 and 10 on the small CNN, bench/clat_fmnist.py)")
    ce_input: str = setting("clean", "input of the CE term: clean (CLAT Eq. 9) or adv (x+δ)",
                            choices=("clean", "adv"))
    reselect_every: int = setting(10, "recompute the critical layers every N epochs (CLAT: 10)")
    crit_batch: int = setting(10, "training images used for criticality (CLAT: as few as 10)")
    layers: str = setting("critical", "which layers: critical (top-k), random, smallest "
                                      "(CLAT ablations)", choices=("critical", "random",
                                                                   "smallest"))
    fixed: bool = setting(False, "select the layers once and never again (CLAT ablation)")
    inner: str = setting("pgd", "inner maximisation: pgd (config steps, α) or fgsm-rs "
                                "(CLAT (Fast): one step of 1.25ε)", choices=("pgd", "fgsm-rs"))
    include_classifier: bool = setting(False, "let the classifier be chosen")
    c1: str = setting("normalised", "C_1: normalised (W_1/W_0) or literal (W_1)",
                      choices=C1_CHOICES)

    def check(self) -> None:
        for name, low in (("k", 1), ("reselect_every", 1), ("crit_batch", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"clat setting {name} must be >= {low}, got {value}")
        if self.lam < 0:
            raise ConfigError(f"clat setting lam (λ) must be >= 0, got {self.lam}")


@register_method("clat")
class CLAT(Method):
    """CLAT (Gopal et al.): train only the k most critical layers, reselected every N epochs,
    on CE + λ·feature difference (Algorithm 1, Eq. 9); start from a run with --init-from."""

    Settings = CLATSettings
    uses_pgd = True

    def __init__(self, config, settings=None) -> None:
        super().__init__(config, settings)
        self.k = self.settings.k or DEFAULT_K.get(config.model, FALLBACK_K)
        self.selected: list[str] = []
        self.history: list[dict] = []

    def setup(self, ctx) -> None:
        """Check k against the candidates before any work."""
        names = ctx.select(DEPTH_SELECTION).names
        self.candidates = candidate_names(ctx.layer_map, names, self.settings.include_classifier)
        if self.k > len(self.candidates):
            raise ConfigError(f"clat k={self.k} but {self.config.model} has only "
                              f"{len(self.candidates)} candidate layers (depth layers"
                              f"{'' if self.settings.include_classifier else ' less the classifier'})")

    def due(self, epoch: int) -> bool:
        """Reselect at the first epoch and every ``reselect_every`` after (never if fixed)."""
        if not self.selected:
            return True
        return not self.settings.fixed and epoch % self.settings.reselect_every == 0

    def on_epoch_start(self, ctx, epoch: int) -> None:
        if not self.due(epoch):
            return
        # data-parallel: every rank computes it (same seeds drawn), rank 0's choice is used
        chosen, record = broadcast_object(self.choose(ctx, epoch))
        self.selected = list(ctx.set_trainable(chosen, label=f"critical@{epoch}").names)
        total = sum(p.numel() for p in ctx.model.parameters())
        trainable = sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
        self.history.append({"epoch": epoch, "layers": self.selected, **record,
                             "trainable_params": trainable, "total_params": total,
                             "trainable_share": trainable / total})

    def choose(self, ctx, epoch: int) -> tuple[list[str], dict]:
        """The k layers of this epoch and what chose them (criticality, or the random draw)."""
        from robustlayers.train.context import derive_seed

        s = self.settings
        if s.layers == "random":
            g = torch.Generator().manual_seed(derive_seed(self.config.seed, "clat-random", epoch))
            pick = torch.randperm(len(self.candidates), generator=g)[:self.k].sort().values
            return [self.candidates[i] for i in pick.tolist()], {"rule": "random"}
        x, y = ctx.training_batch(s.crit_batch, derive_seed(self.config.seed, "clat-crit", epoch))
        x, y = x.to(ctx.device), y.to(ctx.device)
        x_adv = ctx.pgd(train_mode=False)(ctx.model, x, y)  # against the output, eval() mode
        names = ctx.select(DEPTH_SELECTION).names
        core = compute_criticality(ctx.model, ctx.layer_map, names, x, x_adv, c1=s.c1,
                                   include_classifier=s.include_classifier)
        chosen = core.top_k(self.k, largest=s.layers == "critical")
        record = {"rule": s.layers, "criticality": dict(zip(core.layers,
                                                            core.criticality.tolist())),
                  **{key: v for key, v in core.choices.items() if key != "candidates"}}
        return chosen, record

    def inner_attack(self, ctx):
        """Feature-space PGD on S (Eq. 5), or one FGSM-RS step of 1.25ε (CLAT (Fast))."""
        kw = {"train_mode": ctx.attack_train_mode}
        if self.settings.inner == "fgsm-rs":
            return ctx.feature_pgd(self.selected, steps=1, alpha=1.25 * ctx.threat.eps, **kw)
        return ctx.feature_pgd(self.selected, **kw)

    def loss(self, ctx, x, y) -> StepOutput:
        x_adv = self.inner_attack(ctx)(ctx.model, x, None).detach()
        return self.objective(ctx.model, self.selected, x, x_adv, y)

    def objective(self, model, names, x, x_adv, y) -> StepOutput:
        """CLAT Eq. 9: CE(F(x_ce), y) + λ · mean_x Σ_{i∈S} ‖F_i(x_adv) − F_i(x)‖₂."""
        from robustlayers.attacks.feature_pgd import feature_l2
        from robustlayers.layers import FeatureCapture

        with FeatureCapture(model, list(names), detach=False) as cap:
            logits_clean = model(x)
            clean = dict(cap.features)
        with FeatureCapture(model, list(names), detach=False) as cap:
            logits_adv = model(x_adv)
            adv = dict(cap.features)
        penalty = feature_l2(adv, clean).mean()
        logits_ce = logits_clean if self.settings.ce_input == "clean" else logits_adv
        ce = F.cross_entropy(logits_ce, y)
        return StepOutput(ce + self.settings.lam * penalty, logits_clean=logits_clean,
                          logits_adv=logits_adv, x_adv=x_adv,
                          extra={"ce": ce.detach(), "feature_l2": penalty.detach()})

    def state_dict(self) -> dict:
        return {"selected": list(self.selected), "history": copy.deepcopy(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.selected = list(state.get("selected", []))
        self.history = copy.deepcopy(state.get("history", []))

    def describe(self) -> dict:
        return {**super().describe(), "k_used": self.k, "history": self.history}
