"""PromQL instant-vector selectors — ``name``, ``name{l="v",...}``, ``{__name__=~"re"}`` — parsed and matched.

Only selectors: the receiver answers for the latest samples it holds, it is not a query engine. Strings follow
PromQL (double or single quotes with Go escapes, or backquotes raw); regexes are anchored at both ends; like
Prometheus, a selector must contain at least one matcher that does not match the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OP: Final = re.compile(r"=~|!~|!=|=")
_SPACE: Final = re.compile(r"\s*")
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


class SelectorError(ValueError):
    """A query that is not a selector this receiver answers (400 ``bad_data``)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    test: Callable[[str], bool]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.test(labels.get(self.name, ""))


@dataclass(frozen=True, slots=True)
class Selector:
    matchers: tuple[Matcher, ...]

    @property
    def metric_name(self) -> str | None:
        """The metric name an equality matcher pins (lets the store narrow the search), else None."""
        for m in self.matchers:
            if m.name == "__name__" and m.op == "=":
                return m.value
        return None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.test(labels.get(m.name, "")) for m in self.matchers)


def _matcher(name: str, op: str, value: str) -> Matcher:
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(f"(?:{value})", re.DOTALL)
        except re.error as exc:
            raise SelectorError(f"invalid regular expression {value!r}: {exc}") from None
        if op == "=~":
            return Matcher(name, op, value, lambda v: pattern.fullmatch(v) is not None)
        return Matcher(name, op, value, lambda v: pattern.fullmatch(v) is None)
    if op == "=":
        return Matcher(name, op, value, lambda v: v == value)
    return Matcher(name, op, value, lambda v: v != value)


def _string(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] not in "\"'`":
        raise SelectorError(f"expected a quoted string at position {pos}")
    quote = text[pos]
    pos += 1
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(out), pos + 1
        if ch == "\\" and quote != "`":
            pos += 1
            if pos >= len(text):
                break
            esc = text[pos]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                pos += 1
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            if width is not None:
                digits = text[pos + 1 : pos + 1 + width]
                if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise SelectorError(f"invalid escape \\{esc}{digits} at position {pos}")
                out.append(chr(int(digits, 16)))
                pos += 1 + width
                continue
            if esc in "01234567":
                digits = text[pos : pos + 3]
                if len(digits) != 3 or not all(c in "01234567" for c in digits):
                    raise SelectorError(f"invalid octal escape at position {pos}")
                out.append(chr(int(digits, 8)))
                pos += 3
                continue
            raise SelectorError(f"unknown escape sequence \\{esc} at position {pos}")
        if ch == "\n" and quote != "`":
            break
        out.append(ch)
        pos += 1
    raise SelectorError("unterminated string")


def parse(text: str) -> Selector:
    """Parse one selector; raise :class:`SelectorError` for anything else (functions, ranges, operators)."""
    pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    matchers: list[Matcher] = []
    name = _NAME.match(text, pos)
    if name is not None:
        matchers.append(_matcher("__name__", "=", name.group()))
        pos = _SPACE.match(text, name.end()).end()  # type: ignore[union-attr]
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while True:
            pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if pos < len(text) and text[pos] == "}":
                pos += 1
                break
            label = _LABEL.match(text, pos)
            if label is None:
                raise SelectorError(f"expected a label name at position {pos} in {text!r}")
            pos = _SPACE.match(text, label.end()).end()  # type: ignore[union-attr]
            op = _OP.match(text, pos)
            if op is None:
                raise SelectorError(f"expected =, !=, =~ or !~ at position {pos} in {text!r}")
            pos = _SPACE.match(text, op.end()).end()  # type: ignore[union-attr]
            value, pos = _string(text, pos)
            if label.group() == "__name__" and name is not None:
                raise SelectorError("metric name given twice (before the braces and as __name__)")
            matchers.append(_matcher(label.group(), op.group(), value))
            pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "}":
                pos += 1
                break
            raise SelectorError(f"expected ',' or '}}' at position {pos} in {text!r}")
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    if pos != len(text):
        raise SelectorError(
            f"unsupported query {text!r}: only instant-vector selectors (name or {{label matchers}}) are answered"
        )
    if not matchers:
        raise SelectorError("empty selector")
    if all(m.test("") for m in matchers):
        raise SelectorError("vector selector must contain at least one non-empty matcher")
    return Selector(tuple(matchers))
