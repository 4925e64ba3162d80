"""Adversarial weight perturbation (Wu et al. 2020), on a layer selection (RAT_WP).

RAT Eqs. 8–10: min_w max_{v = [0,…,v_j,…,0]} Σ_i max_{‖x'_i − x_i‖ ≤ ε} ℓ(f_{w+v}(x'_i), y_i),
with v non-zero only on the weights w_j of the selected layers (setting ``layers``; RAT_WP:
``block:3,4``; default ``all``) and only on weight tensors with more than one dimension (conv and
linear kernels; biases and BN parameters are never perturbed), computed per step as

    v_j ∝ ∇_{w_j} Σ_i ℓ_i                 (Eq. 9: one proxy SGD step, lr ``proxy_lr`` = 0.01,
                                           ascending the adversarial loss at x')
    ‖v_j‖ = γ ‖w_j‖                       (Eq. 10, Frobenius norms per tensor, γ = ``gamma``)

i.e. v_j = γ‖w_j‖ · d_j/‖d_j‖ with d_j = lr·∇_{w_j}ℓ (the proxy's weight change). The proxy pass
runs in train() mode like the released code's proxy model but on *copies* of the buffers, so the
model's BN running statistics see only the real training forward.

Per batch: x' = base.examples(x) at w; v computed at w; w ← w + v (``loss``); the base objective
is evaluated and back-propagated at w + v; ``before_optimizer_step`` restores w exactly (saved
copies, not w + v − v); the optimiser then applies ∇ℓ(w + v) at w. (The released AWP code restores
after ``optimizer.step()``, so its weight-decay term acts on w + v; the difference per step is
lr·wd·v.) For the first ``warmup`` epochs no perturbation is applied. The base loss is PGD-AT
(``base="pgd-at"``) or TRADES (``"trades"`` with its ``beta``; RAT uses γ = 0.005 and 10 warm-up
epochs there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from robustlayers.train.distributed import reduce_batch_gradients
from robustlayers.train.settings import setting

from .base import Method, StepOutput, make_method, register_method

AWP_BASES = ("pgd-at", "trades")


@dataclass
class AWPSettings:
    gamma: float = setting(0.01, "relative weight-perturbation size: ||v_j|| = gamma ||w_j|| "
                                 "(RAT Eq. 10; 0.005 for the TRADES variant)")
    warmup: int = setting(0, "epochs of plain base-method training before AWP starts")
    layers: str = setting("all", "layer selection whose weight tensors (ndim > 1) are perturbed "
                                 "(RAT_WP: block:3,4)")
    base: str = setting("pgd-at", "base adversarial loss", choices=AWP_BASES)
    proxy_lr: float = setting(0.01, "lr of the proxy ascent step (Wu et al.)")
    beta: float = setting(6.0, "TRADES beta when base is trades")

    def check(self) -> None:
        for name in ("gamma", "proxy_lr", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"AWP setting {name} must be >= 0, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"AWP setting warmup must be an integer >= 0, got {self.warmup}")


@register_method("awp")
class AWP(Method):
    """AWP / RAT_WP around a base adversarial method (setting ``base``)."""

    Settings = AWPSettings
    uses_pgd = True

    def __init__(self, config, settings=None) -> None:
        super().__init__(config, settings)
        base_args = {"beta": self.settings.beta} if self.settings.base == "trades" else {}
        self.base = make_method(self.settings.base, config, base_args)
        self.targets: dict[str, torch.nn.Parameter] = {}
        self.last_perturbation: dict[str, torch.Tensor] = {}
        self._saved: dict[str, torch.Tensor] = {}

    def setup(self, ctx) -> None:
        """Resolve ``layers`` (recorded in the run as selection ``awp``) and collect the weight
        tensors with ndim > 1 of those layers."""
        self.base.setup(ctx)
        resolved = ctx.select(self.settings.layers, label="awp")
        self.targets = {}
        for layer, module in resolved.modules(ctx.model).items():
            for pname, param in module.named_parameters(recurse=False):
                if param.ndim > 1:
                    self.targets[f"{layer}.{pname}"] = param
        if not self.targets:
            raise ValueError(f"{self.name} layers {self.settings.layers!r} selects layers "
                             f"{list(resolved.names)[:5]} without any weight tensor of more than "
                             f"one dimension to perturb; select conv or linear layers")

    def on_epoch_start(self, ctx, epoch: int) -> None:
        self.base.on_epoch_start(ctx, epoch)

    def active(self, ctx) -> bool:
        return ctx.epoch >= self.settings.warmup

    # --- Eq. 9–10 -------------------------------------------------------------------------------
    def perturbation(self, ctx, x, x_adv, y) -> dict[str, torch.Tensor]:
        """v for every target tensor: one proxy ascent step on the base objective, each tensor's
        step rescaled to ‖v_j‖ = γ‖w_j‖."""
        model = ctx.model
        params = {n: p.detach() for n, p in model.named_parameters()}
        for name in self.targets:
            params[name] = params[name].clone().requires_grad_(True)
        state = dict(params)
        state.update({n: b.clone() for n, b in model.named_buffers()})

        def proxy(inp):
            return functional_call(model, state, (inp,))

        with torch.enable_grad():
            loss = self.base.objective(ctx, proxy, x, x_adv, y).loss
            grads = torch.autograd.grad(loss, [params[n] for n in self.targets],
                                        allow_unused=True)
        grads = reduce_batch_gradients(ctx, grads)  # data-parallel: the global batch's
        gamma, lr = self.settings.gamma, self.settings.proxy_lr
        out = {}
        for (name, weight), grad in zip(self.targets.items(), grads):
            if grad is None:
                grad = torch.zeros_like(weight)
            step = lr * grad.detach().to(weight.dtype)
            out[name] = gamma * weight.detach().norm() * step / (step.norm() + 1e-20)
        return out

    @torch.no_grad()
    def perturb(self, v: dict[str, torch.Tensor]) -> None:
        """w_j ← w_j + v_j, keeping exact copies of w_j for :meth:`restore`."""
        for name, delta in v.items():
            weight = self.targets[name]
            self._saved[name] = weight.detach().clone()
            weight.add_(delta)

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the saved weights bit for bit."""
        for name, saved in self._saved.items():
            self.targets[name].copy_(saved)
        self._saved = {}

    # --- hooks ----------------------------------------------------------------------------------
    def loss(self, ctx, x, y) -> StepOutput:
        x_adv = self.base.examples(ctx, x, y)
        if not self.active(ctx):
            self.last_perturbation = {}
            return self.base.objective(ctx, ctx.model, x, x_adv, y)
        v = self.perturbation(ctx, x, x_adv, y)
        self.last_perturbation = v
        self.perturb(v)
        return self.base.objective(ctx, ctx.model, x, x_adv, y)

    def before_optimizer_step(self, ctx) -> None:
        self.restore()
        self.base.before_optimizer_step(ctx)

    def on_epoch_end(self, ctx, epoch: int) -> None:
        self.base.on_epoch_end(ctx, epoch)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state.get("base", {}))

    def describe(self) -> dict:
        return {**super().describe(), "base": self.base.describe(),
                "targets": list(self.targets)}
