"""Go-compatible wire helpers: the parts of Go's standard library whose exact behaviour Consul clients see.

Consul is a Go program, so its error texts and edge cases are those of ``time.ParseDuration``,
``strconv.ParseUint``/``ParseBool``, ``url.ParseQuery``/``Values.Encode`` and ``path.Clean``. Clients and tests
match on those texts, so they are reproduced here rather than approximated with Python's own parsers (which
accept ``"+5"``, ``"5_0"``, Unicode digits, ``"1e3"`` and other inputs Go rejects).
"""

from __future__ import annotations

import re
from typing import Final

_NS: Final = 1
_US: Final = 1_000
_MS: Final = 1_000_000
_S: Final = 1_000_000_000
_M: Final = 60 * _S
_H: Final = 60 * _M
_UNITS: Final[dict[str, int]] = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # micro sign
    "\u03bcs": _US,  # Greek small letter mu
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_MAX_INT64: Final = (1 << 63) - 1
_MAX_UINT64: Final = (1 << 64) - 1


class GoError(ValueError):
    """An error whose ``str`` is exactly the text the Go function would have produced."""


def go_quote(text: str) -> str:
    """``strconv.Quote``: double quotes, backslash escapes for quotes and non-printable characters."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def parse_duration(text: str) -> int:
    """``time.ParseDuration``: a Go duration string to integer nanoseconds, with Go's error texts."""
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise _invalid_duration(orig)
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise _invalid_duration(orig)
        # Leading integer part.
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        pre = i > 0
        whole = int(s[:i]) if pre else 0
        if whole > _MAX_INT64:
            raise _invalid_duration(orig)
        s = s[i:]
        # Optional fraction: Go keeps the digits that fit and ignores the rest (precision, not an error).
        frac_digits = ""
        post = False
        if s and s[0] == ".":
            s = s[1:]
            j = 0
            while j < len(s) and "0" <= s[j] <= "9":
                j += 1
            post = j > 0
            frac_digits = s[:j]
            s = s[j:]
        if not pre and not post:
            raise _invalid_duration(orig)
        # Unit: everything up to the next digit or dot.
        k = 0
        while k < len(s) and not (s[k] == "." or "0" <= s[k] <= "9"):
            k += 1
        if k == 0:
            raise GoError("time: missing unit in duration " + go_quote(orig))
        unit_text = s[:k]
        s = s[k:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise GoError("time: unknown unit " + go_quote(unit_text) + " in duration " + go_quote(orig))
        if whole > (1 << 63) // unit:
            raise _invalid_duration(orig)
        value = whole * unit
        if frac_digits:
            frac_digits = frac_digits[:18]
            value += int(int(frac_digits) * (unit / 10 ** len(frac_digits)))
            if value > 1 << 63:
                raise _invalid_duration(orig)
        total += value
        if total > 1 << 63:
            raise _invalid_duration(orig)
    if neg:
        return -total
    if total > _MAX_INT64:
        raise _invalid_duration(orig)
    return total


def _invalid_duration(orig: str) -> GoError:
    return GoError("time: invalid duration " + go_quote(orig))


def duration_string(ns: int) -> str:
    """``time.Duration.String``: ``1m30s``, ``500ms``, ``1.5µs``, ``0s``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    sign = "-" if neg else ""
    if u < _S:
        if u < _US:
            return f"{sign}{u}ns"
        if u < _MS:
            return f"{sign}{_fmt_frac(u, 3)}\u00b5s"
        return f"{sign}{_fmt_frac(u, 6)}ms"
    hours, rem = divmod(u, _H)
    minutes, rem = divmod(rem, _M)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _fmt_frac(rem, 9) + "s"


def _fmt_frac(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


_DIGITS = re.compile(r"[0-9]+")


def parse_uint(text: str) -> int:
    """``strconv.ParseUint(text, 10, 64)`` with Go's error texts (no sign, no underscores, ASCII digits)."""
    if not _DIGITS.fullmatch(text):
        raise GoError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if value > _MAX_UINT64:
        raise GoError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise GoError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


_HEX = b"0123456789abcdefABCDEF"


def _query_unescape(raw: bytes) -> str | None:
    """``url.QueryUnescape``: ``+`` is a space, ``%XX`` a byte; a malformed escape is an error (None)."""
    if b"%" not in raw and b"+" not in raw:
        return raw.decode("utf-8", "replace")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # %
            if i + 2 >= n:
                return None
            h1, h2 = raw[i + 1], raw[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                return None
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        elif c == 0x2B:  # +
            out.append(0x20)
            i += 1
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "replace")


def parse_query(raw: bytes) -> dict[str, list[str]]:
    """``url.ParseQuery`` as Consul uses it (``req.URL.Query()``): malformed pairs are dropped, not fatal.

    Pairs containing ``;`` are dropped (Go >= 1.17), a pair without ``=`` has the empty value (so ``?recurse``
    is present), and repeated keys keep every value in order (``?tag=a&tag=b``).
    """
    out: dict[str, list[str]] = {}
    for pair in raw.split(b"&"):
        if not pair or b";" in pair:
            continue
        key_raw, _, value_raw = pair.partition(b"=")
        key = _query_unescape(key_raw)
        if key is None:
            continue
        value = _query_unescape(value_raw)
        if value is None:
            continue
        out.setdefault(key, []).append(value)
    return out


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def query_escape(text: str) -> str:
    """``url.QueryEscape``: spaces become ``+``, everything outside ``[A-Za-z0-9-_.~]`` is ``%XX``."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def query_encode(values: dict[str, list[str]]) -> str:
    """``url.Values.Encode``: keys sorted, values in order, ``k=v`` joined by ``&``."""
    parts: list[str] = []
    for key in sorted(values):
        ek = query_escape(key)
        parts.extend(f"{ek}={query_escape(v)}" for v in values[key])
    return "&".join(parts)


def clean_path(path: str) -> str:
    """``path.Clean`` plus ServeMux's rule of keeping a trailing slash: what Go's mux redirects to (301)."""
    if path[:1] == "/" and "//" not in path and "/." not in path:
        return path  # already clean: the common case, answered without splitting
    if path == "":
        return "/"
    if path[0] != "/":
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned
