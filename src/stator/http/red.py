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

from stator.asgi import OVERFLOW

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


class _Route:
    """Everything recorded for one (method, route): one dict lookup per request reaches all of it."""

    __slots__ = ("duration", "overflow", "request_size", "response_size", "statuses")

    def __init__(self, n_duration: int, n_size: int, overflow: bool = False) -> None:
        self.overflow = overflow
        self.statuses: dict[int, int] = {}
        self.duration = _Histogram(n_duration)
        self.request_size = _Histogram(n_size)
        self.response_size = _Histogram(n_size)


class RedMetrics:
    """The HTTP metrics of one service; register it on the service's registry as a collector.

    The cap counts label sets per metric: (method, route) pairs for the histograms, (method, route, status) for
    ``http_requests_total``. A request that would add a set beyond the cap is recorded under ``<overflow>``.
    """

    def __init__(self, buckets: Sequence[float], max_label_sets: int) -> None:
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        self.bounds = (*bounds, math.inf)
        self.size_bounds = (*SIZE_BUCKETS, math.inf)
        self.cap = max_label_sets
        self.routes: dict[tuple[str, str], _Route] = {}
        self.status_sets = 0
        self.dropped = dict.fromkeys(
            (
                "http_requests_total",
                "http_request_duration_seconds",
                "http_request_size_bytes",
                "http_response_size_bytes",
            ),
            0,
        )
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
        entry = self.routes.get((method, route))
        if entry is None:
            entry = self._new_route(method, route)
        if entry.overflow:
            dropped = self.dropped
            for name in dropped:
                dropped[name] += 1
        statuses = entry.statuses
        if status in statuses:
            statuses[status] += 1
        elif entry.overflow or self.status_sets < self.cap:
            self.status_sets += 1
            statuses[status] = 1
        else:  # the route is known but this status would be one label set too many for http_requests_total
            self.dropped["http_requests_total"] += 1
            overflow = self._overflow(method).statuses
            overflow[status] = overflow.get(status, 0) + 1
        entry.duration.observe(self.bounds, duration, exemplar)
        entry.request_size.observe(self.size_bounds, request_bytes)
        entry.response_size.observe(self.size_bounds, response_bytes)

    def _new_route(self, method: str, route: str) -> _Route:
        if len(self.routes) >= self.cap:
            return self._overflow(method)
        entry = self.routes[(method, route)] = _Route(len(self.bounds), len(self.size_bounds))
        return entry

    def _overflow(self, method: str) -> _Route:
        entry = self.routes.get((method, OVERFLOW))
        if entry is None:  # the overflow set itself may exceed the cap by one per method
            entry = self.routes[(method, OVERFLOW)] = _Route(len(self.bounds), len(self.size_bounds), overflow=True)
        return entry

    # -- exposition (runs off the event loop) --------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        routes = list(self.routes.items())
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests handled, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for (method, route), entry in routes:
            for status, count in list(entry.statuses.items()):
                requests.add_metric([method, route, str(status)], count)
        yield requests
        yield _histogram(
            "http_request_duration_seconds",
            "Time from request start to the last response byte, by method and route template.",
            [(key, entry.duration) for key, entry in routes],
            self.bounds,
        )
        yield _histogram(
            "http_request_size_bytes",
            "Size of HTTP request bodies.",
            [(key, entry.request_size) for key, entry in routes],
            self.size_bounds,
        )
        yield _histogram(
            "http_response_size_bytes",
            "Size of HTTP response bodies.",
            [(key, entry.response_size) for key, entry in routes],
            self.size_bounds,
        )
        yield GaugeMetricFamily("http_requests_in_flight", "HTTP requests being handled right now.", self.in_flight)
        dropped = CounterMetricFamily(
            "stator_http_dropped_label_sets",
            "Observations recorded with route=<overflow> because the metric reached its label-set cap.",
            labels=["metric"],
        )
        for metric, count in list(self.dropped.items()):
            dropped.add_metric([metric], count)
        yield dropped


def _histogram(
    name: str, documentation: str, table: list[tuple[tuple[str, str], _Histogram]], bounds: Sequence[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["method", "route"])
    les = [_le(b) for b in bounds]
    for labels, hist in table:
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
