"""Layer selections: which layers a method acts on, as text and as a Python API.

Every layer-wise method of EARLY (Bakiskan et al., Early Layers Are More Important For
Adversarial Robustness), SPECTRUM, CLAT and RAT is "do X to these layers", so every method
takes a selection. A selection is written as text so that it can live in configs, run records
and sweep axes, and resolves against a concrete model into an ordered, immutable list of layers.

Text syntax (terms joined by operators, parentheses allowed)::

    layer3.*.conv*        dotted name or glob; a container name (``layer2``) means its layers
    kind:conv,bn          layer kinds (conv, linear, bn, norm, embedding, or a class name)
    block:3,4             blocks; an integer N means ``layerN``; also block:stem,head
    before:NAME           layers that run strictly before NAME  (EARLY's cut)
    until:NAME            ... up to and including NAME
    from:NAME             NAME and every later layer
    after:NAME            layers strictly after NAME
    index:5  index:2:7    positions in execution order (half-open ranges, negatives from the end)
    depth:11  depth:1:5   CLAT's 1-based *depth* numbering: main-path convs and the classifier,
    depth:all  depth:-1   no shortcut projections (ranges inclusive; -1 = the classifier)
    all                   every layer

    A | B, A + B          union          A & B     intersection
    A - B                 difference (the minus needs spaces around it)

An exact name or term that matches nothing is an error listing the closest valid names; so is a
whole expression that resolves to no layer (a selection that silently matches nothing once made a
released RAT experiment train the wrong layers).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from torch import nn

from robustlayers.layers._syntax import (
    POSITIONAL, Op, Parser, SelectionError, Term, Where, make_op, render, short,
)
from robustlayers.errors import describe_value
from robustlayers.layers.compiled import unwrap
from robustlayers.layers.layermap import LayerInfo, LayerMap, layer_map

def closest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """The valid names closest to ``name``, as a comma-separated string for error messages."""
    choices = list(dict.fromkeys(choices))
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.3)
    if not near:
        near = choices[:n]
    more = "" if len(choices) <= len(near) else f" (of {len(choices)}; list them with " \
        "`robustlayers layers MODEL`)"
    return ", ".join(near) + more


class Selection:
    """An unresolved selection expression. Build it with :meth:`parse` or the class methods,
    combine with ``|``, ``&`` and ``-``, and :meth:`resolve` it against a model."""

    def __init__(self, node):
        self._node = node

    # -- construction
    @classmethod
    def parse(cls, text: str) -> "Selection":
        if not isinstance(text, str):
            raise SelectionError(f"a selection expression is text, got {describe_value(text)}")
        if not text.strip():
            raise SelectionError(f"empty selection {text!r}; write e.g. 'kind:conv', "
                                 "'block:3,4' or 'all'")
        return cls(Parser(text).parse())

    @classmethod
    def all(cls) -> "Selection":
        return cls(Term("all", ()))

    @classmethod
    def names(cls, *names: str) -> "Selection":
        return cls(Term("", _texts(names, "layer names")))

    @classmethod
    def kind(cls, *kinds: str) -> "Selection":
        return cls(Term("kind", _texts(kinds, "layer kinds")))

    @classmethod
    def block(cls, *blocks: str | int) -> "Selection":
        return cls(Term("block", tuple(str(b) for b in blocks)))

    @classmethod
    def position(cls, where: str, name: str) -> "Selection":
        """``where`` is one of before, until, from, after."""
        if where not in POSITIONAL:
            raise SelectionError(f"unknown position {where!r}; valid: {', '.join(POSITIONAL)}")
        return cls(Term(where, (name,)))

    @classmethod
    def index(cls, *positions: int | str) -> "Selection":
        return cls(Term("index", tuple(str(p) for p in positions)))

    @classmethod
    def depth(cls, *positions: int | str) -> "Selection":
        """CLAT's depth layers by 1-based index (``Selection.depth(11)``), ``"A:B"`` inclusive
        ranges, negatives from the end, or ``"all"``."""
        return cls(Term("depth", tuple(str(p) for p in positions)))

    @classmethod
    def where(cls, predicate: Callable[[LayerInfo], bool], label: str = "predicate") -> "Selection":
        """Layers for which ``predicate(LayerInfo)`` is true (Python only: its text form
        ``where:LABEL`` records it in run records but cannot be parsed back)."""
        return cls(Where(predicate, label))

    # -- algebra
    def __or__(self, other: "Selection") -> "Selection":
        return Selection(make_op("|", self._node, _as_selection(other)._node))

    __add__ = __or__

    def __and__(self, other: "Selection") -> "Selection":
        return Selection(make_op("&", self._node, _as_selection(other)._node))

    def __sub__(self, other: "Selection") -> "Selection":
        return Selection(make_op("-", self._node, _as_selection(other)._node))

    def __str__(self) -> str:
        return render(self._node)

    def __repr__(self) -> str:
        return f"Selection({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selection) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    # -- resolution
    def resolve(self, target: nn.Module | LayerMap, input_shape=None, *,
                allow_empty: bool = False) -> "ResolvedSelection":
        """Resolve against a model (its layer map is built or taken from the cache) or a map.

        ``allow_empty`` admits an expression that is valid but selects nothing as a whole, such
        as ``before:conv1`` for EARLY's cut before the first layer; unknown names still fail."""
        lmap = _layer_map_of(target, input_shape)
        chosen = _evaluate(self._node, lmap)
        if not chosen and not allow_empty:
            raise SelectionError(
                f"selection {short(str(self))} resolved to no layers; the model's blocks are "
                f"{', '.join(lmap.blocks)} and its layers include {closest(str(self), lmap.names)}"
            )
        layers = tuple(info for info in lmap if info.name in chosen)
        return ResolvedSelection(str(self), layers)


@dataclass(frozen=True)
class ResolvedSelection:
    """A selection resolved against one model: its layers in execution order."""

    expression: str
    layers: tuple[LayerInfo, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.layers)

    def modules(self, model: nn.Module) -> dict[str, nn.Module]:
        found = dict(unwrap(model).named_modules())
        return {name: found[name] for name in self.names}

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def to_dict(self) -> dict:
        return {"expression": self.expression, "names": list(self.names)}


SelectionLike = str | Selection | ResolvedSelection | Iterable[str]


def _as_selection(expr) -> Selection:
    if isinstance(expr, Selection):
        return expr
    if isinstance(expr, str):
        return Selection.parse(expr)
    if isinstance(expr, ResolvedSelection):
        return Selection.names(*expr.names)
    try:
        names = None if isinstance(expr, (bytes, dict)) else tuple(expr)
    except TypeError:  # not iterable
        names = None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SelectionError(
            "a selection is a text expression ('block:3,4'), a Selection or a non-empty list of "
            f"layer names; got {describe_value(expr)}"
        )
    return Selection.names(*names)


def _texts(values: tuple, what: str) -> tuple[str, ...]:
    bad = [v for v in values if not isinstance(v, str) or not v]
    if bad or not values:
        raise SelectionError(f"{what} must be non-empty strings, got {describe_value(values)}")
    return tuple(values)


def _layer_map_of(target, input_shape) -> LayerMap:
    """The layer map of a model (cached) or the map itself; SelectionError for anything else."""
    if isinstance(target, LayerMap):
        return target
    if not isinstance(target, nn.Module):
        hint = (f"; build the model first, e.g. create_model({target!r}, num_classes=...)"
                if isinstance(target, str) else "")
        raise SelectionError(f"a selection resolves against a torch.nn.Module or its LayerMap, "
                             f"got {describe_value(target)}{hint}")
    return layer_map(target, input_shape)


def select(target: nn.Module | LayerMap, expr: SelectionLike, input_shape=None, *,
           allow_empty: bool = False) -> ResolvedSelection:
    """Resolve ``expr`` (text, :class:`Selection`, resolved selection or list of layer names)
    against a model or its layer map."""
    if isinstance(expr, ResolvedSelection):
        lmap = _layer_map_of(target, input_shape)
        missing = [n for n in expr.names if n not in lmap]
        if missing:
            raise SelectionError(
                f"resolved selection names layers this model lacks: {missing[:5]}; closest: "
                f"{closest(missing[0], lmap.names)}"
            )
        return expr
    return _as_selection(expr).resolve(target, input_shape, allow_empty=allow_empty)


# ----------------------------------------------------------------------------- evaluation

def _evaluate(node, lmap: LayerMap) -> set[str]:
    if isinstance(node, Where):
        return {info.name for info in lmap if node.predicate(info)}
    if isinstance(node, Op):
        left, right = _evaluate(node.left, lmap), _evaluate(node.right, lmap)
        return {"|": left | right, "&": left & right, "-": left - right}[node.op]
    return _evaluate_term(node, lmap)


def _evaluate_term(term: Term, lmap: LayerMap) -> set[str]:
    if term.prefix == "all":
        return set(lmap.names)
    if term.prefix == "":
        return set().union(*(_match_name(v, lmap) for v in term.values))
    if term.prefix == "kind":
        present = sorted({info.kind for info in lmap})
        unknown = [v for v in term.values if v not in present]
        if unknown:
            raise SelectionError(f"kind {unknown[0]!r} matches no layer of this model; "
                                 f"its layer kinds are: {', '.join(present)}")
        return {info.name for info in lmap if info.kind in term.values}
    if term.prefix == "block":
        return set().union(*(_match_block(v, lmap) for v in term.values))
    if term.prefix == "index":
        return set().union(*(_match_index(v, lmap) for v in term.values))
    if term.prefix == "depth":
        return set().union(*(_match_depth(v, lmap) for v in term.values))
    return _match_position(term.prefix, term.values[0], lmap)


def _match_name(value: str, lmap: LayerMap) -> set[str]:
    if any(ch in value for ch in "*?["):
        found = {n for n in lmap.names if fnmatch.fnmatchcase(n, value)}
        if not found:
            raise SelectionError(f"pattern {value!r} matches no layer; closest layers: "
                                 f"{closest(value.replace('*', ''), lmap.names)}")
        return found
    if value in lmap:
        return {value}
    under = {n for n in lmap.names if n.startswith(value + ".")}
    if under:
        return under
    hint = ""
    if value.startswith("module."):
        hint = " (a 'module.' prefix comes from DataParallel; layer names here have none)"
    raise SelectionError(f"no layer or module named {value!r}{hint}; closest: "
                         f"{closest(value, lmap.names + lmap.module_paths)}")


def _match_block(value: str, lmap: LayerMap) -> set[str]:
    name = value
    if value.isdigit() and value not in lmap.blocks:
        name = f"layer{value}"
    found = {info.name for info in lmap if info.block == name}
    if not found:
        raise SelectionError(f"block {value!r} does not exist in this model; its blocks are: "
                             f"{', '.join(lmap.blocks)} (an integer N means 'layerN')")
    return found


def _match_index(value: str, lmap: LayerMap) -> set[str]:
    names = lmap.names
    try:
        if ":" in value:
            start, stop = (int(p) if p else None for p in value.split(":", 1))
            found = set(names[slice(start, stop)])
        else:
            found = {names[int(value)]}
    except ValueError:
        raise SelectionError(f"index:{value} is not an integer or a range like 2:7") from None
    except IndexError:
        raise SelectionError(f"index {value} is out of range: the model has {len(names)} layers "
                             f"(valid 0..{len(names) - 1}, or negatives from the end)") from None
    if not found:
        raise SelectionError(f"index range {value!r} selects no layer of the {len(names)} layers")
    return found


def _match_depth(value: str, lmap: LayerMap) -> set[str]:
    """``depth:N`` (1-based, negatives from the end), ``depth:A:B`` (inclusive), ``depth:all``."""
    depth = lmap.depth_layers
    n = len(depth)
    if not n:
        raise SelectionError("this model has no depth layers (executed conv or linear layers "
                             "that are not shortcut projections)")
    if value == "all":
        return {info.name for info in depth}
    valid = (f"the model has {n} depth layers (main-path convs and the classifier; valid "
             f"1..{n}, -1 = the classifier, A:B inclusive ranges, or all)")
    try:
        parts = [int(p) for p in value.split(":")]
    except ValueError:
        raise SelectionError(f"depth:{value} is not an integer, a range like 1:5 or 'all'; "
                             f"{valid}") from None
    if len(parts) > 2 or any(p == 0 or not -n <= p <= n for p in parts):
        raise SelectionError(f"depth {value} is out of range: {valid}")
    first, last = (p if p > 0 else n + 1 + p for p in (parts[0], parts[-1]))
    if first > last:
        raise SelectionError(f"depth range {value} is empty (start after end); {valid}")
    return {info.name for info in depth[first - 1:last]}


def _match_position(where: str, name: str, lmap: LayerMap) -> set[str]:
    pos = lmap[name].index  # raises SelectionError with the closest names
    pick = {
        "before": lambda i: i < pos,
        "until": lambda i: i <= pos,
        "from": lambda i: i >= pos,
        "after": lambda i: i > pos,
    }[where]
    return {info.name for info in lmap if pick(info.index)}
