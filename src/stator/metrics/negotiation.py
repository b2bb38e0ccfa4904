"""Content negotiation for ``/metrics``: Prometheus text 0.0.4 or OpenMetrics 1.0.0, gzip or not.

prometheus_client's ``choose_encoder`` picks OpenMetrics whenever it is listed, ignoring ``q`` weights. Here the
``Accept`` header is honoured as RFC 9110 says: the highest ``q`` wins; on a tie an explicit type beats a
wildcard, then the order of the header decides. Media types we cannot produce (protobuf, OpenMetrics 2.0) are
skipped. Without an acceptable type (no header, ``*/*``, ``application/json``...) the answer is the text
format, which every scraper understands — a 406 would only turn a working scrape into a failed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Format = Literal["text", "openmetrics"]

TEXT_CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE: Final = b"application/openmetrics-text; version=1.0.0; charset=utf-8"
CONTENT_TYPES: Final[dict[Format, bytes]] = {"text": TEXT_CONTENT_TYPE, "openmetrics": OPENMETRICS_CONTENT_TYPE}

# OpenMetrics versions whose text we produce (0.0.1 is the pre-1.0 name of the same format).
_OPENMETRICS_VERSIONS: Final = frozenset({"", "1.0.0", "0.0.1"})
# text/plain 1.0.0 only adds quoted UTF-8 names; our legacy-named output is valid 0.0.4 for such a client too.
_TEXT_VERSIONS: Final = frozenset({"", "0.0.4", "1.0.0"})


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]
    q: float


def _quality(raw: str) -> float:
    try:
        q = float(raw)
    except ValueError:
        return 0.0
    if not 0.0 <= q <= 1.0 or q != q:  # out of range or NaN: treat as not acceptable
        return 0.0
    return q


def parse_header_list(header: str) -> list[MediaRange]:
    """``type;k=v;q=0.5, ...`` into lower-cased types with parameters and a quality (1 when absent)."""
    ranges: list[MediaRange] = []
    for item in header.split(","):
        parts = item.split(";")
        kind = parts[0].strip().lower()
        if not kind:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if not sep:
                continue
            key = key.strip().lower()
            value = value.strip().strip('"')
            if key == "q":
                q = _quality(value)
            else:
                params[key] = value
        ranges.append(MediaRange(kind, params, q))
    return ranges


def _producible(media: MediaRange) -> tuple[Format, bool] | None:
    """What we would send for this media range, and whether it named the type explicitly (not a wildcard)."""
    version = media.params.get("version", "")
    if media.type == "application/openmetrics-text":
        return ("openmetrics", True) if version in _OPENMETRICS_VERSIONS else None
    if media.type == "text/plain":
        return ("text", True) if version in _TEXT_VERSIONS else None
    if media.type in ("*/*", "text/*"):
        return ("text", False)
    if media.type == "application/*":
        return ("openmetrics", False)
    return None


def negotiate(accept: str | None) -> Format:
    """The exposition format for an ``Accept`` header (None: no header)."""
    if not accept:
        return "text"
    best: tuple[float, bool, int] | None = None
    chosen: Format = "text"
    for index, media in enumerate(parse_header_list(accept)):
        if media.q <= 0:
            continue
        producible = _producible(media)
        if producible is None:
            continue
        fmt, explicit = producible
        rank = (media.q, explicit, -index)
        if best is None or rank > best:
            best, chosen = rank, fmt
    return chosen


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when ``Accept-Encoding`` allows gzip (``gzip``/``x-gzip`` or ``*`` with q > 0, not refused)."""
    if not accept_encoding:
        return False
    explicit: float | None = None
    wildcard: float | None = None
    for coding in parse_header_list(accept_encoding):
        if coding.type in ("gzip", "x-gzip"):
            explicit = coding.q if explicit is None else max(explicit, coding.q)
        elif coding.type == "*":
            wildcard = coding.q
    if explicit is not None:
        return explicit > 0
    return wildcard is not None and wildcard > 0
