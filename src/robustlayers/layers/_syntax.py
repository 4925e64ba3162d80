"""Text syntax of layer selections: tokenizer, recursive-descent parser, expression tree and
its canonical rendering (``str(Selection.parse(text))`` parses back to the same tree). The
grammar is documented in :mod:`robustlayers.layers.selection`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from robustlayers.layers.layermap import LayerInfo

PREFIXES = ("kind", "block", "before", "until", "from", "after", "index")
POSITIONAL = ("before", "until", "from", "after")
_OPERATORS = {"|": "|", "+": "|", "&": "&", "-": "-"}


class SelectionError(ValueError):
    """A selection that cannot be parsed, names an unknown layer, or matches nothing."""


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
            node = Op(op, node, self._conj())
        return node

    def _conj(self):
        node = self._atom()
        while self._peek() == ("op", "&"):
            self.pos += 1
            node = Op("&", node, self._atom())
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
             "index": "2:7"}


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
