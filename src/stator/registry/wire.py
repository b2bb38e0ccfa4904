"""Go-compatible wire helpers: the parts of Go's standard library whose exact behaviour Consul clients see.

Consul is a Go program, so its error texts and edge cases are those of ``strconv.ParseUint``/``ParseBool``,
``url.ParseQuery``/``Values.Encode`` and ``path.Clean``. Clients and tests match on those texts, so they are
reproduced here rather than approximated with Python's own parsers (which accept ``"+5"``, ``"5_0"``, Unicode
digits, ``"1e3"`` and other inputs Go rejects). ``time.ParseDuration`` lives in :mod:`stator.config.durations`,
the project's one duration parser.
"""

from __future__ import annotations

import re
from typing import Final

from stator.config.durations import go_quote as go_quote  # re-exported: the registry quotes like Go too

_MAX_UINT64: Final = (1 << 64) - 1


class GoError(ValueError):
    """An error whose ``str`` is exactly the text the Go function would have produced."""


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
