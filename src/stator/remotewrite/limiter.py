"""The ingest-rate limit: a token bucket counted in samples."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class SampleRate:
    """``rate`` samples/s with ``burst`` admitted at once. A batch larger than the burst passes when the bucket is
    full and leaves it in debt, so no batch size is refused forever."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self.tokens = self.burst
        self._clock = clock
        self._at = clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def exhausted(self) -> float:
        """Seconds until one sample would be admitted (0 when it would be now): a check before decoding."""
        if not self.enabled:
            return 0.0
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, samples: int) -> float:
        """Admit ``samples`` (returns 0.0) or return the seconds to wait before this batch would be admitted."""
        if not self.enabled:
            return 0.0
        self._refill()
        need = min(float(samples), self.burst)
        if self.tokens >= need:
            self.tokens -= samples
            return 0.0
        return (need - self.tokens) / self.rate
