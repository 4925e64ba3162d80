"""Feature-space PGD: the inner maximisation of CLAT (CLAT Eq. 5 / preprint Eqs. 5, 8).

    δ* = argmax_{‖δ‖≤ε} Σ_{i∈S} ‖F_i(x+δ) − F_i(x)‖₂

with F_i the output of layer i of a selection S, the ℓ2 norm taken per example over the flattened
feature, a single δ shared by all layers, projected gradient ascent with random start (CLAT §3.2).
Features come from ``robustlayers.layers.FeatureCapture``; clean features are computed once,
without grad. The same sum (:func:`feature_l2`) is the CLAT training penalty.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import GradientAttack, attack_mode, check_inputs, check_model
from .threat import ThreatModel

Objective = Callable[[dict, dict], torch.Tensor]


def feature_l2(feats_adv: dict, feats_clean: dict) -> torch.Tensor:
    """Σ_i ‖F_i(x_adv) − F_i(x)‖₂ per example (CLAT Eq. 5), shape (N,). Differentiable."""
    total = None
    for name, clean in feats_clean.items():
        d = (feats_adv[name] - clean).flatten(1).norm(dim=1)
        total = d if total is None else total + d
    if total is None:
        raise ValueError("feature objective got no features (empty selection)")
    return total


def resolve_layer_names(model, selection, input_shape=None) -> tuple[str, ...]:
    """Names to attack: a layer selection (expression, Selection, ResolvedSelection) resolved with
    ``robustlayers.layers.select``, or an explicit list of module paths (checked with
    ``resolve_module``, so non-layer modules such as activations are allowed, as in
    ``FeatureCapture``). Unknown names raise ``SelectionError`` (a ValueError)."""
    from robustlayers.layers import ResolvedSelection, Selection, resolve_module, select

    if isinstance(selection, (list, tuple)) and all(isinstance(n, str) for n in selection):
        names = tuple(selection)
        for n in names:
            resolve_module(model, n)
    elif isinstance(selection, (str, Selection, ResolvedSelection)):
        names = tuple(select(model, selection, input_shape=input_shape).names)
    else:
        raise ValueError(f"selection must be an expression string, Selection, ResolvedSelection "
                         f"or list of module names, got {selection!r}")
    if not names:
        raise ValueError(f"selection {selection!r} matched no layers")
    return names


def _features(model, names, x, *, grad: bool, cap=None) -> dict:
    """Outputs of the modules ``names`` on one forward of ``x``; ``cap``: an open
    ``FeatureCapture`` on those modules (hooks registered once per attack call), else one is
    opened for this forward."""
    from robustlayers.layers import FeatureCapture

    if cap is None:
        with FeatureCapture(model, list(names), what="output", detach=False) as own:
            return _features(model, names, x, grad=grad, cap=own)
    cap.features.clear()
    with torch.set_grad_enabled(grad):
        model(x)
    feats = dict(cap.features)
    cap.features.clear()
    missing = [n for n in names if n not in feats]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass, so they have no "
                         f"features to attack")
    return {n: feats[n] for n in names}


def _evaluate(objective, feats_adv, feats_clean, n) -> torch.Tensor:
    value = objective(feats_adv, feats_clean)
    if not isinstance(value, torch.Tensor) or value.shape != (n,):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"feature objective must return a per-example tensor of shape ({n},), "
                         f"got {shape}")
    return value


class FeaturePGD(GradientAttack):
    """PGD ascending Σ_{i∈S} ‖F_i(x+δ) − F_i(x)‖₂ (CLAT Eq. 5), or ``objective(adv, clean)``.

    ``selection``: expression string, Selection, ResolvedSelection or list of layer names,
    resolved per call with ``robustlayers.layers.select``. ``alpha`` defaults to 2.5·ε/steps
    (CLAT uses ε=0.03, α=0.007, 10 steps). Labels are not used (``y`` may be None).
    With the default objective ``random_start`` must be True: at δ=0 the ℓ2 norm's gradient is 0.
    """

    name = "feature-pgd"
    labels_required = False

    def __init__(self, threat: ThreatModel | None = None, selection=None, *, eps=None,
                 norm=None, steps: int = 10, alpha=None, random_start: bool = True,
                 seed: int = 0, objective: Objective | None = None, train_mode: bool = False,
                 fold_bn="auto", channels_last="auto"):
        super().__init__(threat, eps=eps, norm=norm, steps=steps, alpha=alpha,
                         random_start=random_start, seed=seed, train_mode=train_mode,
                         fold_bn=fold_bn, channels_last=channels_last)
        if selection is None:
            raise ValueError("FeaturePGD needs selection=<layer selection> (an expression such "
                             "as 'kind:conv', a Selection or a list of module names)")
        if objective is not None and not callable(objective):
            raise ValueError(f"objective must be callable(feats_adv, feats_clean), got {objective!r}")
        if objective is None and not self.random_start:
            raise ValueError("FeaturePGD with the default feature-l2 objective needs "
                             "random_start=True: the gradient of ‖F(x+δ)−F(x)‖₂ at δ=0 is zero")
        self.selection = selection
        self.objective_fn = objective or feature_l2
        self.loss = "feature-l2" if objective is None else getattr(objective, "__name__", "custom")
        if self.alpha is None:
            self.alpha = 2.5 * self.threat.eps / self.steps

    def config(self) -> dict:
        sel = self.selection
        sel = list(sel) if isinstance(sel, (list, tuple)) else str(getattr(sel, "expression", sel))
        return {**super().config(), "selection": sel}

    def _keep_unfolded(self, model, x):
        """The attacked layers: resolved once per call; a captured conv is never folded (its
        output would become its batch-norm's), a captured batch-norm may be (its path then holds
        an identity whose output is the batch-norm's)."""
        self._names = resolve_layer_names(model, self.selection, tuple(x.shape[1:]))
        return self._names

    def _perturb(self, model, x, y, generator):
        from robustlayers.layers import FeatureCapture
        from robustlayers.layers.compiled import unwrap

        names, model = self._names, unwrap(model)  # compiled code would not see the hooks
        with FeatureCapture(model, list(names), what="output", detach=False) as cap:
            clean = {k: v.detach() for k, v in
                     _features(model, names, x, grad=False, cap=cap).items()}
            delta = self.start(x, generator)

            def fn(d):
                return _evaluate(self.objective_fn,
                                 _features(model, names, x + d, grad=True, cap=cap), clean, len(x))

            for _ in range(self.steps):
                grad = self.gradient(fn, delta)
                self._note_zero_grads(grad)
                delta = self.step(x, delta, grad, self.alpha).detach()
        self.last_report["layers"] = list(names)
        return x + delta


def feature_distance(model, selection, x: torch.Tensor, x_adv: torch.Tensor, *,
                     objective: Objective | None = None) -> torch.Tensor:
    """Per-example Σ_{i∈S} ‖F_i(x_adv) − F_i(x)‖₂ (or ``objective``), model in eval(), no grad."""
    check_model(model)
    x, _ = check_inputs(x, None, labels_required=False)
    x_adv, _ = check_inputs(x_adv, None, labels_required=False)
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv shapes differ: {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    names = resolve_layer_names(model, selection, tuple(x.shape[1:]))
    from robustlayers.layers.compiled import unwrap

    with attack_mode(model), torch.no_grad():
        clean = _features(unwrap(model), names, x, grad=False)
        adv = _features(unwrap(model), names, x_adv, grad=False)
        return _evaluate(objective or feature_l2, adv, clean, len(x))
