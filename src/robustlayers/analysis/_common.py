"""Small helpers shared by the analyses: data/model plumbing, selections, attacks, JSON records.

Nothing here implements a paper equation; the analyses (psr, criticality, filter_norms,
quantization, preactivation) do, and cite them. Plumbing that exists elsewhere is imported from
there, not copied: eval mode, device, batching and accuracy from ``robustlayers.evaluate.metrics``,
batched attacks from ``robustlayers.evaluate.robust.run_attack``, ε records from
``robustlayers.attacks.describe_eps``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

# Re-exported for analysis/timing.py, which still imports them from here; new code imports
# robustlayers.evaluate.metrics.model_device and robustlayers.attacks.describe_eps directly.
from robustlayers.attacks import describe_eps as eps_record  # noqa: F401
from robustlayers.evaluate.metrics import model_device  # noqa: F401

QUANTILE_LEVELS = (5, 25, 50, 75, 95)
_ACTIVATIONS = {"relu", "relu6", "leakyrelu", "silu", "swish", "gelu", "elu", "selu", "celu",
                "hardswish", "mish", "softplus", "prelu", "tanh", "sigmoid"}

# Anything called as attack(model, x, y) -> x_adv. robustlayers.attacks.Attack objects qualify;
# tests pass stubs with a fixed perturbation.
AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def split_data(data: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from tensors, a TensorData, an ``(x, y)`` pair, a torch Dataset or DataLoader
    (:func:`robustlayers.evaluate.inputs.as_tensors`)."""
    from robustlayers.evaluate.inputs import as_tensors

    return as_tensors(data, y)


_EPS_EXAMPLES = "8/255 for CIFAR-10/100 and SVHN, 0.1 for Fashion-MNIST, 0.3 for MNIST"


def resolve_eps(model: nn.Module | None, eps: Any, *, data: Any = None, what: str) -> float:
    """The ℓ∞ budget of an analysis: ``eps`` when given (a number or text like ``"8/255"``),
    else the ε of the run the model was loaded from or the default of the dataset it was built
    for (``model.data_context``, set by ``robustlayers.build_model`` and ``load_run_model``),
    else the default ε of the dataset ``data`` comes from (a TensorData). Nothing saying which:
    ValueError — never a silent CIFAR 8/255 for, say, a Fashion-MNIST model."""
    if eps is not None:
        from robustlayers.attacks import parse_eps

        return float(parse_eps(eps)) if isinstance(eps, str) else float(eps)
    context = getattr(model, "data_context", None) or {}
    if context.get("eps") is not None:
        return float(context["eps"])
    info = getattr(data, "info", None)
    if getattr(info, "default_eps", None) is not None:
        return float(info.default_eps)
    raise ValueError(
        f"{what} needs eps: nothing says which dataset the model belongs to. Pass eps= "
        f"({_EPS_EXAMPLES}), or build the model with robustlayers.build_model(name, dataset) "
        f"or load it with robustlayers.runs.load_run_model so its dataset is known")


def is_activation(module: nn.Module) -> bool:
    """True for activation modules (ReLU, SiLU/Swish, GELU, ...), by class name."""
    return type(module).__name__.lower() in _ACTIVATIONS


def data_shape(model: nn.Module, x: torch.Tensor, input_shape=None):
    """The (C, H, W) to build a layer map with: ``input_shape`` if given, else None when the model
    declares ``input_shape`` (zoo models), else the data's per-example shape."""
    if input_shape is not None:
        return tuple(input_shape)
    return None if getattr(model, "input_shape", None) is not None else tuple(x.shape[1:])


def resolve_layers(model: nn.Module, selection: Any, default: str, input_shape=None):
    """(LayerMap, ResolvedSelection) for ``selection`` (None -> ``default``) on ``model``.

    Raises robustlayers.layers.SelectionError (a ValueError naming the closest valid names) when
    the expression is invalid or matches nothing.
    """
    from robustlayers.layers import layer_map as cached_layer_map, select

    # the cached map also remembers input_shape for later capture() calls on this model
    layer_map = cached_layer_map(model, input_shape)
    return layer_map, select(layer_map, default if selection is None else selection)


def selection_record(resolved) -> dict:
    return {"expression": str(resolved.expression), "names": list(resolved.names)}


def layer_map_rows(layer_map, selected: Iterator[str] = ()) -> list[dict]:
    """The layer-map table of the report: index, name, kind, block, params, out_shape, selected."""
    chosen = set(selected)
    rows = []
    for info in layer_map.layers:
        shape = getattr(info, "out_shape", None)
        rows.append({
            "index": int(info.index),
            "name": info.name,
            "kind": info.kind,
            "block": info.block,
            "params": int(info.params),
            "out_shape": list(shape) if shape is not None else None,
            "selected": info.name in chosen,
        })
    return rows


def make_pgd(eps: float, *, steps: int, alpha: float, seed: int, random_start: bool = True):
    """An ℓ∞ PGD attack from robustlayers.attacks (untargeted, cross-entropy)."""
    from robustlayers.attacks import PGD, ThreatModel

    return PGD(ThreatModel("linf", float(eps)), steps=int(steps), alpha=float(alpha),
               random_start=random_start, seed=int(seed))


def attack_record(attack: Any) -> dict:
    """JSON-able description of an attack: its .config() when it has one."""
    config = getattr(attack, "config", None)
    if callable(config):
        return jsonable(config())
    return {"name": getattr(attack, "name", type(attack).__name__), "repr": repr(attack)}


def attack_eps(attack: Any) -> float | None:
    """ε of an attack with a threat model (robustlayers attacks); None for other callables."""
    eps = getattr(getattr(attack, "threat", None), "eps", None)
    return None if eps is None else float(eps)


def quantiles(values: np.ndarray, levels=QUANTILE_LEVELS) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {f"q{q}": None for q in levels}
    return {f"q{q}": float(np.percentile(finite, q)) for q in levels}


def histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    finite = values[np.isfinite(values)]
    counts, _ = np.histogram(finite, bins=edges)
    return [int(c) for c in counts]


def shared_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin edges covering the finite values (a unit range when they are constant)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def to_db(ratio: float | np.ndarray):
    """20·log10(ratio) — the amplitude form EARLY's released code plots."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20.0 * np.log10(ratio)


def round_sig(value: float, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def jsonable(obj: Any) -> Any:
    """Recursively turn tensors/arrays/tuples/numpy scalars into JSON types; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.device):
        return str(obj)
    return repr(obj)
