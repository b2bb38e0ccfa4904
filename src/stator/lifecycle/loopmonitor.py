"""Event-loop lag probe: a worker that sleeps ``interval`` and measures how late it woke up.

The lag is the time the loop was busy with something else (a blocking call, a long render). Subscribers (the
asyncio metrics collector's histogram) get every measurement; ``/-/healthy`` asks :meth:`wedged` whether the
loop has gone without a tick for far longer than it should.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LoopMonitor:
    name = "loop-monitor"

    def __init__(self, interval: float = 0.1, wedged_after: float = 5.0) -> None:
        self.interval = interval
        self.wedged_after = wedged_after
        self.last_tick = time.monotonic()
        self.last_lag = 0.0
        self.max_lag = 0.0
        self._subscribers: list[Callable[[float], None]] = []

    def subscribe(self, fn: Callable[[float], None]) -> None:
        self._subscribers.append(fn)

    def wedged(self) -> bool:
        """True when no tick was seen for ``wedged_after`` seconds (only meaningful while the probe runs)."""
        return time.monotonic() - self.last_tick > self.wedged_after

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            self.last_tick = start
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.monotonic() - start - self.interval)
            self.last_lag = lag
            self.max_lag = max(self.max_lag, lag)
            for fn in self._subscribers:
                fn(lag)
