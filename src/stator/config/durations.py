"""Go-style duration strings (``500ms``, ``10s``, ``1m30s``), the format operators already use for Consul,
Prometheus and Kubernetes: the project's one parser of them.

:func:`parse_duration_ns` is Go's ``time.ParseDuration`` exactly (grammar, integer-nanosecond arithmetic,
overflow rules and error texts, which Consul clients see verbatim); :func:`parse_duration` is the same parse in
float seconds, the unit asyncio and configuration use."""

from __future__ import annotations

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


class DurationError(ValueError):
    """A string Go's ``time.ParseDuration`` rejects; ``str`` is Go's error text, byte for byte."""


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: double quotes, backslash escapes for quotes and control characters, non-printables
    as ``\\x``/``\\u``/``\\U`` (the duration errors and the dev registry's Consul error texts both quote this way)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
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


_ESCAPES: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


def _invalid(orig: str) -> DurationError:
    return DurationError("time: invalid duration " + go_quote(orig))


def parse_duration_ns(text: str) -> int:
    """``time.ParseDuration``: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z\u00b5\u03bc]+)+`` to integer nanoseconds.

    Units ``ns``, ``us``/``\u00b5s``/``\u03bcs``, ``ms``, ``s``, ``m``, ``h``; a unit on every number except a lone
    ``0``; fractions on any unit (``1.5h``, ``.5s``, ``1.s``); digits past nanosecond precision are ignored, as in Go;
    more than int64 nanoseconds is an error. No spaces, no exponent, no underscores, ASCII digits only."""
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise _invalid(orig)
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise _invalid(orig)
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        pre = i > 0
        whole = int(s[:i]) if pre else 0
        if whole > _MAX_INT64:
            raise _invalid(orig)
        s = s[i:]
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
            raise _invalid(orig)
        k = 0
        while k < len(s) and not (s[k] == "." or "0" <= s[k] <= "9"):
            k += 1
        if k == 0:
            raise DurationError("time: missing unit in duration " + go_quote(orig))
        unit_text = s[:k]
        s = s[k:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError("time: unknown unit " + go_quote(unit_text) + " in duration " + go_quote(orig))
        if whole > (1 << 63) // unit:
            raise _invalid(orig)
        value = whole * unit
        if frac_digits:
            # Go accumulates the fraction as an integer scaled by a power of ten (digits that would overflow
            # are dropped), then adds int64(float64(f) * (float64(unit) / scale)).
            frac_digits = frac_digits[:18]
            value += int(int(frac_digits) * (unit / 10 ** len(frac_digits)))
            if value > 1 << 63:
                raise _invalid(orig)
        total += value
        if total > 1 << 63:
            raise _invalid(orig)
    if neg:
        return -total
    if total > _MAX_INT64:
        raise _invalid(orig)
    return total


def parse_duration(text: str) -> float:
    """Parse a Go duration string into seconds (surrounding whitespace ignored, as for any setting).

    As in Go, a unit is required on every number except a bare ``0``, and a leading sign is allowed; errors are
    :class:`DurationError` (a ``ValueError``): Go's text plus a hint for whoever wrote the setting."""
    try:
        return parse_duration_ns(text.strip()) / 1e9
    except DurationError as exc:
        raise DurationError(f"{exc}: expected a number with a unit (ns, us, ms, s, m, h)") from None


def format_duration_ns(ns: int) -> str:
    """``time.Duration.String``: ``1m30s``, ``500ms``, ``1.5\u00b5s``, ``0s``."""
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


def format_duration(seconds: float) -> str:
    """Format seconds the way Go's ``time.Duration.String`` does (``1m30s``, ``500ms``, ``0s``)."""
    return format_duration_ns(round(seconds * 1e9))
