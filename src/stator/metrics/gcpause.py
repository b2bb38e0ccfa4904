"""GC pause durations, measured through ``gc.callbacks``.

``gc.callbacks`` is one list for the whole interpreter, while stator allows several services per process. So there
is ONE shared dispatcher callback, installed while at least one :class:`GcPauses` is subscribed, timing each
collection once and handing the duration to every subscriber:

- subscribers are held through weak references, so a forgotten service does not stay alive through the
  interpreter-wide list; ``weakref.finalize`` unsubscribes it when it is collected, and ``close()`` does it
  explicitly; the callback is removed from ``gc.callbacks`` when the last subscriber leaves;
- one timer per collection (not one callback per service) means N services do not add N callback invocations
  to every collection nor measure each other's callbacks as GC time.

A single ``_started`` timestamp is enough: the interpreter never runs two collections at once (a collection,
including its callbacks, runs with the GC's ``collecting`` flag set, so an allocation in another thread during a
callback does not start a nested one).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import weakref
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from stator.metrics.buckets import Buckets, histogram_family

# GC pauses range from tens of microseconds (young generations) to hundreds of milliseconds (a full collection
# of a large heap).
GC_PAUSE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS: Final = 3


class GcPauses:
    """Per-generation pause histograms of one service."""

    def __init__(self, buckets: tuple[float, ...] = GC_PAUSE_BUCKETS) -> None:
        self.by_generation = [Buckets(buckets, (str(gen),)) for gen in range(GENERATIONS)]
        self._subscribed = False
        self._finalizer: weakref.finalize[Any, GcPauses] | None = None

    def observe(self, generation: int, seconds: float) -> None:
        if 0 <= generation < GENERATIONS:
            self.by_generation[generation].observe(seconds)

    def subscribe(self) -> None:
        if self._subscribed:
            return
        ref = weakref.ref(self)
        _DISPATCHER.add(ref)
        self._finalizer = weakref.finalize(self, _DISPATCHER.discard, ref)
        self._subscribed = True

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _DISPATCHER.discard once; a later garbage collection does nothing
            self._finalizer = None
        self._subscribed = False

    def family(self) -> Metric:
        return histogram_family(
            "python_gc_pause_seconds",
            "Time the interpreter spent in one garbage collection (the whole process is paused), by generation.",
            "seconds",
            ["generation"],
            self.by_generation,
        )


class _Dispatcher:
    def __init__(self) -> None:
        # An RLock: a subscriber can be finalised by a collection triggered inside add()/discard() in the same
        # thread, and its finaliser calls discard().
        self._lock = threading.RLock()
        self._refs: tuple[weakref.ref[GcPauses], ...] = ()
        self._installed = False
        self._started = 0.0

    def add(self, ref: weakref.ref[GcPauses]) -> None:
        with self._lock:
            self._refs = (*(r for r in self._refs if r() is not None), ref)
            if not self._installed:
                gc.callbacks.append(self._callback)
                self._installed = True

    def discard(self, ref: weakref.ref[GcPauses]) -> None:
        with self._lock:
            self._refs = tuple(r for r in self._refs if r is not ref and r() is not None)
            if not self._refs and self._installed:
                with contextlib.suppress(ValueError):  # ValueError: someone cleared gc.callbacks
                    gc.callbacks.remove(self._callback)
                self._installed = False

    def subscribers(self) -> int:
        return sum(1 for r in self._refs if r() is not None)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if not self._started:  # installed between a collection's start and stop: nothing to measure
            return
        elapsed = time.perf_counter() - self._started
        self._started = 0.0
        generation = info.get("generation", -1)
        for ref in self._refs:  # a tuple, replaced (never mutated) by add/discard: safe to iterate here
            pauses = ref()
            if pauses is not None:
                pauses.observe(generation, elapsed)


_DISPATCHER: Final = _Dispatcher()
