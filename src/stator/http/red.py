"""RED metrics for HTTP: rate and errors (``http_requests_total``), duration, sizes, in-flight.

Built on prometheus_client primitives in the service's own registry. The hot path avoids client_python's costly
``labels()`` (~1.3 µs: sorts, str()s, locks) by caching each label set's child in a dict keyed by the raw tuple.
Each metric admits at most ``max_label_sets`` distinct label sets; past that, a new set is recorded with
``route="<overflow>"`` and counted in ``stator_http_dropped_label_sets_total{metric}`` — a route explosion
(a framework that reports raw paths, a scanner walking random URLs) cannot take down Prometheus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OVERFLOW = "<overflow>"
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


class _Capped:
    """Children of one labelled metric, at most ``cap`` label sets (the overflow set is extra)."""

    __slots__ = ("cap", "children", "dropped", "metric", "name")

    def __init__(self, metric: Any, name: str, cap: int, dropped: Counter) -> None:
        self.metric = metric
        self.name = name
        self.cap = cap
        self.children: dict[tuple[str, ...], Any] = {}
        self.dropped = dropped.labels(name)

    def child(self, key: tuple[str, ...], route_index: int) -> Any:
        child = self.children.get(key)
        if child is None:
            if len(self.children) >= self.cap:
                self.dropped.inc()
                key = (*key[:route_index], OVERFLOW, *key[route_index + 1 :])
                child = self.children.get(key)
                if child is not None:
                    return child
                child = self.metric.labels(*key)
                self.children[key] = child  # the overflow set itself may exceed the cap by one
                return child
            child = self.children[key] = self.metric.labels(*key)
        return child


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, buckets: Sequence[float], max_label_sets: int) -> None:
        dropped = Counter(
            "stator_http_dropped_label_sets",
            "Label sets recorded as route=<overflow> because the metric reached its cap.",
            ["metric"],
            registry=registry,
        )
        self.requests = _Capped(
            Counter(
                "http_requests",
                "HTTP requests handled, by method, route template and status code.",
                ["method", "route", "status"],
                registry=registry,
            ),
            "http_requests_total",
            max_label_sets,
            dropped,
        )
        self.duration = _Capped(
            Histogram(
                "http_request_duration_seconds",
                "Time from request start to the last response byte, by method and route template.",
                ["method", "route"],
                buckets=tuple(buckets),
                registry=registry,
            ),
            "http_request_duration_seconds",
            max_label_sets,
            dropped,
        )
        self.request_size = _Capped(
            Histogram(
                "http_request_size_bytes",
                "Size of HTTP request bodies.",
                ["method", "route"],
                buckets=SIZE_BUCKETS,
                registry=registry,
            ),
            "http_request_size_bytes",
            max_label_sets,
            dropped,
        )
        self.response_size = _Capped(
            Histogram(
                "http_response_size_bytes",
                "Size of HTTP response bodies.",
                ["method", "route"],
                buckets=SIZE_BUCKETS,
                registry=registry,
            ),
            "http_response_size_bytes",
            max_label_sets,
            dropped,
        )
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being handled right now.", registry=registry)

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
        key = (method, route)
        self.requests.child((method, route, str(status)), 1).inc()
        if exemplar is None:
            self.duration.child(key, 1).observe(duration)
        else:
            self.duration.child(key, 1).observe(duration, exemplar)
        self.request_size.child(key, 1).observe(request_bytes)
        self.response_size.child(key, 1).observe(response_bytes)


def method_label(method: str) -> str:
    """Known HTTP methods as themselves; anything else as ``OTHER`` (methods are client-chosen strings)."""
    return method if method in KNOWN_METHODS else "OTHER"
