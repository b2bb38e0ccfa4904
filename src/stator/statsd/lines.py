"""StatsD and DogStatsD lines: names, tags, values, and packing lines into datagrams.

Grammar: ``name:value[:value...]|type[|@rate][|#tag,tag]``, lines separated by ``\\n`` within a datagram.

Plain StatsD has no tags. Labels (and constant tags) are **folded into the name** by one rule: after the metric
name, each label in key order as ``.key.value``, with every character outside ``[A-Za-z0-9_-]`` in keys and values
replaced by ``_`` (``/`` by ``-``), e.g. ``http_requests_total{method="GET",route="/items/{id}"}`` becomes
``http_requests_total.method.GET.route.-items-_id_``. DogStatsD keeps the name and sends labels as
``#key:value`` tags (``|``, ``,``, ``#``, ``@`` and newlines in them become ``_``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal

Format = Literal["statsd", "dogstatsd"]
Tags = tuple[tuple[str, str], ...]

_FOLD: Final = re.compile(r"[^A-Za-z0-9_\-]")
_NAME: Final = re.compile(r"[^A-Za-z0-9_.\-]")
_TAG: Final = re.compile(r"[|,#@\n\r]")


def fold(value: str) -> str:
    return _FOLD.sub("_", value.replace("/", "-")) or "_"


def metric_name(prefix: str, name: str, tags: Tags, fmt: Format) -> str:
    """The line's name: prefixed, sanitized, and (plain StatsD) with the tags folded in."""
    base = _NAME.sub("_", name)
    if prefix:
        base = (prefix if prefix.endswith(".") else prefix + ".") + base
    if fmt == "statsd" and tags:
        base += "".join(f".{fold(k)}.{fold(v)}" for k, v in sorted(tags))
    return base


def tag_suffix(tags: Tags, fmt: Format) -> str:
    """``|#k:v,...`` for DogStatsD (empty for plain StatsD or no tags)."""
    if fmt != "dogstatsd" or not tags:
        return ""
    return "|#" + ",".join(f"{_TAG.sub('_', k)}:{_TAG.sub('_', v)}" if v else _TAG.sub("_", k) for k, v in tags)


def number(value: float) -> str:
    """Shortest text for a value; integers without a decimal point."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(value)
    return text if "e" not in text else f"{value:.17f}".rstrip("0").rstrip(".")


def rate_text(power: int) -> str:
    """``2**-power`` written exactly in decimal (no exponent: Etsy's statsd only reads ``@[0-9.]+``)."""
    return f"{2.0**-power:.{power}f}"


def counter_line(name: str, value: float, suffix: str) -> str:
    return f"{name}:{number(value)}|c{suffix}"


def gauge_lines(name: str, value: float, suffix: str, fmt: Format) -> list[str]:
    """A gauge set to ``value``. In plain StatsD a leading sign means "change by", so a negative value is sent as
    ``name:0|g`` then ``name:-x|g`` (the daemon's documented way to set a negative gauge), in one datagram."""
    if not math.isfinite(value):
        return []
    if fmt == "statsd" and value < 0:
        return [f"{name}:0|g{suffix}\n{name}:{number(value)}|g{suffix}"]
    return [f"{name}:{number(value)}|g{suffix}"]


def value_lines(
    name: str, values: Sequence[float], kind: str, suffix: str, fmt: Format, max_bytes: int, rate: str = ""
) -> Iterator[str]:
    """Observations of one series: packed ``name:v1:v2:...|kind`` lines no longer than ``max_bytes`` (DogStatsD
    1.1), or one line per value (plain StatsD)."""
    tail = f"|{kind}" + (f"|@{rate}" if rate else "") + suffix
    if fmt == "statsd":
        for v in values:
            yield f"{name}:{number(v)}{tail}"
        return
    budget = max_bytes - len(name) - len(tail)
    parts: list[str] = []
    used = 0
    for v in values:
        text = number(v)
        if parts and used + 1 + len(text) > budget:
            yield f"{name}:{':'.join(parts)}{tail}"
            parts, used = [], 0
        parts.append(text)
        used += 1 + len(text)
    if parts:
        yield f"{name}:{':'.join(parts)}{tail}"


def pack(lines: Iterable[str], max_bytes: int) -> tuple[list[bytes], int]:
    """Datagrams of whole lines joined by ``\\n``, each at most ``max_bytes``; also the count of lines too long to
    fit any datagram (left out: an agent would truncate or drop them)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    oversize = 0
    for line in lines:
        data = line.encode()
        n = len(data)
        if n > max_bytes:
            oversize += 1
            continue
        if current and size + 1 + n > max_bytes:
            out.append(b"\n".join(current))
            current, size = [], 0
        size += n + (1 if current else 0)
        current.append(data)
    if current:
        out.append(b"\n".join(current))
    return out, oversize
