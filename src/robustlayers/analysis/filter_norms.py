"""Convolution-filter norms per layer (SPECTRUM §5).

For conv layer i with weight W of shape (out, in/groups, k_h, k_w), every (out, in) slice is one
k×k kernel w. SPECTRUM §5 plots E_{w∈conv_i} ‖w‖∞ (Fig. 2) and max_{w∈conv_i} ‖w‖∞ (App. D):
‖w‖∞ = max |w_jk| over the kernel's entries (SPECTRUM's released code: "max |w| per k×k
kernel") — the ℓ∞ Lipschitz sensitivity the paper argues with. ``norm="2"`` gives the
Frobenius (ℓ2) norm of each kernel instead. SPECTRUM finds the first two conv layers far above
the rest in robust ResNets. As in SPECTRUM's figures, residual shortcut projections (the 1×1
convs a model marks with ``robustlayers.layers.mark_shortcut``) are left out unless
``include_shortcuts=True``; the result records the choice and the layers left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robustlayers.analysis._common import jsonable, resolve_layers, round_sig, selection_record

DEFAULT_SELECTION = "kind:conv"


def kernel_norms(weight: torch.Tensor, norm: str = "inf") -> torch.Tensor:
    """Norm of every (out, in) kernel of a conv weight (out, in, *kernel) -> (out*in,)."""
    if weight.dim() < 3:
        raise ValueError(f"expected a conv weight (out, in, *kernel), got shape "
                         f"{tuple(weight.shape)}")
    kernels = weight.detach().double().flatten(2).flatten(0, 1)
    key = str(norm).lower()
    if key in ("inf", "linf"):
        return kernels.abs().amax(dim=1)
    if key in ("2", "l2"):
        return torch.linalg.vector_norm(kernels, ord=2, dim=1)
    raise ValueError(f"unknown filter norm {norm!r}; valid norms: inf, 2")


@dataclass
class FilterNormResult:
    """Mean and max kernel norm per selected conv layer of one model (SPECTRUM §5)."""

    layers: tuple[str, ...]
    mean: np.ndarray
    max: np.ndarray
    n_kernels: tuple[int, ...]
    kernel_size: tuple[tuple[int, ...], ...]
    norm: str
    selection: dict
    label: str | None = None
    include_shortcuts: bool = False
    shortcuts_left_out: tuple[str, ...] = ()

    def ranking(self) -> list[str]:
        """Layers by decreasing mean kernel norm."""
        return [self.layers[i] for i in sorted(range(len(self.layers)),
                                                key=lambda i: (-self.mean[i], i))]

    def first_two_ratio(self) -> float | None:
        """Mean of the first two layers' mean norms over the mean of the remaining layers'
        (SPECTRUM: "first two layers far above the rest"); None with fewer than 3 layers."""
        if len(self.layers) < 3:
            return None
        rest = float(np.mean(self.mean[2:]))
        return float(np.mean(self.mean[:2]) / rest) if rest > 0 else None

    def to_dict(self) -> dict:
        return jsonable({
            "analysis": "filter_norms",
            "equation": "SPECTRUM §5 (E and max over k×k kernels of ||w||_inf)",
            "label": self.label,
            "norm": self.norm,
            "layers": list(self.layers),
            "mean": [round_sig(float(v), 8) for v in self.mean],
            "max": [round_sig(float(v), 8) for v in self.max],
            "n_kernels": list(self.n_kernels),
            "kernel_size": [list(k) for k in self.kernel_size],
            "ranking_by_mean": self.ranking(),
            "first_two_over_rest": round_sig(self.first_two_ratio())
            if self.first_two_ratio() is not None else None,
            "selection": self.selection,
            "include_shortcuts": self.include_shortcuts,
            "shortcuts_left_out": list(self.shortcuts_left_out),
        })


def filter_norms(model: nn.Module, *, selection=None, norm: str = "inf", input_shape=None,
                 label: str | None = None, include_shortcuts: bool = False) -> FilterNormResult:
    """Per selected conv layer (default ``kind:conv``, execution order): mean and max over its
    k×k kernels of ‖w‖∞ (or ‖w‖₂ with ``norm="2"``), SPECTRUM §5. Shortcut projections are
    left out of any selection, as in SPECTRUM's figures, unless ``include_shortcuts``. Selected
    layers without a ≥3-d ``weight`` (e.g. linear, BN) are an error naming them."""
    _, resolved = resolve_layers(model, selection, DEFAULT_SELECTION, input_shape)
    left_out = () if include_shortcuts else tuple(i.name for i in resolved.layers if i.shortcut)
    names = [n for n in resolved.names if n not in left_out]
    if not names:
        raise ValueError(f"selection {resolved.expression!r} holds only shortcut projections "
                         f"{list(left_out)}, which filter norms leave out (as SPECTRUM's "
                         f"figures do); pass include_shortcuts=True to measure them")
    modules = resolved.modules(model)
    bad = [n for n in names
           if getattr(modules[n], "weight", None) is None or modules[n].weight.dim() < 3]
    if bad:
        raise ValueError(f"filter norms need convolution layers; selection "
                         f"{resolved.expression!r} also matched {bad}; add '& kind:conv'")
    means, maxes, counts, sizes = [], [], [], []
    for name in names:
        weight = modules[name].weight
        values = kernel_norms(weight, norm)
        means.append(float(values.mean()))
        maxes.append(float(values.max()))
        counts.append(int(values.numel()))
        sizes.append(tuple(int(s) for s in weight.shape[2:]))
    return FilterNormResult(
        layers=tuple(names), mean=np.array(means), max=np.array(maxes),
        n_kernels=tuple(counts), kernel_size=tuple(sizes), norm=str(norm).lower(),
        selection=dict(selection_record(resolved), names=names), label=label,
        include_shortcuts=bool(include_shortcuts), shortcuts_left_out=left_out,
    )


@dataclass
class FilterNormFamily:
    """Filter norms of a family of models (e.g. increasing ε) for SPECTRUM Fig. 2."""

    results: dict[str, FilterNormResult]

    def to_dict(self) -> dict:
        return jsonable({
            "analysis": "filter_norms_family",
            "models": {label: r.to_dict() for label, r in self.results.items()},
        })


def filter_norms_family(models: dict[str, nn.Module], *, selection=None, norm: str = "inf",
                        input_shape=None, include_shortcuts: bool = False) -> FilterNormFamily:
    """``filter_norms`` of every model, keyed by label (one line per model in the plot);
    shortcut projections left out unless ``include_shortcuts`` (SPECTRUM Fig. 2)."""
    if not models:
        raise ValueError("filter_norms_family needs at least one model")
    return FilterNormFamily({label: filter_norms(m, selection=selection, norm=norm,
                                                 input_shape=input_shape, label=label,
                                                 include_shortcuts=include_shortcuts)
                             for label, m in models.items()})
