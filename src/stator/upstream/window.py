"""A rolling count of events over the last few seconds: the shared arithmetic of the retry budget, the outlier
detector's failure rate and the circuit breaker.

The window is ``buckets`` slots of ``window/buckets`` seconds each, kept in two flat lists indexed by slot
number modulo ``buckets``; a slot is cleared lazily when time comes back round to it. Adding costs a clock read,
an integer division and two list writes; no allocation, no deque of timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RollingCounts:
    __slots__ = ("_clock", "_current", "_epochs", "_failures", "_slot", "_totals", "buckets", "window")

    def __init__(self, window: float, buckets: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("rolling window needs window > 0 and buckets >= 1")
        self.window = window
        self.buckets = buckets
        self._slot = window / buckets
        self._clock = clock
        self._totals = [0] * buckets
        self._failures = [0] * buckets
        self._epochs = [-1] * buckets  # which slot number each entry holds now
        self._current = -1

    def _advance(self) -> int:
        epoch = int(self._clock() / self._slot)
        i = epoch % self.buckets
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._totals[i] = 0
            self._failures[i] = 0
        self._current = epoch
        return i

    def add(self, failed: bool = False, n: int = 1) -> None:
        i = self._advance()
        self._totals[i] += n
        if failed:
            self._failures[i] += n

    def counts(self) -> tuple[int, int]:
        """(events, failures) within the window."""
        self._advance()
        oldest = self._current - self.buckets + 1
        total = failures = 0
        for i in range(self.buckets):
            if self._epochs[i] >= oldest:
                total += self._totals[i]
                failures += self._failures[i]
        return total, failures

    def reset(self) -> None:
        for i in range(self.buckets):
            self._epochs[i] = -1
            self._totals[i] = 0
            self._failures[i] = 0
