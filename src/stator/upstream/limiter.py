"""The client-side rate limit of one upstream: a token bucket that spaces calls out, or refuses them.

Built on the discovery poller's :class:`~stator.discover.limiter.TokenBucket` (same burst/interval arithmetic),
with one addition a limiter in front of callers needs: a call that would have to wait longer than ``max_wait``
is refused at once with :class:`~stator.upstream.errors.RateLimited`, and a refused call takes no token (so
callers pushing past the limit do not push the admitted rate below it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from stator.discover.limiter import TokenBucket


class ClientRateLimiter(TokenBucket):
    def __init__(
        self,
        rate: float,
        burst: int,
        max_wait: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or max_wait < 0:
            raise ValueError("client rate limit needs rate > 0 and max_wait >= 0")
        super().__init__(burst, 1.0 / rate, clock=clock, sleep=sleep)
        self.rate = rate
        self.max_wait = max_wait
        self.refused = 0

    def try_reserve(self) -> float:
        """Take a token if one is available within ``max_wait``: returns the wait (0 = at once), or -1 when
        refused (nothing taken; :meth:`wait_for_token` says how long the caller would have had to wait)."""
        now = self._clock()
        tokens = min(float(self.burst), self._tokens + (now - self._updated) / self.interval)
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        delay = (1.0 - tokens) * self.interval
        if delay > self.max_wait:
            self._tokens = tokens
            self.refused += 1
            return -1.0
        self._tokens = tokens - 1.0
        self.delayed += 1
        self.delay_total += delay
        return delay

    def wait_for_token(self) -> float:
        tokens = min(float(self.burst), self._tokens + (self._clock() - self._updated) / self.interval)
        return max(0.0, (1.0 - tokens) * self.interval)

    def snapshot(self) -> dict[str, float | int]:
        return {
            "rate_per_second": self.rate,
            "burst": self.burst,
            "max_wait_seconds": self.max_wait,
            "delayed": self.delayed,
            "refused": self.refused,
        }
