"""The upstream's circuit breaker: when most calls to the upstream as a whole fail, stop calling for a while.

Per-instance ejection (:mod:`stator.upstream.outlier`) handles one bad instance among good ones; the breaker
handles a dependency that is down as a whole, so that its callers fail fast instead of queueing on timeouts and
the dependency gets room to recover (Resilience4j's state machine, with a time-based window).

* **closed** — calls go through; over the last ``window`` seconds, once at least ``min_calls`` calls ended and a
  fraction ``failure_rate`` or more of them failed (after their retries), the breaker opens;
* **open** — calls are refused at once with :class:`~stator.upstream.errors.CircuitOpen` for ``open_for``
  seconds;
* **half-open** — up to ``half_open_calls`` trial calls go through; if they all succeed the breaker closes,
  the first failure opens it again.

A call's outcome only counts for the state it started in (a slow call from before the breaker opened cannot
close it). One log line per state change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Literal

from stator.logs import Logger
from stator.upstream.window import RollingCounts

BreakerState = Literal["closed", "open", "half_open"]
BREAKER_STATES: Final[tuple[BreakerState, ...]] = ("closed", "open", "half_open")


class CircuitBreaker:
    def __init__(
        self,
        upstream: str,
        logger: Logger,
        *,
        failure_rate: float = 0.5,
        min_calls: int = 20,
        window: float = 10.0,
        open_for: float = 10.0,
        half_open_calls: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < failure_rate <= 1 or min_calls < 1 or open_for <= 0 or half_open_calls < 1:
            raise ValueError("circuit breaker needs 0 < failure_rate <= 1, min_calls >= 1, open_for > 0")
        self.upstream = upstream
        self.logger = logger
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.open_for = open_for
        self.half_open_calls = half_open_calls
        self.clock = clock
        self.window = RollingCounts(window, clock=clock)
        self.state: BreakerState = "closed"
        self.generation = 0  # bumped on every state change
        self.opened_until = 0.0
        self.opened = 0  # times opened
        self.rejected = 0
        self._trials = 0
        self._successes = 0
        self.changed_at = clock()

    def acquire(self) -> int:
        """Admit a call: returns the generation to hand back to :meth:`record`, or -1 when refused (then
        :meth:`retry_in` says when a call may be admitted again)."""
        if self.state == "closed":
            return self.generation
        now = self.clock()
        if self.state == "open":
            if now < self.opened_until:
                self.rejected += 1
                return -1
            self._transition("half_open", now)
        if self._trials >= self.half_open_calls:
            self.rejected += 1
            return -1
        self._trials += 1
        return self.generation

    def retry_in(self) -> float:
        if self.state == "open":
            return max(0.0, self.opened_until - self.clock())
        return max(0.001, self.open_for / 10)  # half-open with its trials in flight: soon

    def record(self, generation: int, failed: bool) -> None:
        if generation != self.generation:
            return
        if self.state == "closed":
            self.window.add(failed)
            if failed:
                total, failures = self.window.counts()
                if total >= self.min_calls and failures >= self.failure_rate * total:
                    self._transition("open", self.clock(), calls=total, failures=failures)
        elif self.state == "half_open":
            if failed:
                self._transition("open", self.clock())
            else:
                self._successes += 1
                if self._successes >= self.half_open_calls:
                    self._transition("closed", self.clock())

    def release(self, generation: int) -> None:
        """A call admitted as a trial ended without an outcome (cancelled, rate limited): free its slot."""
        if generation == self.generation and self.state == "half_open":
            self._trials = max(0, self._trials - 1)

    def _transition(self, state: BreakerState, now: float, **why: int) -> None:
        self.state = state
        self.generation += 1
        self.changed_at = now
        self._trials = self._successes = 0
        if state == "open":
            self.opened += 1
            self.opened_until = now + self.open_for
            self.logger.warning(
                "upstream circuit opened", upstream=self.upstream, open_seconds=round(self.open_for, 3), **why
            )
        elif state == "half_open":
            self.logger.info("upstream circuit half-open", upstream=self.upstream, trial_calls=self.half_open_calls)
        else:
            self.window.reset()
            self.logger.info("upstream circuit closed", upstream=self.upstream)

    def snapshot(self) -> dict[str, object]:
        total, failures = self.window.counts()
        return {
            "state": self.state,
            "recent_calls": total,
            "recent_failures": failures,
            "times_opened": self.opened,
            "rejected": self.rejected,
            "open_for_seconds": round(max(0.0, self.opened_until - self.clock()), 3) if self.state == "open" else None,
        }
