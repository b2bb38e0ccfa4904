"""A token bucket that bounds how often a poller asks its source.

Blocking queries normally pace themselves: a request waits until the key changes or ``wait`` runs out. When the
registry answers at once instead (an index that never advances, a key rewritten in a tight loop, a proxy that
drops the query string), the loop would spin; the bucket lets ``burst`` requests through back to back, then one
per ``interval``. The wait is an ordinary cancellable sleep, so shutdown is never held up by it (the seed's
``time.Sleep`` ignored cancellation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        burst: int,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if burst < 1 or interval < 0:
            raise ValueError("token bucket needs burst >= 1 and interval >= 0")
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self.delayed = 0  # how many acquisitions had to wait (shown in /monitor, like the seed's LimitDelay)
        self.delay_total = 0.0  # seconds spent waiting for tokens

    def reserve(self) -> float:
        """Take a token; return how long to wait before using it (0 when one was available)."""
        if self.interval == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) / self.interval)
        self._updated = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens * self.interval

    async def acquire(self) -> None:
        """Wait (cancellably) until a request may be sent."""
        delay = self.reserve()
        if delay > 0:
            self.delayed += 1
            self.delay_total += delay
            await self._sleep(delay)
