"""Text syntax of layer selections: tokenizer, recursive-descent parser, expression tree and
its canonical rendering (``str(Selection.parse(text))`` parses back to the same tree). The
grammar is documented in :mod:`robustlayers.layers.selection`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from robustlayers.errors import SelectionError
from robustlayers.layers.layermap import LayerInfo

PREFIXES = ("kind", "block", "before", "until", "from", "after", "index", "depth")
# Limits that keep parsing, rendering and evaluation well inside Python's recursion limit: the
# depth of the expression tree (one level per operator in a chain such as ``a | b | c``) and the
# nesting of parentheses. A longer list of layers fits in one term: ``conv1,conv2,layer1.*``.
MAX_DEPTH = 200
MAX_NESTING = 50
POSITIONAL = ("before", "until", "from", "after")
_OPERATORS = {"|": "|", "+": "|", "&": "&", "-": "-"}


def short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut to about ``limit`` characters for error messages."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"… ({len(text)} characters)"


def tree_depth(node) -> int:
    """Depth of an expression tree (a term is 1); stored on every :class:`Op`."""
    return node.depth if isinstance(node, Op) else 1


def make_op(op: str, left, right) -> "Op":
    """``Op(op, left, right)``, refused (SelectionError) beyond :data:`MAX_DEPTH` levels."""
    node = Op(op, left, right)
    if node.depth > MAX_DEPTH:
        raise SelectionError(
            f"selection expression is too deep (its tree has {node.depth} levels, at most "
            f"{MAX_DEPTH}); list many layers in one term (conv1,conv2,layer1.*), use a glob or "
            "a block:/kind:/index: range, or pass a list of layer names")
    return node


@dataclass(frozen=True)
class Term:
    prefix: str  # "" for names/globs, "all" for everything
    values: tuple[str, ...]

    def text(self) -> str:
        if self.prefix == "all":
            return "all"
        joined = ",".join(self.values)
        return f"{self.prefix}:{joined}" if self.prefix else joined


@dataclass(frozen=True)
class Op:
    op: str  # "|", "&", "-"
    left: object
    right: object
    depth: int = 0  # computed: 1 + the deeper operand's depth

    def __post_init__(self):
        object.__setattr__(self, "depth", 1 + max(tree_depth(self.left), tree_depth(self.right)))


@dataclass(frozen=True)
class Where:
    predicate: Callable[[LayerInfo], bool]
    label: str


class Parser:
    """Recursive descent: expr := conj (('|' | '+' | '-') conj)* ; conj := atom ('&' atom)* ;
    atom := '(' expr ')' | term."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.nesting = 0

    def parse(self):
        node = self._expr()
        if self.pos != len(self.tokens):
            raise SelectionError(f"unexpected {self.tokens[self.pos][1]!r} in selection "
                                 f"{short(self.text)}")
        return node

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _expr(self):
        node = self._conj()
        while self._peek()[0] == "op" and self._peek()[1] in "|-":
            op = self.tokens[self.pos][1]
            self.pos += 1
            node = make_op(op, node, self._conj())
        return node

    def _conj(self):
        node = self._atom()
        while self._peek() == ("op", "&"):
            self.pos += 1
            node = make_op("&", node, self._atom())
        return node

    def _atom(self):
        kind, value = self._peek()
        if kind is None:
            raise SelectionError(f"selection {short(self.text)} ends where a term was expected")
        self.pos += 1
        if kind == "(":
            self.nesting += 1
            if self.nesting > MAX_NESTING:
                raise SelectionError(f"selection {short(self.text)} nests parentheses more than "
                                     f"{MAX_NESTING} deep; flatten it")
            node = self._expr()
            if self._peek()[0] != ")":
                raise SelectionError(f"missing ')' in selection {short(self.text)}")
            self.pos += 1
            self.nesting -= 1
            return node
        if kind != "term":
            raise SelectionError(f"unexpected {value!r} in selection {short(self.text)}; a term "
                                 "(name, glob, kind:…, block:…, index:…, depth:…) was expected")
        return parse_term(value)


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
                f"unexpected '-' at position {i} in selection {short(text)}; write a difference with "
                "spaces around the minus, e.g. 'kind:conv - block:head'"
            )
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "()|+&":
                j += 1
            tokens.append(("term", text[i:j]))
            i = j
    return tokens


def parse_term(token: str) -> Term:
    if token == "all":
        return Term("all", ())
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
        if prefix in POSITIONAL and len(values) != 1:
            raise SelectionError(f"{prefix}: takes one layer name, got {len(values)}")
        return Term(prefix, values)
    return Term("", tuple(v for v in token.split(",") if v))


_EXAMPLES = {"kind": "conv", "block": "3,4", "before": "layer2.0.conv1",
             "until": "layer2.0.conv1", "from": "layer2.0.conv1", "after": "layer2.0.conv1",
             "index": "2:7", "depth": "11"}


_PRECEDENCE = {"|": 1, "-": 1, "&": 2}


def render(node) -> str:
    """Text form that parses back to the same tree (parentheses only where needed)."""
    if isinstance(node, Term):
        return node.text()
    if isinstance(node, Where):
        return f"where:{node.label}"
    level = _PRECEDENCE[node.op]
    left, right = render(node.left), render(node.right)
    if isinstance(node.left, Op) and _PRECEDENCE[node.left.op] < level:
        left = f"({left})"
    if isinstance(node.right, Op) and _PRECEDENCE[node.right.op] <= level:
        right = f"({right})"
    return f"{left} {node.op} {right}"
