"""Continuous profiling: CPU windows back to back, the recent ones kept in a bounded ring.

The window sink rides the shared sampler: at each tick past the window's end it closes the window (encodes it,
on the sampler thread, off the event loop), stores it in the ring and hands it to the pusher. The ring holds
``retention / window`` windows; the oldest falls out. Each window remembers which spans and requests it has
samples of, so ``profile?span_id=`` opens only the windows that matter, and the window still open can be read
too, so a request that just ended has its samples at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stator.profiling.attribution import RequestTable
from stator.profiling.sampler import Aggregate, Tick


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int
    ticks: int
    achieved_hz: float
    data: bytes  # gzipped pprof
    span_ids: frozenset[str]
    request_ids: frozenset[str]

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns < end_ns and start_ns < self.end_ns

    def summary(self) -> dict[str, object]:
        return {
            "start": self.start_ns / 1e9,
            "end": self.end_ns / 1e9,
            "ticks": self.ticks,
            "achieved_hz": round(self.achieved_hz, 1),
            "bytes": len(self.data),
        }


class WindowRing:
    """The last ``retention`` seconds of windows (thread-safe: written by the sampler, read by requests)."""

    def __init__(self, retention: float, window: float) -> None:
        self.capacity = max(1, math.ceil(retention / window))
        self._windows: deque[Window] = deque(maxlen=self.capacity)
        self._lock = threading.Lock()
        self.evicted = 0

    def append(self, window: Window) -> None:
        with self._lock:
            if len(self._windows) == self.capacity:
                self.evicted += 1
            self._windows.append(window)

    def windows(self) -> list[Window]:
        with self._lock:
            return list(self._windows)

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def bytes(self) -> int:
        return sum(len(w.data) for w in self.windows())


def _window(aggregate: Aggregate) -> Window:
    data = aggregate.encode()
    request_ids = {str(e[0]["request_id"]) for e in aggregate.entries.values() if e[0].get("request_id")}
    return Window(
        aggregate.start_ns,
        aggregate.end_ns,
        aggregate.ticks,
        aggregate.achieved_hz,
        data,
        frozenset(aggregate.span_ids()),
        frozenset(request_ids),
    )


class WindowSink:
    """A sampler sink that cuts the sample stream into windows of ``window`` seconds."""

    def __init__(
        self,
        table: RequestTable,
        rate: float,
        window: float,
        ring: WindowRing,
        on_window: Callable[[Window], None] | None = None,
    ) -> None:
        self.table = table
        self.rate = rate
        self.window_ns = int(window * 1e9)
        self.ring = ring
        self.on_window = on_window
        self._lock = threading.Lock()
        self._current = Aggregate(table, rate)
        self.encode_seconds = 0.0

    def add(self, tick: Tick) -> None:
        with self._lock:
            current = self._current
            if tick.wall_ns - current.start_ns >= self.window_ns:
                self._current = Aggregate(table=self.table, rate=self.rate)
                self._current.start_ns = current.end_ns or tick.wall_ns
                self._close(current)
            self._current.add(tick)

    def flush(self) -> Window | None:
        """Close the open window now (at shutdown) and store it."""
        with self._lock:
            current = self._current
            self._current = Aggregate(self.table, self.rate)
            if current.ticks:
                return self._close(current)
        return None

    def snapshot(self) -> Window | None:
        """The open window as it is now (not stored)."""
        with self._lock:
            current = self._current
            if not current.ticks:
                return None
            return _window(current)

    def _close(self, aggregate: Aggregate) -> Window:
        began = time.perf_counter()
        aggregate.close(aggregate.end_ns)
        window = _window(aggregate)
        self.encode_seconds += time.perf_counter() - began
        self.ring.append(window)
        if self.on_window is not None:
            self.on_window(window)
        return window
