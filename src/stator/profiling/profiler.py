"""The profiler of one service: the request table, the shared sampler, heap profiles, the continuous windows and
the push, plus what it says about itself (metrics, the /-/monitor section).

:func:`install` wires it into anything shaped like :class:`ProfilingHost` (a :class:`stator.service.Service`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.config.settings import ProfileSettings, Settings
from stator.lifecycle.worker import Worker
from stator.logs import Logger
from stator.profiling.attribution import RequestTable, RouteResolver
from stator.profiling.continuous import Window, WindowRing, WindowSink
from stator.profiling.heap import HeapProfiler
from stator.profiling.push import PyroscopePusher
from stator.profiling.sampler import Sampler

MAX_CONCURRENT_PROFILES = 4


class ProfilingHost(Protocol):
    """What the profiler needs from the service it profiles."""

    settings: Settings
    logger: Logger
    app_id: str
    instance_id: str

    def add_worker(self, worker: Worker) -> None: ...

    def add_collector(self, collector: Any, name: str | None = None) -> None: ...

    def add_monitor_section(self, name: str, section: Callable[[], Any]) -> None: ...


class Profiler:
    def __init__(
        self,
        settings: ProfileSettings,
        logger: Logger,
        *,
        app_name: str = "stator",
        labels: dict[str, str] | None = None,
        resolver: RouteResolver | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.table = RequestTable(resolver)
        self.sampler = Sampler(self.table, settings.rate, on_error=self._sampler_error)
        self.heap = HeapProfiler()
        self.ring = WindowRing(settings.retention, settings.window)
        self.window_sink: WindowSink | None = None
        self.pusher: PyroscopePusher | None = None
        if str(settings.push_url):
            self.pusher = PyroscopePusher(
                settings.push_url,
                app_name=app_name,
                labels=labels or {},
                rate=settings.rate,
                logger=logger,
                timeout=settings.push_timeout,
            )
        self.cpu_profiles_active = 0
        self.served: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self._sampler_error_logged = False

    def _sampler_error(self, exc: BaseException) -> None:
        if not self._sampler_error_logged:  # once: a bug here would otherwise log at 100 Hz
            self._sampler_error_logged = True
            self.logger.error("profiler sample failed", exc=exc if isinstance(exc, Exception) else None)

    @property
    def continuous(self) -> bool:
        return self.window_sink is not None

    def continuous_worker(self) -> ContinuousProfiler:
        return ContinuousProfiler(self)

    def window_query(self, start: float, end: float) -> str:
        """The query (relative to the pprof prefix) returning the CPU samples of [start, end] (unix seconds):
        what the access log of a slow request links to."""
        return f"profile?start={start:.3f}&end={end:.3f}"

    def close(self) -> None:
        self.sampler.close()

    # -- self-report -------------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        s = self.sampler
        busy = s.busy_seconds()
        out: dict[str, Any] = {
            "enabled": self.settings.enabled,
            "requested_rate_hz": self.settings.rate,
            "sampler": {
                "running": s.running,
                "subscribers": s.subscribers,
                "achieved_rate_hz": round(s.achieved_hz, 1),
                "ticks": s.ticks,
                "thread_samples": s.records,
                "cpu_seconds": round(s.cpu_seconds, 3),
                "running_seconds": round(busy, 3),
                "overhead": round(s.cpu_seconds / busy, 5) if busy else 0.0,
                "errors": s.errors,
                "started": s.started_threads,
            },
            "cpu_profiles_active": self.cpu_profiles_active,
            "heap_profile_active": self.heap.active,
            "requests_tracked": len(self.table.active),
            "served": dict(self.served),
            "rejected": dict(self.rejected),
        }
        if self.settings.continuous:
            windows = self.ring.windows()
            out["continuous"] = {
                "running": self.window_sink is not None,
                "window_seconds": self.settings.window,
                "windows": len(windows),
                "capacity": self.ring.capacity,
                "bytes": sum(len(w.data) for w in windows),
                "oldest": windows[0].start_ns / 1e9 if windows else None,
                "newest": windows[-1].end_ns / 1e9 if windows else None,
                "encode_seconds": round(self.window_sink.encode_seconds, 3) if self.window_sink else None,
            }
        if self.pusher is not None:
            out["push"] = self.pusher.monitor()
        return out

    def collect(self) -> Iterator[Metric]:
        s = self.sampler
        yield CounterMetricFamily("stator_profiler_samples", "Sampling passes (ticks) taken by the sampler.", s.ticks)
        yield CounterMetricFamily(
            "stator_profiler_thread_samples", "Thread stacks recorded (one per thread per tick).", s.records
        )
        yield GaugeMetricFamily(
            "stator_profiler_rate_hz",
            "Sampling rate achieved over the last second (0 when not sampling).",
            s.achieved_hz,
        )
        yield GaugeMetricFamily("stator_profiler_requested_rate_hz", "Sampling rate asked for.", self.settings.rate)
        yield CounterMetricFamily(
            "stator_profiler_cpu_seconds", "CPU time used by the sampler thread itself.", s.cpu_seconds
        )
        yield CounterMetricFamily(
            "stator_profiler_running_seconds", "Wall time the sampler thread has been running.", s.busy_seconds()
        )
        yield GaugeMetricFamily("stator_profiler_running", "1 while the sampler thread runs.", 1 if s.running else 0)
        yield CounterMetricFamily("stator_profiler_errors", "Sampling passes that failed.", s.errors)
        served = CounterMetricFamily("stator_profiler_profiles", "Profiles and dumps served.", labels=["kind"])
        for kind, n in sorted(self.served.items()):
            served.add_metric([kind], n)
        yield served
        rejected = CounterMetricFamily(
            "stator_profiler_rejected", "Profile requests refused (bad input, busy).", labels=["reason"]
        )
        for reason, n in sorted(self.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        if self.settings.continuous:
            yield GaugeMetricFamily("stator_profiler_windows", "Continuous-profiling windows held.", len(self.ring))
            yield GaugeMetricFamily(
                "stator_profiler_windows_bytes", "Bytes held by the continuous-profiling windows.", self.ring.bytes
            )
        if self.pusher is not None:
            p = self.pusher
            pushes = CounterMetricFamily("stator_profiler_pushes", "Windows pushed to Pyroscope.", labels=["result"])
            pushes.add_metric(["ok"], p.pushed)
            pushes.add_metric(["error"], p.failed)
            yield pushes
            yield CounterMetricFamily(
                "stator_profiler_push_dropped", "Windows dropped from a full push backlog.", p.dropped
            )


class ContinuousProfiler:
    """The worker running continuous profiling: subscribes the window sink, pushes each closed window."""

    name = "profiler"

    def __init__(self, profiler: Profiler) -> None:
        self.profiler = profiler

    async def run(self) -> None:
        profiler = self.profiler
        loop = asyncio.get_running_loop()
        closed: asyncio.Queue[Window] = asyncio.Queue()

        def on_window(window: Window) -> None:  # on the sampler thread
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(closed.put_nowait, window)

        sink = WindowSink(profiler.table, profiler.settings.rate, profiler.settings.window, profiler.ring, on_window)
        profiler.window_sink = sink
        profiler.sampler.subscribe(sink)
        profiler.logger.info(
            "continuous profiling started", rate_hz=profiler.settings.rate, window=profiler.settings.window
        )
        try:
            while True:
                window = await closed.get()
                if profiler.pusher is not None:
                    profiler.pusher.enqueue(window)
                    await profiler.pusher.flush()
        finally:
            profiler.sampler.unsubscribe(sink)
            sink.flush()
            profiler.window_sink = None


def install(host: ProfilingHost, resolver: RouteResolver | None = None) -> Profiler:
    """Create the service's profiler: metrics, the /-/monitor ``profiling`` section, and (when
    ``STATOR_PROFILE_CONTINUOUS``) the continuous-profiling worker. Serve :class:`~stator.profiling.ProfilingApp`
    and fill ``profiler.table`` per request to expose it."""
    settings = host.settings.profile
    profiler = Profiler(
        settings,
        host.logger,
        app_name=host.app_id,
        labels={"service_name": host.app_id, "instance": host.instance_id},
        resolver=resolver,
    )
    host.add_collector(profiler, "profiler")
    host.add_monitor_section("profiling", profiler.monitor)
    if settings.continuous:
        host.add_worker(profiler.continuous_worker())
    return profiler
