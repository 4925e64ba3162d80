"""The layer map: every parameterised leaf module of a model, in forward execution order.

A *layer* is a module with parameters of its own and no child modules — convolutions,
linear layers, batch-norm and other normalisation layers. It is named by its dotted path from
``named_modules()``. The order is the order in which the layers run on one dummy batch, found with
forward hooks; for a CIFAR ResNet this reproduces EARLY's linearisation (a block's shortcut conv
and BN come right after the block's ``bn2``), giving the 41 layers of a ResNet-18.

A model wrapped by ``torch.compile`` is mapped through the module it wraps
(:func:`robustlayers.layers.compiled.unwrap`), so its layers keep their names (``conv1``, not
``_orig_mod.conv1``).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from robustlayers.layers.compiled import unwrap

_KINDS: tuple[tuple[type, str], ...] = (
    (nn.modules.conv._ConvNd, "conv"),
    (nn.Linear, "linear"),
    (nn.modules.batchnorm._BatchNorm, "bn"),
    (nn.LayerNorm, "norm"),
    (nn.GroupNorm, "norm"),
    (nn.modules.instancenorm._InstanceNorm, "norm"),
    (nn.Embedding, "embedding"),
)

KINDS = ("conv", "linear", "bn", "norm", "embedding")
"""Kinds with a fixed name; any other layer's kind is its class name in lower case."""

SHORTCUT_MARK = "is_shortcut_projection"
DEPTH_KINDS = ("conv", "linear")


def mark_shortcut(module: nn.Module) -> nn.Module:
    """Mark ``module`` and everything under it as a residual *shortcut projection* (the 1×1
    conv, and its BN, that a ResNet block adds to its main path). Zoo constructors call it
    where they build a projection; the layer map then leaves these layers out of the *depth*
    numbering that CLAT's layer indices use (main-path convs and the classifier). Models from
    elsewhere may instead set ``model.shortcut_layers`` to the projection layers' names."""
    for sub in module.modules():
        setattr(sub, SHORTCUT_MARK, True)
    return module


def shortcut_names(model: nn.Module) -> set[str]:
    """Names of the model's shortcut projection layers: the marked modules
    (:func:`mark_shortcut`) and ``model.shortcut_layers`` if the model declares it."""
    found = {name for name, m in model.named_modules() if getattr(m, SHORTCUT_MARK, False)}
    declared = getattr(model, "shortcut_layers", None) or ()
    if isinstance(declared, str):
        declared = (declared,)
    return found | set(declared)


def layer_kind(module: nn.Module) -> str:
    """The kind of a layer: conv, linear, bn, norm, embedding, or its lower-cased class name."""
    for cls, kind in _KINDS:
        if isinstance(module, cls):
            return kind
    return type(module).__name__.lower()


def is_layer(module: nn.Module) -> bool:
    """A layer is a leaf module that owns parameters ."""
    has_children = next(module.children(), None) is not None
    has_params = next(module.parameters(recurse=False), None) is not None
    return has_params and not has_children


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model: its place in execution order and what it is."""

    index: int
    name: str
    kind: str
    block: str
    params: int
    out_shape: tuple[int, ...] | None  # per-example output shape; None if it never ran
    executed: bool
    shortcut: bool = False     # a residual shortcut projection (mark_shortcut)
    depth: int | None = None   # CLAT's 1-based depth index; None unless a main-path conv/linear

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "block": self.block,
            "params": self.params,
            "out_shape": list(self.out_shape) if self.out_shape is not None else None,
            "executed": self.executed,
            "shortcut": self.shortcut,
            "depth": self.depth,
        }


class LayerMap:
    """An ordered, immutable list of a model's layers with lookup by name and by block."""

    def __init__(self, layers: tuple[LayerInfo, ...], modules: tuple[str, ...] = ()):
        self._layers = tuple(layers)
        self._by_name = {info.name: info for info in self._layers}
        # every module path of the model (containers included), for name resolution
        self._module_paths = tuple(modules)

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        return self._layers

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self._layers)

    @property
    def module_paths(self) -> tuple[str, ...]:
        return self._module_paths

    @property
    def depth_layers(self) -> tuple[LayerInfo, ...]:
        """The *depth* layers in order: executed conv and linear layers that are not shortcut
        projections — the layers CLAT numbers 1, 2, … (CLAT §3.1, Tables 6 and 8: ResNet-18
        depth 11 is ``layer3.0.conv2``; DenseNet-121's 14, 39 and 88 are its transition convs).
        The last one is the classifier."""
        return tuple(info for info in self._layers if info.depth is not None)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block names in order of their first layer."""
        seen: dict[str, None] = {}
        for info in self._layers:
            seen.setdefault(info.block, None)
        return tuple(seen)

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self._layers)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, key: int | str) -> LayerInfo:
        if isinstance(key, int):
            return self._layers[key]
        try:
            return self._by_name[key]
        except KeyError:
            from robustlayers.layers.selection import SelectionError, closest

            raise SelectionError(
                f"no layer named {key!r}; closest layers: {closest(key, self.names)}"
            ) from None

    def to_rows(self) -> list[dict]:
        return [info.to_dict() for info in self._layers]

    def __repr__(self) -> str:
        return f"LayerMap({len(self)} layers, blocks={list(self.blocks)})"


def block_of(model: nn.Module, name: str) -> str:
    """The block of a layer: ``model.layer_blocks[top-level child]`` if the model defines that
    mapping (zoo models map e.g. ``conv1``→``stem``, ``linear``→``head``), else the top-level
    child's own name."""
    top = name.split(".", 1)[0]
    mapping = getattr(model, "layer_blocks", None) or {}
    return mapping.get(top, top)


def _input_shape(model: nn.Module, input_shape) -> tuple[int, ...]:
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(
            f"cannot build the layer map of {type(model).__name__}: it has no `input_shape` "
            "attribute; pass input_shape=(C, H, W) (for example (3, 32, 32) for CIFAR-10) or set "
            "model.input_shape"
        )
    shape = tuple(int(s) for s in shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive integers like (3, 32, 32), got {shape}")
    return shape


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _structure(model: nn.Module) -> tuple:
    return tuple((name, type(m)) for name, m in model.named_modules())


def layer_map(model: nn.Module, input_shape=None) -> LayerMap:
    """The layer map of ``model``, cached per model object and rebuilt when its module structure
    or the input shape changes (selections are resolved often, e.g. once per attack call)."""
    model = unwrap(model)
    cached = _CACHE.get(model)
    if input_shape is None and getattr(model, "input_shape", None) is None and cached is not None:
        input_shape = cached[0]  # the shape this model's map was last built with
    shape = _input_shape(model, input_shape)
    structure = _structure(model)
    if cached is not None and cached[0] == shape and cached[1] == structure:
        return cached[2]
    result = build_layer_map(model, shape)
    _CACHE[model] = (shape, structure, result)
    return result


def build_layer_map(model: nn.Module, input_shape=None) -> LayerMap:
    """Build (without the cache) and return the layer map; see :func:`layer_map`.

    Run one dummy batch of two examples through ``model`` (in ``eval()`` and ``no_grad``, its
    mode restored afterwards) and list its layers in the order they first ran.

    Layers that never ran come last, flagged ``executed=False``, so that nothing is hidden.
    A ``torch.compile`` wrapper is mapped through the module it wraps (not compiled here).
    """
    model = unwrap(model)
    shape = _input_shape(model, input_shape)
    candidates = [(name, m) for name, m in model.named_modules() if name and is_layer(m)]
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no layers (leaf modules with parameters)")
    order: list[str] = []
    out_shapes: dict[str, tuple[int, ...]] = {}

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if name not in out_shapes:
                order.append(name)
                out = output[0] if isinstance(output, (tuple, list)) else output
                out_shapes[name] = tuple(out.shape[1:]) if torch.is_tensor(out) else ()
        return hook

    handles = []
    was_training = model.training
    try:
        for name, module in candidates:
            handles.append(module.register_forward_hook(make_hook(name)))
        param = next(model.parameters())
        dummy = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
        model.eval()
        with torch.no_grad():
            model(dummy.to(device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    modules = dict(candidates)
    never_ran = [name for name, _ in candidates if name not in out_shapes]
    shortcuts = shortcut_names(model)
    layers, depth = [], 0
    for index, name in enumerate(order + never_ran):
        module = modules[name]
        kind = layer_kind(module)
        is_depth = kind in DEPTH_KINDS and name not in shortcuts and name in out_shapes
        depth += is_depth
        layers.append(
            LayerInfo(
                index=index,
                name=name,
                kind=kind,
                block=block_of(model, name),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                out_shape=out_shapes.get(name),
                executed=name in out_shapes,
                shortcut=name in shortcuts,
                depth=depth if is_depth else None,
            )
        )
    paths = tuple(name for name, _ in model.named_modules() if name)
    return LayerMap(tuple(layers), paths)


def numel(shape: tuple[int, ...] | None) -> int:
    """Number of elements per example of a layer output shape."""
    return math.prod(shape) if shape else 0
