"""Server-side rate limiting: a token bucket per key in front of the application, answering 429.

``RateLimitMiddleware(app, rate=50, burst=20)`` admits ``burst`` requests back to back, then ``rate`` per second;
a request beyond that is answered at once — never queued, never slept on, so the event loop is not held and a
flood costs one dict lookup and a few float operations per rejected request — with::

    429 Too Many Requests
    Retry-After: <whole seconds until a token is available, at least 1>
    {"error": "rate limit exceeded", "retry_after": <seconds, fractional>, "limit": {"rate": .., "burst": ..}}

``key`` picks what a bucket is per: None (one bucket for the whole service), :func:`client_key` (per client
address), :func:`header_key` (per value of a header, e.g. an API key), or any ``Callable[[Scope], str | None]``
(a None key is not limited). At most ``max_keys`` buckets are kept; the least recently seen is forgotten (it
comes back full, which only ever favours the client).

The bucket is kept as one float per key — the time at which it will be full again (GCRA, the "virtual
scheduling" form of a token bucket): the same admissions as a token bucket with ``burst`` tokens refilled at
``rate``, without a per-key object. Placed inside the observability middleware (wrap the application, not the
service), rejected requests are counted, logged and traced like any other 429; the middleware is also a
collector of its own counts (``stator_ratelimit_admitted_total``, ``stator_ratelimit_rejected_total``,
``stator_ratelimit_keys``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.asgi import ASGIApp, Receive, Scope, Send, header

KeyFunc = Callable[[Scope], str | None]


def client_key(scope: Scope) -> str | None:
    """The client's address (the socket peer; put a trusted proxy's header in a key function of your own)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def header_key(name: str) -> KeyFunc:
    """The value of request header ``name`` (requests without it share the ``""`` bucket)."""
    raw = name.lower().encode("latin-1")

    def key(scope: Scope) -> str | None:
        value = header(scope, raw)
        return value.decode("latin-1") if value is not None else ""

    return key


def key_from_setting(setting: str) -> KeyFunc | None:
    """``STATOR_RATELIMIT_KEY``: ``""`` (one bucket), ``client``, or ``header:NAME``."""
    if not setting:
        return None
    if setting == "client":
        return client_key
    if setting.startswith("header:") and len(setting) > len("header:"):
        return header_key(setting.split(":", 1)[1])
    raise ValueError(f"bad rate-limit key {setting!r}: expected '', 'client' or 'header:NAME'")


class KeyedTokenBuckets:
    """Per-key token buckets (GCRA). ``take(key)`` returns 0.0 when admitted, else the seconds until it would be."""

    def __init__(
        self, rate: float, burst: int, max_keys: int = 10000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate limit needs rate > 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval  # how far ahead of now a bucket may be booked
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()  # key -> theoretical arrival time of the next request

    def take(self, key: str) -> float:
        now = self._clock()
        tats = self._tat
        tat = tats.get(key)
        if tat is None or tat < now:
            tat = now
        allowed_at = tat - self._tolerance
        if now < allowed_at:
            return allowed_at - now  # refused: nothing booked
        tats[key] = tat + self._interval
        tats.move_to_end(key)
        if len(tats) > self.max_keys:
            tats.popitem(last=False)
        return 0.0

    def __len__(self) -> int:
        return len(self._tat)


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        burst: int,
        key: KeyFunc | None = None,
        max_keys: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.buckets = KeyedTokenBuckets(rate, burst, max_keys, clock)
        self.key = key
        self.admitted = 0
        self.rejected = 0
        self._limit = {"rate": rate, "burst": burst}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = "" if self.key is None else self.key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(key)
        if wait == 0.0:
            self.admitted += 1
            await self.app(scope, receive, send)
            return
        self.rejected += 1
        body = orjson.dumps({"error": "rate limit exceeded", "retry_after": round(wait, 3), "limit": self._limit})
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # A collector too (``service.add_collector(middleware)``): counts read at scrape time, nothing on the hot path.
    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "stator_ratelimit_admitted", "Requests admitted by the server-side rate limit.", self.admitted
        )
        yield CounterMetricFamily(
            "stator_ratelimit_rejected", "Requests answered 429 by the server-side rate limit.", self.rejected
        )
        yield GaugeMetricFamily("stator_ratelimit_keys", "Rate-limit buckets currently tracked.", len(self.buckets))

    def monitor(self) -> dict[str, object]:
        return {**self._limit, "keys": len(self.buckets), "admitted": self.admitted, "rejected": self.rejected}
