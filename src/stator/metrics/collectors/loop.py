"""asyncio: event-loop lag (a histogram fed by the service's :class:`LoopMonitor` probe) and the task count.

The lag is how late the probe's ``sleep(interval)`` woke up: the time the loop spent on something else (a
blocking call, a CPU-heavy handler, a GC pause). There is no second probe: the service already runs one for
``/-/healthy``, and every tick is observed here.

The task count is read at scrape time from the collector's thread: ``asyncio.all_tasks(loop)`` is documented
as safe to call for another loop (it copies the weak set, retrying if it changes meanwhile). The loop is learnt
from the probe (its callback runs on the loop) or from :meth:`bind`, and held weakly: a closed loop of a finished
test run is not kept alive by metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Final

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from stator.metrics.buckets import Buckets, histogram_family

# The probe ticks every 100 ms by default; anything above a few ms is visible to request latency.
LOOP_LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopCollector:
    def __init__(self, buckets: tuple[float, ...] = LOOP_LAG_BUCKETS) -> None:
        self.lag = Buckets(buckets)
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)

    def adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind ``loop`` unless a live loop is bound already."""
        if self._loop is None or self._loop() is None:
            self.bind(loop)

    def observe(self, lag: float) -> None:
        """The :meth:`LoopMonitor.subscribe` callback; runs on the event loop's thread."""
        self.lag.observe(lag)
        if self._loop is None or self._loop() is None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: called by hand outside a loop (tests)
                self.bind(asyncio.get_running_loop())

    def collect(self) -> list[Metric]:
        out: list[Metric] = [
            histogram_family(
                "python_asyncio_loop_lag_seconds",
                "How late the event-loop probe woke up: time the loop was busy with something else.",
                "seconds",
                [],
                [self.lag],
            )
        ]
        loop = self._loop() if self._loop is not None else None
        if loop is not None and not loop.is_closed():
            tasks = asyncio.all_tasks(loop)
            out.append(GaugeMetricFamily("python_asyncio_tasks", "Tasks not yet done on the event loop.", len(tasks)))
        return out
