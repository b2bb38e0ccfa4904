"""What upstreams count, and how it reaches ``/metrics``.

The hot path only bumps plain ints and one bucket of a list on objects it already holds (the endpoint, the
upstream); :class:`UpstreamCollector` turns them into metric families at scrape time, the way the tracing
export counters are read. That keeps a call's telemetry to a few hundred nanoseconds, and the per-instance
series go away with the instance when it leaves the set (no label sets piling up as instances come and go).

Families (all labelled ``upstream``):

* ``stator_upstream_requests_total{instance,outcome}`` — attempts, by instance and outcome
  (``success``, ``status_error`` for a retryable 5xx, ``timeout``, ``connection_error``, ``error``);
* ``stator_upstream_request_duration_seconds{instance}`` — attempt latency histogram;
* ``stator_upstream_calls_total{outcome}`` — calls as the caller saw them (``success``, ``failure``,
  ``no_instances``, ``circuit_open``, ``rate_limited``, ``deadline``);
* ``stator_upstream_retries_total`` and ``stator_upstream_retry_budget_exhausted_total``;
* ``stator_upstream_ejections_total{reason}``;
* ``stator_upstream_breaker_state{state}`` (1 for the current state);
* ``stator_upstream_instances{state}`` (``healthy``, ``ejected``, ``probing``) and
  ``stator_upstream_outstanding_requests``;
* ``stator_upstream_discovery_updates_total``, ``stator_upstream_discovery_errors_total``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from stator.upstream.client import Upstream

OUTCOMES: Final = ("success", "status_error", "timeout", "connection_error", "error")
CALL_OUTCOMES: Final = ("success", "failure", "no_instances", "circuit_open", "rate_limited", "deadline")
DEFAULT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EndpointStats:
    """Attempt counts and latencies of one instance."""

    __slots__ = ("bounds", "buckets", "outcomes", "total_seconds")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.total_seconds = 0.0

    def observe(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.total_seconds += seconds

    def histogram(self) -> tuple[list[tuple[str, float]], float]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.buckets, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return out, self.total_seconds


class UpstreamCollector:
    """Every upstream of one service, as metric families (register once per registry)."""

    def __init__(self, upstreams: Callable[[], Iterable[Upstream]]) -> None:
        self._upstreams = upstreams

    def describe(self) -> Iterator[Metric]:
        # Names only, so the registry refuses a second collector with the same families.
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        for up in self._upstreams():
            name = up.name
            in_flight = 0
            states = {"healthy": 0, "ejected": 0, "probing": 0}
            for ep in up.endpoints:
                stats: EndpointStats = ep.metrics
                for outcome, n in stats.outcomes.items():
                    f.requests.add_metric([name, ep.id, outcome], n)
                buckets, total = stats.histogram()
                f.duration.add_metric([name, ep.id], buckets, total)
                in_flight += ep.outstanding
                states[ep.state] += 1
            for outcome, n in up.call_outcomes.items():
                f.calls.add_metric([name, outcome], n)
            f.retries.add_metric([name], up.retries)
            f.exhausted.add_metric([name], up.budget.exhausted)
            for reason, n in up.outlier.ejections.items():
                f.ejections.add_metric([name, reason], n)
            current = up.breaker.state if up.breaker is not None else "closed"
            for state in ("closed", "open", "half_open"):
                f.breaker.add_metric([name, state], 1.0 if state == current else 0.0)
            for state, n in states.items():
                f.instances.add_metric([name, state], n)
            f.outstanding.add_metric([name], in_flight)
            f.updates.add_metric([name], up.instancer.updates)
            f.errors.add_metric([name], up.instancer.errors)
        yield from f.all()


class _Families:
    def __init__(self) -> None:
        up = ["upstream"]
        self.requests = CounterMetricFamily(
            "stator_upstream_requests",
            "Attempts sent to upstream instances, by outcome.",
            labels=[*up, "instance", "outcome"],
        )
        self.duration = HistogramMetricFamily(
            "stator_upstream_request_duration_seconds",
            "Duration of attempts sent to upstream instances.",
            labels=[*up, "instance"],
        )
        self.calls = CounterMetricFamily(
            "stator_upstream_calls", "Calls through an upstream client, by outcome.", labels=[*up, "outcome"]
        )
        self.retries = CounterMetricFamily(
            "stator_upstream_retries", "Retries sent (attempts after the first).", labels=up
        )
        self.exhausted = CounterMetricFamily(
            "stator_upstream_retry_budget_exhausted", "Retries not sent because the retry budget was spent.", labels=up
        )
        self.ejections = CounterMetricFamily(
            "stator_upstream_ejections", "Instances ejected by outlier detection.", labels=[*up, "reason"]
        )
        self.breaker = GaugeMetricFamily(
            "stator_upstream_breaker_state",
            "Circuit breaker state of the upstream (1 for the current state).",
            labels=[*up, "state"],
        )
        self.instances = GaugeMetricFamily(
            "stator_upstream_instances", "Instances in the upstream's set, by state.", labels=[*up, "state"]
        )
        self.outstanding = GaugeMetricFamily(
            "stator_upstream_outstanding_requests", "Attempts in flight to the upstream.", labels=up
        )
        self.updates = CounterMetricFamily(
            "stator_upstream_discovery_updates", "Instance sets published by discovery.", labels=up
        )
        self.errors = CounterMetricFamily(
            "stator_upstream_discovery_errors", "Discovery polls that failed or brought an unusable answer.", labels=up
        )

    def all(self) -> list[Metric]:
        return [
            self.requests,
            self.duration,
            self.calls,
            self.retries,
            self.exhausted,
            self.ejections,
            self.breaker,
            self.instances,
            self.outstanding,
            self.updates,
            self.errors,
        ]
