"""A subset of go-bexpr, the ``?filter=`` language of Consul's list endpoints.

Supported: ``==``, ``!=``, ``is empty``, ``is not empty``, ``in``, ``not in``, ``contains``, ``not contains``,
``matches``, ``not matches``, ``and``, ``or``, ``not``, parentheses; selectors ``A.B``, ``A["key"]``, ``A.0``;
values as ``"double"``/```raw``` strings, numbers, or bare words. Selectors are resolved on the JSON the endpoint
returns (so field names are the JSON keys); a selector through a list maps over its elements. Unlike Consul,
an unknown selector is not an error: it selects nothing (``==`` is false, ``!=`` true).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_/]*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")
_MISSING = object()
_TRUE = frozenset({"true", "True", "TRUE", "1", "t", "T"})
_FALSE = frozenset({"false", "False", "FALSE", "0", "f", "F"})


class BexprError(ValueError):
    pass


Segment = str | int


@dataclass(frozen=True)
class Match:
    selector: tuple[Segment, ...]
    op: str
    value: str | None
    negate: bool = False


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or" | "not"
    args: tuple[Node, ...]


Node = Match | BoolOp


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, what: str) -> BexprError:
        return BexprError(f"1:{self.i + 1} ({self.i}): {what}")

    def ws(self) -> bool:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1
        return self.i > start

    def keyword(self, word: str) -> bool:
        """Consume ``word`` if it is next as a whole word."""
        self.ws()
        end = self.i + len(word)
        if self.s[self.i : end] != word:
            return False
        if end < len(self.s) and (self.s[end].isalnum() or self.s[end] in "_/"):
            return False
        self.i = end
        return True

    def parse(self) -> Node:
        node = self.or_expr()
        self.ws()
        if self.i != len(self.s):
            raise self.error("unexpected input")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.keyword("or"):
            node = BoolOp("or", (node, self.and_expr()))
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.keyword("and"):
            node = BoolOp("and", (node, self.not_expr()))
        return node

    def not_expr(self) -> Node:
        save = self.i
        if self.keyword("not"):
            # "not" opens a negation only when an expression follows (not a bare selector called "not").
            return BoolOp("not", (self.not_expr(),))
        self.i = save
        return self.primary()

    def primary(self) -> Node:
        self.ws()
        if self.s.startswith("(", self.i):
            self.i += 1
            node = self.or_expr()
            self.ws()
            if not self.s.startswith(")", self.i):
                raise self.error("Unmatched parentheses")
            self.i += 1
            return node
        return self.match()

    def string(self) -> str | None:
        if self.i >= len(self.s) or self.s[self.i] not in '"`':
            return None
        quote = self.s[self.i]
        j = self.i + 1
        out = []
        while j < len(self.s) and self.s[j] != quote:
            if quote == '"' and self.s[j] == "\\" and j + 1 < len(self.s):
                out.append(self.s[j + 1])
                j += 2
                continue
            out.append(self.s[j])
            j += 1
        if j >= len(self.s):
            raise self.error("unterminated string")
        self.i = j + 1
        return "".join(out)

    def selector(self) -> tuple[Segment, ...]:
        self.ws()
        m = _IDENT.match(self.s, self.i)
        if m is None:
            raise self.error("Invalid selector")
        parts: list[Segment] = [m.group()]
        self.i = m.end()
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == ".":
                self.i += 1
                m = _IDENT.match(self.s, self.i)
                if m is not None:
                    parts.append(m.group())
                    self.i = m.end()
                    continue
                d = _DIGITS.match(self.s, self.i)
                if d is None:
                    raise self.error("Invalid selector")
                parts.append(int(d.group()))
                self.i = d.end()
            elif c == "[":
                self.i += 1
                self.ws()
                key = self.string()
                if key is None:
                    raise self.error("expected a string index")
                self.ws()
                if not self.s.startswith("]", self.i):
                    raise self.error("expected ]")
                self.i += 1
                parts.append(key)
            else:
                break
        return tuple(parts)

    def value(self) -> str:
        self.ws()
        text = self.string()
        if text is not None:
            return text
        m = _NUMBER.match(self.s, self.i)
        if m is not None:
            self.i = m.end()
            return m.group()
        sel = self.selector()
        return ".".join(str(p) for p in sel)

    def match(self) -> Match:
        self.ws()
        literal = self.string()
        if literal is None and self.i < len(self.s) and (self.s[self.i].isdigit() or self.s[self.i] in "-."):
            m = _NUMBER.match(self.s, self.i)
            if m is not None:
                literal = m.group()
                self.i = m.end()
        if literal is not None:
            negate = self.keyword("not")
            if not self.keyword("in"):
                raise self.error('expected "in" or "not in"')
            return Match(self.selector(), "in", literal, negate)
        selector = self.selector()
        self.ws()
        for op in ("==", "!="):
            if self.s.startswith(op, self.i):
                self.i += 2
                return Match(selector, "==", self.value(), op == "!=")
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("empty"):
                raise self.error('expected "empty"')
            return Match(selector, "empty", None, negate)
        save = self.i
        negate = self.keyword("not")
        for op in ("contains", "matches", "in"):
            if self.keyword(op):
                if op == "in":
                    # "word in Selector": the bare word parsed as a selector was the value.
                    return Match(self.selector(), "in", ".".join(str(p) for p in selector), negate)
                return Match(selector, op, self.value(), negate)
        self.i = save
        raise self.error('expected "==", "!=", "is", "in", "contains" or "matches"')


def _resolve(obj: Any, path: tuple[Segment, ...]) -> Any:
    for pos, seg in enumerate(path):
        if isinstance(obj, dict):
            obj = obj.get(str(seg), _MISSING)
        elif isinstance(obj, list):
            if isinstance(seg, int):
                obj = obj[seg] if 0 <= seg < len(obj) else _MISSING
            else:
                # A field through a list: the list of that field of every element.
                found = [_resolve(item, path[pos:]) for item in obj]
                return [x for x in found if x is not _MISSING]
        else:
            return _MISSING
        if obj is _MISSING:
            return _MISSING
    return obj


def _equal(actual: Any, literal: str) -> bool:
    if isinstance(actual, bool):
        return literal in (_TRUE if actual else _FALSE)
    if isinstance(actual, (int, float)):
        try:
            return float(literal) == float(actual)
        except ValueError:
            return False
    if isinstance(actual, str):
        return actual == literal
    if isinstance(actual, list):
        return any(_equal(a, literal) for a in actual)
    return False


def _evaluate(node: Node, obj: Any) -> bool:
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(_evaluate(a, obj) for a in node.args)
        if node.op == "or":
            return any(_evaluate(a, obj) for a in node.args)
        return not _evaluate(node.args[0], obj)
    actual = _resolve(obj, node.selector)
    result: bool
    if actual is _MISSING or actual is None:
        result = node.op == "empty"
    elif node.op == "==":
        result = _equal(actual, node.value or "")
    elif node.op == "empty":
        result = isinstance(actual, (str, list, dict)) and len(actual) == 0
    elif node.op in ("in", "contains"):
        value = node.value or ""
        if isinstance(actual, dict):
            result = value in actual
        elif isinstance(actual, list):
            result = any(_equal(a, value) for a in actual)
        elif isinstance(actual, str):
            result = value in actual
        else:
            result = False
    else:  # matches
        try:
            result = isinstance(actual, str) and re.search(node.value or "", actual) is not None
        except re.error:
            result = False
    return not result if node.negate else result


def compile_filter(expr: str) -> Callable[[Any], bool]:
    node = _Parser(expr).parse()
    if isinstance(node, Match) and node.op == "matches" and node.value is not None:
        try:
            re.compile(node.value)
        except re.error as exc:
            raise BexprError(f"invalid regular expression: {exc}") from None
    return lambda obj: _evaluate(node, obj)


def apply_filter(expr: str, data: T) -> T:
    """Keep the elements of a list (or the values of a dict) that match ``expr``."""
    pred = compile_filter(expr)
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if pred(v)}  # type: ignore[return-value]
    if isinstance(data, list):
        return [v for v in data if pred(v)]  # type: ignore[return-value]
    return data
