"""Layer selections: which layers a method acts on, as text and as a Python API.

Every layer-wise method of the five papers is "do X to these layers" (SPEC §3), so every method
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
    all                   every layer

    A | B, A + B          union          A & B     intersection
    A - B                 difference (the minus needs spaces around it)

An exact name or term that matches nothing is an error listing the closest valid names; so is a
whole expression that resolves to no layer (a selection that silently matches nothing once made a
released RAT experiment train the wrong layers — SPEC §9).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from torch import nn

from robustlayers.layers.layermap import LayerInfo, LayerMap, layer_map

PREFIXES = ("kind", "block", "before", "until", "from", "after", "index")
_POSITIONAL = ("before", "until", "from", "after")
_OPERATORS = {"|": "|", "+": "|", "&": "&", "-": "-"}


class SelectionError(ValueError):
    """A selection that cannot be parsed, names an unknown layer, or matches nothing."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """The valid names closest to ``name``, as a comma-separated string for error messages."""
    choices = list(dict.fromkeys(choices))
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.3)
    if not near:
        near = choices[:n]
    more = "" if len(choices) <= len(near) else f" (of {len(choices)}; list them with " \
        "`robustlayers layers MODEL`)"
    return ", ".join(near) + more


# ----------------------------------------------------------------------------- expression tree

@dataclass(frozen=True)
class _Term:
    prefix: str  # "" for names/globs, "all" for everything
    values: tuple[str, ...]

    def text(self) -> str:
        if self.prefix == "all":
            return "all"
        joined = ",".join(self.values)
        return f"{self.prefix}:{joined}" if self.prefix else joined


@dataclass(frozen=True)
class _Op:
    op: str  # "|", "&", "-"
    left: object
    right: object


@dataclass(frozen=True)
class _Where:
    predicate: Callable[[LayerInfo], bool]
    label: str


class Selection:
    """An unresolved selection expression. Build it with :meth:`parse` or the class methods,
    combine with ``|``, ``&`` and ``-``, and :meth:`resolve` it against a model."""

    def __init__(self, node):
        self._node = node

    # -- construction
    @classmethod
    def parse(cls, text: str) -> "Selection":
        if not isinstance(text, str) or not text.strip():
            raise SelectionError("empty selection; write e.g. 'kind:conv', 'block:3,4' or 'all'")
        return cls(_Parser(text).parse())

    @classmethod
    def all(cls) -> "Selection":
        return cls(_Term("all", ()))

    @classmethod
    def names(cls, *names: str) -> "Selection":
        return cls(_Term("", tuple(names)))

    @classmethod
    def kind(cls, *kinds: str) -> "Selection":
        return cls(_Term("kind", tuple(kinds)))

    @classmethod
    def block(cls, *blocks: str | int) -> "Selection":
        return cls(_Term("block", tuple(str(b) for b in blocks)))

    @classmethod
    def position(cls, where: str, name: str) -> "Selection":
        """``where`` is one of before, until, from, after."""
        if where not in _POSITIONAL:
            raise SelectionError(f"unknown position {where!r}; valid: {', '.join(_POSITIONAL)}")
        return cls(_Term(where, (name,)))

    @classmethod
    def index(cls, *positions: int | str) -> "Selection":
        return cls(_Term("index", tuple(str(p) for p in positions)))

    @classmethod
    def where(cls, predicate: Callable[[LayerInfo], bool], label: str = "predicate") -> "Selection":
        """Layers for which ``predicate(LayerInfo)`` is true (Python only: its text form
        ``where:LABEL`` records it in run records but cannot be parsed back)."""
        return cls(_Where(predicate, label))

    # -- algebra
    def __or__(self, other: "Selection") -> "Selection":
        return Selection(_Op("|", self._node, _as_selection(other)._node))

    __add__ = __or__

    def __and__(self, other: "Selection") -> "Selection":
        return Selection(_Op("&", self._node, _as_selection(other)._node))

    def __sub__(self, other: "Selection") -> "Selection":
        return Selection(_Op("-", self._node, _as_selection(other)._node))

    def __str__(self) -> str:
        return _render(self._node)

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
        lmap = target if isinstance(target, LayerMap) else layer_map(target, input_shape)
        chosen = _evaluate(self._node, lmap)
        if not chosen and not allow_empty:
            raise SelectionError(
                f"selection {str(self)!r} resolved to no layers; the model's blocks are "
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
        found = dict(model.named_modules())
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
    names = tuple(expr)
    if not names or not all(isinstance(n, str) for n in names):
        raise SelectionError(
            f"a selection is a text expression, a Selection or a non-empty list of layer names; "
            f"got {expr!r}"
        )
    return Selection.names(*names)


def select(target: nn.Module | LayerMap, expr: SelectionLike, input_shape=None, *,
           allow_empty: bool = False) -> ResolvedSelection:
    """Resolve ``expr`` (text, :class:`Selection`, resolved selection or list of layer names)
    against a model or its layer map."""
    if isinstance(expr, ResolvedSelection):
        lmap = target if isinstance(target, LayerMap) else layer_map(target, input_shape)
        missing = [n for n in expr.names if n not in lmap]
        if missing:
            raise SelectionError(
                f"resolved selection names layers this model lacks: {missing[:5]}; closest: "
                f"{closest(missing[0], lmap.names)}"
            )
        return expr
    return _as_selection(expr).resolve(target, input_shape, allow_empty=allow_empty)


# ----------------------------------------------------------------------------- parsing

class _Parser:
    """Recursive descent: expr := conj (('|' | '+' | '-') conj)* ; conj := atom ('&' atom)* ;
    atom := '(' expr ')' | term."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self):
        node = self._expr()
        if self.pos != len(self.tokens):
            raise SelectionError(f"unexpected {self.tokens[self.pos][1]!r} in selection {self.text!r}")
        return node

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _expr(self):
        node = self._conj()
        while self._peek()[0] == "op" and self._peek()[1] in "|-":
            op = self.tokens[self.pos][1]
            self.pos += 1
            node = _Op(op, node, self._conj())
        return node

    def _conj(self):
        node = self._atom()
        while self._peek() == ("op", "&"):
            self.pos += 1
            node = _Op("&", node, self._atom())
        return node

    def _atom(self):
        kind, value = self._peek()
        if kind is None:
            raise SelectionError(f"selection {self.text!r} ends where a term was expected")
        self.pos += 1
        if kind == "(":
            node = self._expr()
            if self._peek()[0] != ")":
                raise SelectionError(f"missing ')' in selection {self.text!r}")
            self.pos += 1
            return node
        if kind != "term":
            raise SelectionError(f"unexpected {value!r} in selection {self.text!r}; a term "
                                 "(name, glob, kind:…, block:…, index:…) was expected")
        return _parse_term(value)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append((ch, ch))
            i += 1
        elif ch in "|+&" or (ch == "-" and (i + 1 == len(text) or text[i + 1].isspace())):
            tokens.append(("op", _OPERATORS[ch]))
            i += 1
        elif ch == "-":
            raise SelectionError(
                f"unexpected '-' at position {i} in selection {text!r}; write a difference with "
                "spaces around the minus, e.g. 'kind:conv - block:head'"
            )
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "()|+&":
                j += 1
            tokens.append(("term", text[i:j]))
            i = j
    return tokens


def _parse_term(token: str) -> _Term:
    if token == "all":
        return _Term("all", ())
    if ":" in token:
        prefix, rest = token.split(":", 1)
        if prefix == "where":
            raise SelectionError("'where:' selections hold a Python predicate and exist only in "
                                 "Python (Selection.where); they cannot be parsed from text")
        if prefix not in PREFIXES:
            raise SelectionError(f"unknown selection prefix {prefix!r} in {token!r}; valid prefixes: "
                                 f"{', '.join(PREFIXES)} (or a plain layer name or glob)")
        values = tuple(v for v in rest.split(",") if v)
        if not values:
            raise SelectionError(f"{prefix}: needs a value, e.g. {prefix}:{_EXAMPLES[prefix]}")
        if prefix in _POSITIONAL and len(values) != 1:
            raise SelectionError(f"{prefix}: takes one layer name, got {len(values)}")
        return _Term(prefix, values)
    return _Term("", tuple(v for v in token.split(",") if v))


_EXAMPLES = {"kind": "conv", "block": "3,4", "before": "layer2.0.conv1",
             "until": "layer2.0.conv1", "from": "layer2.0.conv1", "after": "layer2.0.conv1",
             "index": "2:7"}


_PRECEDENCE = {"|": 1, "-": 1, "&": 2}


def _render(node) -> str:
    """Text form that parses back to the same tree (parentheses only where needed)."""
    if isinstance(node, _Term):
        return node.text()
    if isinstance(node, _Where):
        return f"where:{node.label}"
    level = _PRECEDENCE[node.op]
    left, right = _render(node.left), _render(node.right)
    if isinstance(node.left, _Op) and _PRECEDENCE[node.left.op] < level:
        left = f"({left})"
    if isinstance(node.right, _Op) and _PRECEDENCE[node.right.op] <= level:
        right = f"({right})"
    return f"{left} {node.op} {right}"


# ----------------------------------------------------------------------------- evaluation

def _evaluate(node, lmap: LayerMap) -> set[str]:
    if isinstance(node, _Where):
        return {info.name for info in lmap if node.predicate(info)}
    if isinstance(node, _Op):
        left, right = _evaluate(node.left, lmap), _evaluate(node.right, lmap)
        return {"|": left | right, "&": left & right, "-": left - right}[node.op]
    return _evaluate_term(node, lmap)


def _evaluate_term(term: _Term, lmap: LayerMap) -> set[str]:
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


def _match_position(where: str, name: str, lmap: LayerMap) -> set[str]:
    pos = lmap[name].index  # raises SelectionError with the closest names
    pick = {
        "before": lambda i: i < pos,
        "until": lambda i: i <= pos,
        "from": lambda i: i >= pos,
        "after": lambda i: i > pos,
    }[where]
    return {info.name for info in lmap if pick(info.index)}
