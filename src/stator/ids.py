"""Identifiers: short random ids for processes and workers, sortable ids for requests."""

from __future__ import annotations

import os
import secrets
import string
import time

_ALNUM = string.ascii_letters + string.digits


def short_id(n: int = 7) -> str:
    """``n`` random alphanumerics, like the seed's run_id (7 chars: ~41 bits, plenty per process start)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def uuid7() -> str:
    """A UUIDv7 (RFC 9562) string: time-ordered, so request ids sort by arrival in logs and indexes."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
