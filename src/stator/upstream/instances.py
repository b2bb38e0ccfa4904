"""Instances of an upstream service and the live state kept for each while it is in the set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

OutlierState = Literal["healthy", "ejected", "probing"]
URL_CACHE_SIZE = 256  # parsed URLs kept per endpoint


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of an upstream as discovery reported it. Two instances are the same when id, address,
    port and scheme are (tags and meta changing alone do not make it a new instance)."""

    id: str
    address: str
    port: int
    scheme: str = "http"
    tags: tuple[str, ...] = field(default=(), compare=False)
    meta: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.base_url, "tags": list(self.tags), "meta": dict(self.meta)}


def parse_static(entries: list[str], scheme: str = "http") -> tuple[Instance, ...]:
    """``host:port``, ``[v6]:port`` or ``scheme://host:port`` entries, optionally named ``id=...``.

    Raises ValueError naming the bad entry.
    """
    out: dict[str, Instance] = {}
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        ident = ""
        if "=" in entry.split("://", 1)[0]:
            ident, entry = (part.strip() for part in entry.split("=", 1))
        parts = urlsplit(entry if "://" in entry else f"{scheme}://{entry}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError(f"bad upstream instance {raw!r}: expected host:port or http(s)://host:port")
        instance = Instance(ident or f"{parts.hostname}:{port}", parts.hostname, port, parts.scheme)
        out[instance.id] = instance
    return tuple(out.values())


class Endpoint:
    """An instance in the current set, with what the balancer and the outlier detector track for it.

    Mutated only on the event loop (no locks): ``outstanding`` by the client around each attempt, the outlier
    fields by :class:`~stator.upstream.outlier.OutlierDetector`.
    """

    __slots__ = (
        "base_url",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "instance",
        "metrics",
        "outstanding",
        "probe_in_flight",
        "requests",
        "state",
        "urls",
        "window",
    )

    def __init__(self, instance: Instance, window: Any, metrics: Any = None) -> None:
        self.instance = instance
        self.outstanding = 0
        self.requests = 0
        self.state: OutlierState = "healthy"
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        self.ejections = 0  # how many times in a row it was ejected: the next ejection lasts this many base times
        self.probe_in_flight = False
        self.window = window  # RollingCounts of attempts and failures, for the failure-rate rule
        self.metrics = metrics  # the instance's metric children, cached (telemetry)
        # The instance's address never changes for an endpoint (a new address is a new endpoint): its base URL
        # and the parsed URLs of the paths called on it are kept, so a call does not re-parse the same URL.
        self.base_url = instance.base_url
        self.urls: dict[str, httpx.URL] = {}

    def url(self, path: str) -> httpx.URL:
        """``path`` (with its query, if any) on this instance, parsed once; raises httpx.InvalidURL when bad."""
        url = self.urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if len(self.urls) >= URL_CACHE_SIZE:
                self.urls.clear()  # paths with ids or queries in them: keep the cache bounded, simply
            self.urls[path] = url
        return url

    @property
    def id(self) -> str:
        return self.instance.id

    def snapshot(self, now: float) -> dict[str, Any]:
        total, failed = self.window.counts()
        return {
            **self.instance.as_json(),
            "state": self.state,
            "outstanding": self.outstanding,
            "requests": self.requests,
            "consecutive_failures": self.consecutive_failures,
            "recent_requests": total,
            "recent_failures": failed,
            "ejections": self.ejections,
            "ejected_for_seconds": round(max(0.0, self.ejected_until - now), 3) if self.state == "ejected" else None,
        }
