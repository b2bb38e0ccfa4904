"""Outlier ejection per instance: an instance that keeps failing is taken out of rotation for a while, then
let back in through a single probe (Envoy's outlier detection, with Envoy's defaults where they fit).

Rules, checked after each attempt's result:

* **consecutive failures** — ``consecutive_failures`` failed attempts in a row (a 5xx answer, a refused or
  reset connection, a per-try timeout) eject the instance;
* **failure rate** — over the last ``interval`` seconds, at least ``min_requests`` attempts of which a
  fraction ``failure_rate`` or more failed, eject it (catches an instance failing every other request, which
  never reaches a streak).

An ejection lasts ``base_ejection × n`` (capped at ``max_ejection``), n being how many times in a row the
instance was ejected; it resets once the instance stays healthy for as long as its last ejection lasted. When
the time is up the instance is *half-open*: the balancer may send it exactly one request (the probe); success
brings it back, failure ejects it again for longer. At most ``max_ejection_percent`` of the set is ejected at
once (always at least one instance may be); if every instance is out anyway the balancer falls back to the whole
set rather than failing the call (Envoy's panic routing).

Each ejection and each recovery is one log line; nothing is logged per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from stator.logs import Logger
from stator.upstream.instances import Endpoint


class OutlierDetector:
    def __init__(
        self,
        upstream: str,
        logger: Logger,
        *,
        consecutive_failures: int = 5,
        failure_rate: float = 0.5,
        min_requests: int = 20,
        interval: float = 10.0,
        base_ejection: float = 30.0,
        max_ejection: float = 300.0,
        max_ejection_percent: float = 50.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if consecutive_failures < 0 or not 0 <= failure_rate <= 1 or min_requests < 1:
            raise ValueError("outlier detection needs consecutive_failures >= 0, 0 <= failure_rate <= 1")
        if base_ejection <= 0 or max_ejection < base_ejection or not 0 <= max_ejection_percent <= 100:
            raise ValueError("outlier detection needs 0 < base_ejection <= max_ejection, 0..100 percent")
        self.upstream = upstream
        self.logger = logger
        self.consecutive_failures = consecutive_failures
        self.failure_rate = failure_rate
        self.min_requests = min_requests
        self.interval = interval
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.max_ejection_percent = max_ejection_percent
        self.clock = clock
        self.ejections: dict[str, int] = {"consecutive_failures": 0, "failure_rate": 0, "probe_failed": 0}
        self.recoveries = 0

    @property
    def enabled(self) -> bool:
        return self.consecutive_failures > 0 or self.failure_rate > 0

    # -- what the balancer may use -------------------------------------------------------------------------

    @staticmethod
    def admits(endpoint: Endpoint, now: float) -> bool:
        state = endpoint.state
        if state == "healthy":
            return True
        # Ejected and its time is up, or already half-open: one probe at a time.
        return not endpoint.probe_in_flight and (state == "probing" or now >= endpoint.ejected_until)

    @staticmethod
    def picked(endpoint: Endpoint) -> bool:
        """Called when the balancer chose ``endpoint``; returns whether this attempt is the half-open probe."""
        if endpoint.state == "healthy":
            return False
        endpoint.state = "probing"
        endpoint.probe_in_flight = True
        return True

    # -- results -------------------------------------------------------------------------------------------

    def record(self, endpoint: Endpoint, failed: bool, probe: bool, endpoints: Sequence[Endpoint]) -> None:
        now = self.clock()
        if probe:
            endpoint.probe_in_flight = False
            if failed:
                self._eject(endpoint, "probe_failed", now)
            else:
                self._recover(endpoint, now)
            return
        if endpoint.state != "healthy":
            return  # an attempt sent before the ejection: its result is old news
        endpoint.window.add(failed)
        if not failed:
            endpoint.consecutive_failures = 0
            if endpoint.ejections and now >= endpoint.ejected_until + self._duration(endpoint.ejections):
                endpoint.ejections = 0  # healthy for as long as the last ejection lasted: forgiven
            return
        endpoint.consecutive_failures += 1
        reason = None
        if self.consecutive_failures and endpoint.consecutive_failures >= self.consecutive_failures:
            reason = "consecutive_failures"
        elif self.failure_rate:
            total, failures = endpoint.window.counts()
            if total >= self.min_requests and failures >= self.failure_rate * total:
                reason = "failure_rate"
        if reason is not None and self._may_eject(endpoints):
            self._eject(endpoint, reason, now)

    def _may_eject(self, endpoints: Sequence[Endpoint]) -> bool:
        ejected = sum(1 for e in endpoints if e.state != "healthy")
        allowed = max(1, int(len(endpoints) * self.max_ejection_percent / 100))
        return ejected < allowed

    def _duration(self, n: int) -> float:
        return min(self.max_ejection, self.base_ejection * n)

    def _eject(self, endpoint: Endpoint, reason: str, now: float) -> None:
        total, failures = endpoint.window.counts()
        endpoint.ejections += 1
        duration = self._duration(endpoint.ejections)
        endpoint.state = "ejected"
        endpoint.ejected_until = now + duration
        self.ejections[reason] += 1
        self.logger.warning(
            "upstream instance ejected",
            upstream=self.upstream,
            instance=endpoint.id,
            url=endpoint.instance.base_url,
            reason=reason,
            consecutive_failures=endpoint.consecutive_failures,
            recent_requests=total,
            recent_failures=failures,
            ejection_seconds=round(duration, 3),
        )
        endpoint.consecutive_failures = 0
        endpoint.window.reset()

    def _recover(self, endpoint: Endpoint, now: float) -> None:
        endpoint.state = "healthy"
        endpoint.consecutive_failures = 0
        endpoint.window.reset()
        self.recoveries += 1
        self.logger.info(
            "upstream instance recovered",
            upstream=self.upstream,
            instance=endpoint.id,
            url=endpoint.instance.base_url,
            ejections=endpoint.ejections,
        )

    def released(self, endpoint: Endpoint) -> None:
        """A probe attempt ended without a verdict (the caller was cancelled): let another probe go."""
        endpoint.probe_in_flight = False
