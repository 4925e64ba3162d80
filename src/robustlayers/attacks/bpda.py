"""BPDA: Backward Pass Differentiable Approximation (Athalye et al. 2018; SPECTRUM §4, §9).

A non-differentiable part g (SPECTRUM's quantiser q(x) = ⌊βx⌋/β has zero gradient almost
everywhere) is used as is in the forward pass and replaced by the identity in the backward pass.
The BPDA attack is an ordinary gradient attack (PGD-20 in SPECTRUM, with budget δ and its test
PGD's step α = δ/10, random start) run on the model with g made straight-through. Three ways to get there:

* ``straight_through(fn)`` - a function: forward fn(x), backward identity;
* ``BPDAWrapper(module)`` - the same as an ``nn.Module``, to build a model variant;
* ``BPDA(attack, modules)`` - wraps any attack: during the attack the named modules of the
  *evaluated* model become straight-through (forward hooks), so the same model object is both
  attacked (BPDA gradients) and evaluated (true forward). Nothing is changed after the call.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .base import Attack, check_model


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn):
        out = fn(x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"straight-through needs fn to keep the shape {tuple(x.shape)}, "
                             f"got {got}")
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None


def straight_through(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """Return g with g(x) = fn(x) in the forward pass and ∂g/∂x = I in the backward pass."""
    if not callable(fn):
        raise ValueError(f"straight_through needs a callable, got {type(fn).__name__}")

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(x, fn)

    wrapped.__wrapped__ = fn
    return wrapped


class BPDAWrapper(nn.Module):
    """``nn.Module`` whose forward is ``module(x)`` and whose backward is the identity."""

    def __init__(self, module: nn.Module):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"BPDAWrapper wraps an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x):
        return _StraightThrough.apply(x, self.module)


def _straight_through_hook(module, inputs, output):
    x = inputs[0]
    if not isinstance(output, torch.Tensor) or output.shape != x.shape:
        raise ValueError(f"BPDA module {type(module).__name__} must keep its input shape "
                         f"{tuple(x.shape)} to be replaced by the identity in the backward pass")
    return x + (output - x).detach()  # value = output, gradient = identity


class BPDA(Attack):
    """Run ``attack`` with the modules named in ``modules`` straight-through (SPECTRUM §4).

    ``modules``: a module path or list of paths (any submodule, e.g. the quantiser inserted after
    ``layer2``), resolved with ``robustlayers.layers.resolve_module`` (closest-name errors).
    Example: ``BPDA(PGD(ThreatModel("linf", 8/255), steps=20), ["quant"])(model, x, y)``.
    """

    name = "bpda"

    def __init__(self, attack: Attack, modules: str | Iterable[str]):
        if not isinstance(attack, Attack):
            raise ValueError(f"BPDA wraps an Attack, got {type(attack).__name__}")
        names = [modules] if isinstance(modules, str) else list(modules)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"modules must be one or more module paths, got {modules!r}")
        self.attack, self.modules = attack, tuple(names)
        self.threat, self.seed = attack.threat, attack.seed
        self.last_report = {}

    def config(self) -> dict:
        inner = self.attack.config()
        return {**inner, "name": f"bpda-{inner['name']}", "bpda_modules": list(self.modules)}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed=None):
        from robustlayers.layers import resolve_module  # lazy: sibling package

        check_model(model)
        targets = [resolve_module(model, n) for n in self.modules]
        handles = [m.register_forward_hook(_straight_through_hook) for m in targets]
        try:
            return self.attack(model, x, y, seed=seed)
        finally:
            for h in handles:
                h.remove()
            self.last_report = dict(self.attack.last_report)
