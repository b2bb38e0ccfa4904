"""RED metrics for HTTP: rate and errors (``http_requests_total``), duration, sizes, in-flight.

Why not prometheus_client's Counter/Histogram here: every request would pay ~9 lock-protected updates across 5
metric objects plus child lookups — the largest single cost of the middleware in a profile, and the HTTP benchmark
(``bench/bench_http.py``) is the judge. The middleware records on the event-loop thread only, so plain dict and
list updates suffice: a request costs a few dict lookups, one ``bisect`` per histogram and integer increments.
The off-loop scrape reads through :meth:`RedMetrics.collect`, which snapshots each table with single C-level calls
(``list(dict.items())``, ``list(counts)``: atomic under the GIL), so it never sees a table mid-resize; bucket
counts and ``_count`` come from the same snapshot and always agree.

Each metric admits at most ``max_label_sets`` distinct label sets; past that, a new set is recorded with
``route="<overflow>"`` and counted in ``stator_http_dropped_label_sets_total{metric}`` — a route explosion (a
framework that reports raw paths, a scanner walking random URLs) cannot take down Prometheus.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

OVERFLOW = "<overflow>"
SIZE_BUCKETS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


class _Histogram:
    """Per-bucket (non-cumulative) counts, the sum, and the latest exemplar of each bucket."""

    __slots__ = ("counts", "exemplars", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.sum = 0.0
        self.exemplars: list[tuple[dict[str, str], float, float] | None] | None = None

    def observe(self, bounds: Sequence[float], value: float, exemplar: dict[str, str] | None = None) -> None:
        i = bisect_left(bounds, value)
        self.counts[i] += 1
        self.sum += value
        if exemplar is not None:
            if self.exemplars is None:
                self.exemplars = [None] * len(self.counts)
            self.exemplars[i] = (exemplar, value, time.time())


class RedMetrics:
    """The HTTP metrics of one service; register it on the service's registry as a collector."""

    def __init__(self, buckets: Sequence[float], max_label_sets: int) -> None:
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        self.bounds = (*bounds, math.inf)
        self.size_bounds = (*SIZE_BUCKETS, math.inf)
        self.cap = max_label_sets
        self.requests: dict[tuple[str, str, str], int] = {}
        self.duration: dict[tuple[str, str], _Histogram] = {}
        self.request_size: dict[tuple[str, str], _Histogram] = {}
        self.response_size: dict[tuple[str, str], _Histogram] = {}
        self.dropped = {
            "http_requests_total": 0,
            "http_request_duration_seconds": 0,
            "http_request_size_bytes": 0,
            "http_response_size_bytes": 0,
        }
        self.in_flight = 0

    def record(
        self,
        method: str,
        route: str,
        status: int,
        duration: float,
        request_bytes: int,
        response_bytes: int,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        key3 = (method, route, str(status))
        requests = self.requests
        if key3 in requests:
            requests[key3] += 1
        else:
            if len(requests) >= self.cap:
                self.dropped["http_requests_total"] += 1
                key3 = (method, OVERFLOW, key3[2])
            requests[key3] = requests.get(key3, 0) + 1
        key = (method, route)
        self._hist(self.duration, "http_request_duration_seconds", key, len(self.bounds)).observe(
            self.bounds, duration, exemplar
        )
        sb = self.size_bounds
        self._hist(self.request_size, "http_request_size_bytes", key, len(sb)).observe(sb, request_bytes)
        self._hist(self.response_size, "http_response_size_bytes", key, len(sb)).observe(sb, response_bytes)

    def _hist(self, table: dict[tuple[str, str], _Histogram], name: str, key: tuple[str, str], n: int) -> _Histogram:
        hist = table.get(key)
        if hist is None:
            if len(table) >= self.cap:
                self.dropped[name] += 1
                key = (key[0], OVERFLOW)
                hist = table.get(key)
                if hist is not None:
                    return hist
            hist = table[key] = _Histogram(n)
        return hist

    # -- exposition (runs off the event loop) --------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests handled, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for labels, count in list(self.requests.items()):
            requests.add_metric(labels, count)
        yield requests
        yield _histogram(
            "http_request_duration_seconds",
            "Time from request start to the last response byte, by method and route template.",
            self.duration,
            self.bounds,
        )
        yield _histogram("http_request_size_bytes", "Size of HTTP request bodies.", self.request_size, self.size_bounds)
        yield _histogram(
            "http_response_size_bytes", "Size of HTTP response bodies.", self.response_size, self.size_bounds
        )
        yield GaugeMetricFamily("http_requests_in_flight", "HTTP requests being handled right now.", self.in_flight)
        dropped = CounterMetricFamily(
            "stator_http_dropped_label_sets",
            "Label sets recorded as route=<overflow> because the metric reached its cap.",
            labels=["metric"],
        )
        for metric, count in list(self.dropped.items()):
            dropped.add_metric([metric], count)
        yield dropped


def _histogram(
    name: str, documentation: str, table: dict[tuple[str, str], _Histogram], bounds: Sequence[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["method", "route"])
    les = [_le(b) for b in bounds]
    for labels, hist in list(table.items()):
        counts = list(hist.counts)
        exemplars = list(hist.exemplars) if hist.exemplars is not None else None
        cumulative = 0
        buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        for i, le in enumerate(les):
            cumulative += counts[i]
            ex = exemplars[i] if exemplars is not None else None
            if ex is None:
                buckets.append((le, cumulative))
            else:
                buckets.append((le, cumulative, Exemplar(ex[0], ex[1], ex[2])))
        family.add_metric(list(labels), buckets, hist.sum)
    return family


def _le(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return repr(float(bound))


def method_label(method: str) -> str:
    """Known HTTP methods as themselves; anything else as ``OTHER`` (methods are client-chosen strings)."""
    return method if method in KNOWN_METHODS else "OTHER"
