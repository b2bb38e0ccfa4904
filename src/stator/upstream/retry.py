"""When a failed attempt is tried again, and how many retries an upstream may send at all.

**Policy** (per call): at most ``attempts`` attempts in total, each bounded by ``try_timeout``, all within
``deadline``; a short jittered backoff between attempts; a retry always goes to another instance when there is
one (the balancer's ``avoid``). What is retried:

* an attempt that never reached the instance (connection refused, connect timeout) — for every method, since
  nothing was sent;
* an attempt that may have reached it (a reset, a per-try timeout) or that was answered with one of
  ``statuses`` (default 500, 502, 503, 504) — only for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE,
  TRACE), unless the call says ``idempotent=True`` or the upstream was built with ``retry_non_idempotent``.

**Budget** (per upstream; Finagle's RetryBudget): over the last ``window`` seconds, retries may not exceed
``percent``% of calls plus ``min_per_second`` × ``window`` (a floor so a quiet service can still retry). When a
dependency fails as a whole, its load grows by at most that fraction instead of multiplying by ``attempts``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from stator.upstream.window import RollingCounts

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    try_timeout: float = 5.0
    deadline: float = 10.0
    backoff_initial: float = 0.01
    backoff_max: float = 0.2
    statuses: frozenset[int] = frozenset({500, 502, 503, 504})
    retry_non_idempotent: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.try_timeout <= 0 or self.deadline <= 0:
            raise ValueError("retry policy needs attempts >= 1, try_timeout > 0 and deadline > 0")
        if self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("retry policy needs 0 <= backoff_initial <= backoff_max")

    def idempotent(self, method: str, override: bool | None) -> bool:
        if override is not None:
            return override
        return self.retry_non_idempotent or method in IDEMPOTENT_METHODS

    def backoff(self, retry: int, jitter: float) -> float:
        """Delay before retry number ``retry`` (1-based): capped exponential, ``jitter`` in [0, 1) from the
        caller's random source (full jitter over the upper half, as :class:`stator.backoff.Backoff`)."""
        if self.backoff_max == 0:
            return 0.0
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry - 1))
        return base * (1 - 0.5 * jitter)


class RetryBudget:
    """Retries allowed per calls made, over a rolling window. :meth:`deposit` once per call,
    :meth:`try_withdraw` before each retry."""

    def __init__(
        self,
        percent: float = 20.0,
        min_per_second: float = 10.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if percent < 0 or min_per_second < 0 or window <= 0:
            raise ValueError("retry budget needs percent >= 0, min_per_second >= 0, window > 0")
        self.percent = percent
        self.min_per_second = min_per_second
        self._ratio = percent / 100
        self._floor = min_per_second * window
        self._counts = RollingCounts(window, clock=clock)  # events = calls + retries; "failures" = retries
        self.exhausted = 0

    def deposit(self) -> None:
        self._counts.add(False)

    def try_withdraw(self) -> bool:
        total, retries = self._counts.counts()
        if retries + 1 > (total - retries) * self._ratio + self._floor:
            self.exhausted += 1
            return False
        self._counts.add(True)
        return True

    def balance(self) -> float:
        total, retries = self._counts.counts()
        return max(0.0, (total - retries) * self._ratio + self._floor - retries)
