"""ServiceMetrics: one service's registry, its guarded collectors, and the ``/metrics`` endpoint.

Nothing is global: each :class:`ServiceMetrics` has its own :class:`MetricsRegistry` (prometheus_client's default
``REGISTRY`` is never touched), so two services in one process export separate metrics.

Scrapes never run on the event loop. prometheus_client's ``make_asgi_app`` calls ``generate_latest`` inline: with
10k series every scrape stops the loop for the whole render (~150 ms), and every request waits. Here a scrape
hands the work to a thread:

1. collect: every guarded collector starts at once in its own thread (see :mod:`stator.metrics.guard`), and the
   render thread waits at most one time budget for them;
2. encode: text 0.0.4 or OpenMetrics 1.0.0 with our own encoder (:mod:`stator.metrics.render`: the same bytes
   as prometheus_client's, exemplars included, without triggering garbage collections and handing the GIL to
   the loop every millisecond), or prometheus_client's (``STATOR_METRICS_RENDERER=prometheus_client``);
3. compress, when the scraper accepts gzip (zlib releases the GIL while it works).

Concurrent scrapes asking for the same representation share one render (single flight), so ten dashboards
refreshing at once cost one render, not ten; scrapes asking for different formats share the collection.
``bench/bench_metrics.py`` measures render time and the loop stalls against prometheus_client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar, cast

from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from stator.asgi import ASGIApp, Receive, Scope, Send, send_bytes
from stator.config import Settings
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.lifecycle.worker import Worker
from stator.logs import Logger
from stator.metrics.collectors import (
    BuildInfoCollector,
    DiskCollector,
    LoopCollector,
    ProcessCollector,
    PythonCollector,
    WaveCollector,
)
from stator.metrics.collectors.default_registry import DefaultRegistryCollector
from stator.metrics.gcpause import GcPauses
from stator.metrics.guard import CURRENT_ROUND, CollectorStatsCollector, GuardedCollector, LogLimiter, collect_round
from stator.metrics.negotiation import CONTENT_TYPES, Format, accepts_gzip, negotiate
from stator.metrics.registry import MetricsRegistry, ScrapeView, Unguarded
from stator.metrics.render import (
    Encoder,
    Pacer,
    exposed_names,
    fast_path,
    self_check,
    target_info_family,
    wrapper_rows,
)

T = TypeVar("T")

ENCODERS: Final[dict[Format, Callable[[Collector], bytes]]] = {
    "text": generate_text,
    "openmetrics": generate_openmetrics,
}
# Level 6 (zlib's default) compresses a 1 MB exposition ~10x at a fraction of level 9's cost (gzip.compress's
# default, which prometheus_client uses); mtime=0 makes equal bodies compress to equal bytes.
GZIP_LEVEL: Final = 6


class _StatsCollector(CollectorStatsCollector, Unguarded):
    pass


class ServiceMetrics:
    """The metrics of one service. ``registry`` is what users register their own metrics in."""

    def __init__(
        self,
        settings: Settings,
        logger: Logger,
        *,
        app_id: str,
        run_id: str,
        version: str,
        loop_monitor: LoopMonitor,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.app_id = app_id
        self.run_id = run_id
        self.version = version
        self.loop_monitor = loop_monitor
        self.registry = MetricsRegistry(self._make_guard)
        self.gc_pauses = GcPauses()
        self.loop = LoopCollector()
        self._names: set[str] = set()
        self._names_lock = threading.Lock()
        self.registry.register(_StatsCollector(self.registry.guards))
        self._defaults_installed = False
        self._inflight: dict[tuple[Format, bool], asyncio.Future[bytes]] = {}
        self._scrape_log = LogLimiter()
        self._encoder_warned = False
        self._merged_source: Callable[[], list[Metric]] | None = None

    # -- collectors ----------------------------------------------------------------------------------------

    def add_collector(self, collector: Collector, name: str | None = None) -> None:
        """Add a collector (anything whose ``collect()`` yields metric families), guarded: time budget, error
        isolation, ``stator_collector_*{collector=name}``. ``name`` defaults to the collector's class name."""
        self.registry.register_guarded(collector, name)

    def _make_guard(self, collector: Collector, name: str | None) -> GuardedCollector:
        base = name or str(getattr(collector, "name", "") or type(collector).__name__)
        with self._names_lock:
            unique, n = base, 1
            while unique in self._names:
                n += 1
                unique = f"{base}-{n}"
            self._names.add(unique)
        return GuardedCollector(collector, unique, self.settings.metrics.collector_timeout, self.logger)

    def install_defaults(self) -> None:
        """Process, Python runtime (GC counters and pauses), asyncio, disk, wave, build info and identity."""
        if self._defaults_installed:
            return
        self._defaults_installed = True
        settings = self.settings
        self.add_collector(ProcessCollector(), "process")
        self.gc_pauses.subscribe()
        self.add_collector(PythonCollector(self.gc_pauses), "python")
        self.loop_monitor.subscribe(self.loop.observe)
        self.add_collector(self.loop, "asyncio")
        self.add_collector(DiskCollector(settings.disk.paths, self.logger), "disk")
        if settings.wave.enabled:
            self.add_collector(WaveCollector(settings.wave.period, seed=self.app_id), "wave")
        self.add_collector(BuildInfoCollector(self.version, settings.metrics.git_commit), "build")
        if settings.metrics.default_registry:
            self.add_collector(DefaultRegistryCollector(), "default_registry")
        # Identity as ONE series (target_info, the OpenMetrics/OpenTelemetry convention), not as labels on every
        # series: run_id changes on each restart, and as a label it would start a new copy of every series
        # (new TSDB series, broken rate() across restarts, cardinality x restarts). Join it in when needed:
        #   rate(x[5m]) * on(job, instance) group_left(run_id) target_info
        self.registry.set_target_info({"app_id": self.app_id, "run_id": self.run_id})

    def workers(self) -> list[Worker]:
        return [_MetricsWorker(self)]

    def close(self) -> None:
        """Stop receiving GC pauses (the interpreter-wide hook is shared; see :mod:`stator.metrics.gcpause`)."""
        self.gc_pauses.close()

    # -- rendering -----------------------------------------------------------------------------------------

    def render_sync(self, fmt: Format = "text", gzipped: bool = False) -> bytes:
        """Collect and encode on the calling thread (the endpoint calls this in a worker thread)."""
        if self._merged_source is not None:  # stator.workers: the group's merged families instead of ours
            body = self._encode_families(fmt, self._merged_source())
            return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if gzipped else body
        results = collect_round(self.registry.guards())
        if self._own_encoder():
            body = self._encode(fmt, results)
        else:
            origin = {id(family): guard for guard, families in results.items() for family in families}
            token = CURRENT_ROUND.set(results)
            try:
                body = ENCODERS[fmt](ScrapeView(self.registry, origin, self._duplicate))
            finally:
                CURRENT_ROUND.reset(token)
        return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if gzipped else body

    def _own_encoder(self) -> bool:
        if self.settings.metrics.renderer != "stator":
            return False
        problem = _encoder_problem()
        if problem is not None and not self._encoder_warned:
            self._encoder_warned = True
            self.logger.warning(
                "stator's metrics encoder does not match this prometheus_client; using prometheus_client's",
                detail=problem,
            )
        return problem is None

    def _encode(self, fmt: Format, results: dict[GuardedCollector, list[Metric]]) -> bytes:
        """Our encoder (:mod:`stator.metrics.render`) over the registry, in ``registry.collect()`` order."""
        encoder = Encoder(fmt, Pacer(), self._clash)
        target = self.registry.get_target_info()
        if target:
            encoder.family(target_info_family(target))
        for collector in self.registry.collectors():
            try:
                if isinstance(collector, GuardedCollector):
                    families = results.get(collector)
                    if families is None:  # registered while this scrape was collecting
                        families = list(collector.collect())
                    for family in families:
                        encoder.family(family, collector)
                elif fast_path(collector):
                    encoder.wrapper(cast(MetricWrapperBase, collector))
                else:
                    for family in collector.collect():
                        encoder.family(family)
            except Exception as exc:  # an unguarded collector (a metric subclass) failed: skip it, not the scrape
                suppressed = self._scrape_log.allow(time.monotonic())
                if suppressed is not None:
                    self.logger.error(
                        "metrics collection failed", exc=exc, collector=repr(collector), suppressed=suppressed
                    )
        return encoder.finish()

    def _clash(self, name: str, origin: object | None) -> None:
        family = Metric(name, "", "unknown")
        self._duplicate(family, origin if isinstance(origin, GuardedCollector) else None)

    async def render(self, openmetrics: bool = False) -> bytes:
        """The exposition (uncompressed), rendered off the event loop and shared with concurrent scrapes."""
        return await self.render_shared("openmetrics" if openmetrics else "text", False)

    async def render_shared(self, fmt: Format, gzipped: bool) -> bytes:
        loop = asyncio.get_running_loop()
        self.loop.adopt(loop)  # the task count needs the loop; the probe may not have ticked yet
        key = (fmt, gzipped)
        flight = self._inflight.get(key)
        if flight is None or flight.get_loop() is not loop:
            flight = _in_thread(self.render_sync, fmt, gzipped)
            self._inflight[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        # shield: a scraper that disconnects cancels its own wait, not the render the others are waiting for.
        return await asyncio.shield(flight)

    def _landed(self, key: tuple[Format, bool], flight: asyncio.Future[bytes]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: no "exception was never retrieved" when every scraper went away

    def _duplicate(self, family: Metric, guard: GuardedCollector | None) -> None:
        detail = f"metric family {family.name!r} clashes with one already exposed; dropped"
        if guard is not None:
            guard.reject(detail)
            return
        suppressed = self._scrape_log.allow(time.monotonic())
        if suppressed is not None:
            self.logger.error("metric family dropped", family=family.name, detail=detail, suppressed=suppressed)

    # -- worker groups (stator.workers): a scrape can render a group's merged families -------------------------

    def use_merged_source(self, source: Callable[[], list[Metric]] | None) -> None:
        """Render ``source()`` (blocking, called off the event loop) instead of this registry; None restores the
        registry. :meth:`stator.workers.WorkerGroup.merged_families` is such a source."""
        self._merged_source = source

    def collect_local(self) -> list[Metric]:
        """This registry's families as one scrape would expose them (``target_info`` first, registration order,
        clashing families dropped), materialised: what a worker snapshot holds. Any thread."""
        results = collect_round(self.registry.guards())
        out: list[Metric] = []
        seen: set[str] = set()
        tick = Pacer().tick  # called off the event loop: hand it the GIL while reading big metrics

        def keep(family: Metric, origin: GuardedCollector | None) -> None:
            names = exposed_names(family.name, family.type)
            if not seen.isdisjoint(names):
                self._duplicate(family, origin)
                return
            seen.update(names)
            out.append(family)

        target = self.registry.get_target_info()
        if target:
            keep(target_info_family(target), None)
        for collector in self.registry.collectors():
            try:
                if isinstance(collector, GuardedCollector):
                    families = results.get(collector)
                    for family in families if families is not None else collector.collect():
                        keep(family, collector)
                else:
                    rows = wrapper_rows(cast(MetricWrapperBase, collector), tick) if fast_path(collector) else None
                    for family in collector.collect() if rows is None else (rows,):
                        keep(family, None)
            except Exception as exc:  # an unguarded collector failed: skip it, not the snapshot
                suppressed = self._scrape_log.allow(time.monotonic())
                if suppressed is not None:
                    self.logger.error(
                        "metrics collection failed", exc=exc, collector=repr(collector), suppressed=suppressed
                    )
        return out

    def _encode_families(self, fmt: Format, families: list[Metric]) -> bytes:
        if self._own_encoder():
            encoder = Encoder(fmt, Pacer(), self._clash)
            for family in families:
                encoder.family(family)
            return encoder.finish()
        return ENCODERS[fmt](_Families(families))

    # -- HTTP ----------------------------------------------------------------------------------------------

    def endpoint(self) -> ASGIApp:
        """The ``/metrics`` ASGI handler: GET and HEAD, content negotiation, gzip."""

        async def metrics_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            method = scope.get("method", "GET")
            if method not in ("GET", "HEAD"):
                await send_bytes(
                    send, 405, b"method not allowed\n", b"text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")]
                )
                return
            head = method == "HEAD"
            fmt = negotiate(_header(scope, b"accept"))
            gzipped = accepts_gzip(_header(scope, b"accept-encoding"))
            try:
                body = await self.render_shared(fmt, gzipped)
            except Exception as exc:  # a bug in an encoder, not a collector (those are isolated): say so, stay up
                self.logger.error("metrics render failed", exc=exc)
                await send_bytes(send, 500, b"metrics render failed\n", b"text/plain; charset=utf-8", head=head)
                return
            headers = [(b"vary", b"Accept, Accept-Encoding"), (b"cache-control", b"no-store")]
            if gzipped:
                headers.append((b"content-encoding", b"gzip"))
            await send_bytes(send, 200, body, CONTENT_TYPES[fmt], headers, head=head)

        return metrics_endpoint


class _Families:
    """A registry-like view of a list of families, for prometheus_client's encoders (stator.workers)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class _MetricsWorker:
    """Ties the metrics to the service's run: learns the event loop (task count) at start, and leaves the
    interpreter-wide GC hook when the service stops."""

    name = "metrics"

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    async def run(self) -> None:
        self._metrics.loop.bind(asyncio.get_running_loop())
        if self._metrics._defaults_installed:
            self._metrics.gc_pauses.subscribe()
        try:
            await asyncio.Future()  # nothing to do until cancelled
        finally:
            self._metrics.close()


_SELF_CHECK: list[str | None] = []
_SELF_CHECK_LOCK = threading.Lock()


def _encoder_problem() -> str | None:
    """:func:`stator.metrics.render.self_check`, once per process (the first render pays ~2 ms)."""
    with _SELF_CHECK_LOCK:
        if not _SELF_CHECK:
            _SELF_CHECK.append(self_check())
        return _SELF_CHECK[0]


def _header(scope: Scope, name: bytes) -> str | None:
    """All values of a request header joined with commas (RFC 9110 §5.3), or None."""
    values = [bytes(value).decode("latin-1") for key, value in scope.get("headers") or () if key == name]
    return ", ".join(values) if values else None


def _in_thread(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """Run ``fn(*args)`` in a new daemon thread; the result arrives on the calling loop.

    Not ``asyncio.to_thread``: the default executor is shared with the application (a render must not queue
    behind its blocking calls), and its threads are joined at loop shutdown, which a render waiting out a
    collector's budget would delay. Starting a thread costs ~0.1 ms per scrape."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def target() -> None:
        try:
            result: object = fn(*args)
            ok = True
        except BaseException as exc:
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop closed meanwhile; nobody is waiting
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=target, name="stator-metrics-render", daemon=True).start()
    return future
