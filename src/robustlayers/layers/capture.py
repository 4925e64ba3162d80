"""Capture what selected modules compute, with forward hooks that are always removed.

Used by PSR (EARLY Eq. 2), criticality (CLAT Eqs. 2–3), feature-space PGD (CLAT Eq. 5) and the
pre-activation statistics (SPECTRUM §6). Hooks are registered inside ``try`` and removed in
``finally``; captured tensors keep their graph unless ``detach=True``.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from robustlayers.layers.compiled import unwrap
from robustlayers.layers.selection import ResolvedSelection, SelectionError, closest, select

WHAT = ("output", "input")


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """Any module of ``model`` by dotted path (layers, containers, activations); an unknown path
    is an error listing the closest valid paths."""
    modules = dict(unwrap(model).named_modules())
    if name in modules and name:
        return modules[name]
    raise SelectionError(f"model has no module {name!r}; closest: "
                         f"{closest(name, [n for n in modules if n])}")


def _module_names(model: nn.Module, selection) -> list[str]:
    """Names to hook: a selection of layers, or explicit module paths (e.g. activation modules,
    which are not layers because they have no parameters)."""
    if isinstance(selection, (str, ResolvedSelection)) or not isinstance(selection, Iterable):
        return list(select(model, selection).names)
    names = list(selection)
    for name in names:
        resolve_module(model, name)
    return names


class FeatureCapture:
    """Context manager recording the output (or first input) of each named module on every
    forward pass: ``with FeatureCapture(model, "kind:conv") as cap: model(x); cap.features``.

    A module called several times in one forward keeps its last call's value.
    """

    def __init__(self, model: nn.Module, selection, *, what: str = "output", detach: bool = False):
        if what not in WHAT:
            raise ValueError(f"what={what!r} is not valid; choose one of {', '.join(WHAT)}")
        self.model = model
        self.names = _module_names(model, selection)
        self.what = what
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def keep(value):
            value = value[0] if isinstance(value, (tuple, list)) else value
            self.features[name] = value.detach() if self.detach else value

        if self.what == "output":
            return lambda _m, _inputs, output: keep(output)
        return lambda _m, inputs: keep(inputs)

    def __enter__(self) -> "FeatureCapture":
        modules = dict(unwrap(self.model).named_modules())
        try:
            for name in self.names:
                module = modules[name]
                if self.what == "output":
                    handle = module.register_forward_hook(self._hook(name))
                else:
                    handle = module.register_forward_pre_hook(self._hook(name))
                self._handles.append(handle)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.remove()

    def ordered(self) -> list[torch.Tensor]:
        """Captured tensors in the order of ``names``; an error if a module did not run."""
        missing = [n for n in self.names if n not in self.features]
        if missing:
            raise RuntimeError(f"modules did not run in the forward pass: {missing[:5]}")
        return [self.features[n] for n in self.names]


def capture(model: nn.Module, selection, x: torch.Tensor, *, what: str = "output",
            detach: bool = True) -> dict[str, torch.Tensor]:
    """One forward pass of ``x``; returns {module name: captured tensor} in selection order."""
    with FeatureCapture(model, selection, what=what, detach=detach) as cap:
        run = unwrap(model)  # hooks added after torch.compile are not seen by the compiled code
        if detach:
            with torch.no_grad():
                run(x)
        else:
            run(x)
    cap.ordered()
    return {name: cap.features[name] for name in cap.names}
