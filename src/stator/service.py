"""The Service: one observable process — its logger, metrics, readiness, workers, registration, discovery and HTTP.

Nothing here is global: every piece is created by the Service and passed to what needs it, so two services can
run in one process (tests do) without seeing each other's metrics, workers or log context. The two exceptions
are the ones their ecosystems force, installed at start and undone at stop: the stdlib logging bridge and
OpenTelemetry's global tracer provider.

The same lifecycle runs wherever the app is served. Under an outside server (``uvicorn mod:app``, gunicorn,
hypercorn, granian) the ASGI lifespan drives it: :meth:`start` at startup; at shutdown :meth:`begin_shutdown`
(readiness off, deregistration) then the app's own shutdown then :meth:`finish_shutdown` (workers, spans,
logging). Under ``stator run`` (:meth:`run`/:meth:`serve`) the service drives uvicorn itself so that the HTTP
drain happens between the two: config → logging → HTTP listening → workers; on SIGINT/SIGTERM ``shutting down``,
readiness flips at once, :class:`PreDrain` workers act (deregistration), the lame duck keeps serving for
``STATOR_SHUTDOWN_DELAY`` (every response saying ``Connection: close``), then the HTTP server stops accepting and
drains within ``STATOR_SHUTDOWN_TIMEOUT`` (a request still running then gets a JSON 503), the remaining workers
are cancelled and awaited, spans are flushed, ``stopped``. A second signal exits at once with a non-zero code.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from stator import __version__
from stator.asgi import AnyASGIApp, ASGIApp, Scope
from stator.backoff import Backoff
from stator.client import HTTPClient
from stator.config import Settings, load_settings, redacted_dump
from stator.config.env import unknown_variables
from stator.health import Check, Readiness
from stator.http.app import ServiceApp
from stator.http.frameworks import install_error_handler
from stator.http.middleware import ObservabilityMiddleware, RequestTracer
from stator.http.ops import OpsApp
from stator.http.ratelimit import RateLimitMiddleware, key_from_setting
from stator.http.red import RedMetrics
from stator.ids import short_id
from stator.lifecycle import sockets
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.lifecycle.worker import PreDrain, Worker, WorkerState, supervise
from stator.logs import Logger, LoopBufferedSink, stdlib
from stator.metrics import ServiceMetrics
from stator.profiling import Profiler, ProfilingApp
from stator.profiling import install as install_profiler
from stator.tracing import Tracing
from stator.ui import InstancePages
from stator.workers import Policies, WorkerGroup
from stator.workers.identity import GroupDirError

if TYPE_CHECKING:
    from stator.upstream import Upstream, UpstreamHub

State = Literal["new", "starting", "running", "stopping", "stopped"]
PPROF = "/-/debug/pprof"


class Service:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: AnyASGIApp | None = None,
        name: str | None = None,
        logger: Logger | None = None,
        version: str = __version__,
        restart_backoff: tuple[float, float] = (1.0, 60.0),
        route_resolver: Callable[[Scope], str] | None = None,
        tracer: RequestTracer | None = None,
        slot_hint: int | None = None,
        from_env: bool | None = None,
    ) -> None:
        # Settings read from os.environ (here, or by the caller: from_env=True): unknown STATOR_* are warned of.
        self._from_env = settings is None if from_env is None else from_env
        settings = settings if settings is not None else load_settings(os.environ)
        # Unnamed: neither name= nor STATOR_SERVICE_NAME. Said once at start: a service called "stator" by
        # accident registers, logs and exports metrics under the wrong name.
        self.unnamed = name is None and "name" not in settings.service.model_fields_set
        if name is not None:
            settings = settings.model_copy(update={"service": settings.service.model_copy(update={"name": name})})
        self.settings = settings
        self.version = version
        self.app_id = self.settings.service.name
        self.run_id = short_id()
        self.instance_id = self.settings.service.id or f"{self.app_id}-{self.run_id}"
        log = self.settings.log
        self._log_sink: LoopBufferedSink | None = None
        if logger is None:
            self._log_sink = LoopBufferedSink(1)
            logger = Logger(
                app_id=self.app_id,
                run_id=self.run_id,
                level=log.level,
                fmt=log.format,
                maxlen=log.maxlen,
                redact_keys=log.redact_keys,
                sink=self._log_sink,
                color=log.format == "console" and os.isatty(1),
            )
        self.logger = logger
        # Several worker processes of one instance (stator run --workers, gunicorn -w, uvicorn --workers, ...):
        # join their group, so /metrics is the whole instance's and one worker registers it (docs/workers.md).
        self.merge_policies = Policies()
        self.group: WorkerGroup | None = None
        if self.settings.workers.group != "off":
            try:
                self.group = WorkerGroup.join(
                    mode=self.settings.workers.group,
                    collect=lambda: self._metrics.collect_local(),
                    logger=self.logger,
                    policies=self.merge_policies,
                    status=self._worker_status,
                    directory=self.settings.workers.dir,
                    timeout=self.settings.workers.scrape_timeout,
                    slot_hint=slot_hint,
                )
            except (OSError, GroupDirError) as exc:
                self.logger.error("cannot join the worker group; serving as one process", exc=exc)
        if self.group is not None:
            self.logger = self.logger.bind(worker=self.group.slot)  # the `worker` field of every line
            self.instance_id = self.settings.service.id or f"{self.app_id}-{self.group.group_id}"
        self.started_at = time.time()
        self.state: State = "new"
        self.readiness = Readiness(self.settings.ops.ready_timeout, self.settings.ops.ready_cache)
        self.loop_monitor = LoopMonitor(self.settings.metrics.loop_probe_interval)
        self._metrics = ServiceMetrics(
            self.settings,
            self.logger,
            app_id=self.app_id,
            run_id=self.run_id,
            version=version,
            loop_monitor=self.loop_monitor,
        )
        self.metrics: CollectorRegistry = self._metrics.registry
        if self.group is not None:
            self._metrics.use_merged_source(self.group.merged_families)
        self.http_metrics = RedMetrics(self.settings.http.buckets, self.settings.http.max_label_sets)
        self.metrics.register(self.http_metrics)
        self.route_resolver = route_resolver
        self.tracing: Tracing | None = None
        if tracer is None and self.settings.otlp.endpoint:
            self.tracing = Tracing(
                self.settings,
                self.logger,
                self.metrics,
                service_name=self.app_id,
                version=version,
                instance_id=self.instance_id,
            )
            tracer = self.tracing
        self.tracer = tracer
        self._restart_backoff = restart_backoff
        self._workers: list[tuple[Worker, WorkerState]] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._monitor_sections: dict[str, Callable[[], Any]] = {}
        self._deadline: float | None = None
        self._uninstall_logging: Callable[[], None] | None = None
        self._upstreams: UpstreamHub | None = None
        # True while serve() drives the lifecycle: the ASGI lifespan then leaves the workers to it, so they
        # stop after the HTTP drain, not inside it.
        self.serving = False
        self.address: tuple[str, int] | None = None
        self.ops_address: tuple[str, int] | None = None
        self.add_worker(self.loop_monitor)
        self._metrics.install_defaults()
        if self.group is not None:
            self._metrics.registry.set_target_info({"app_id": self.app_id, "run_id": self.group.group_id})
            self.add_monitor_section("worker_group", self.group.monitor)
        for worker in self._metrics.workers():
            self.add_worker(worker)
        # pprof endpoints, task dumps and (optionally) continuous profiling: /-/debug/pprof/.
        self.profiler: Profiler | None = None
        if self.settings.profile.enabled:
            resolver = (lambda scope, _root: route_resolver(scope)) if route_resolver is not None else None
            self.profiler = install_profiler(self, resolver=resolver)
        # Unhandled exceptions answer stator's JSON 500 in Starlette, FastAPI and Litestar apps too.
        self.framework = install_error_handler(app, self.logger) if app is not None else None
        self.user_app: ASGIApp | None = cast(ASGIApp | None, app)
        rl = self.settings.ratelimit
        if rl.rate > 0 and self.user_app is not None:
            # STATOR_RATELIMIT_*: a token-bucket 429 in front of the application (never of the ops endpoints),
            # inside the observability middleware so every 429 is counted, logged and traced.
            limiter = RateLimitMiddleware(
                self.user_app, rate=rl.rate, burst=rl.burst, key=key_from_setting(rl.key), max_keys=rl.max_keys
            )
            self.add_collector(limiter, "ratelimit")
            self.add_monitor_section("ratelimit", limiter.monitor)
            self.user_app = limiter
        # Registration (STATOR_REGISTRY) and discovery (STATOR_DISCOVER_SOURCE): wired here, so they run the
        # same under `stator run` and under any ASGI server.
        from stator.discover import ServicesEndpoint, setup_discovery
        from stator.roster import setup_registration

        self.roster = setup_registration(self)
        self.discovery = setup_discovery(self)
        # StatsD/DogStatsD push (STATOR_STATSD_ADDR) beside /metrics; `statsd` is its StatsD-native client.
        from stator.statsd import setup_statsd

        self.statsd = setup_statsd(self)
        self.services = ServicesEndpoint(self.discovery)
        self.asgi: ServiceApp = self._build_app(self.user_app)
        from stator.serving import Runner  # drives uvicorn for `stator run` and the ops listener

        self.runner = Runner(self)

    # -- composition -------------------------------------------------------------------------------------

    def _ops(self, *, sensitive: bool) -> OpsApp:
        ops = OpsApp(
            self, self._metrics.endpoint(), self.settings.metrics.path, services=self.services, sensitive=sensitive
        )
        if self.profiler is not None:
            ops.mount(PPROF, ProfilingApp(self.profiler), sensitive=True, alias="/debug/pprof")
        ops.mount("/-/ui", InstancePages(self, profile_links=sensitive), sensitive=False)  # status, routes, requests
        return ops

    def middleware(self, app: ASGIApp) -> ObservabilityMiddleware:
        http = self.settings.http
        return ObservabilityMiddleware(
            app,
            logger=self.logger,
            metrics=self.http_metrics,
            request_id_header=http.request_id_header,
            slow=http.slow,
            access_log=http.access_log,
            instrument_ops=http.instrument_ops,
            ops_log_sample=http.access_log_ops_sample,
            route_resolver=self.route_resolver,
            tracer=self.tracer,
            profiling_tasks=self.profiler.table.active if self.profiler is not None else None,
            slow_profile=self._slow_profile_link(),
            # The remote-write receiver checks its own, larger limit on its route (STATOR_REMOTE_WRITE_MAX_BODY).
            max_body=max(http.max_body, self.settings.remote_write.max_body)
            if http.max_body and self.settings.remote_write.enabled
            else http.max_body,
        )

    def _slow_profile_link(self) -> Callable[[float, float], str] | None:
        """With continuous profiling, a slow request's access line links to the CPU samples of its time window."""
        profiler = self.profiler
        if profiler is None or not profiler.settings.continuous:
            return None
        return lambda start, end: f"{PPROF}/{profiler.window_query(start, end)}"

    def _build_app(self, app: ASGIApp | None) -> ServiceApp:
        ops = self.settings.ops
        # With a separate ops port the application port serves the application alone.
        self.public_ops = None if ops.port is not None else self._ops(sensitive=ops.expose_sensitive)
        return ServiceApp(app, lifecycle=self, middleware=self.middleware, ops=self.public_ops)

    def ops_app(self) -> ASGIApp:
        """The ops endpoints alone, for the separate ops listener (``STATOR_OPS_PORT``), sensitive ones included."""
        return self.middleware(self._ops(sensitive=True))

    def add_worker(self, worker: Worker) -> None:
        """Run ``worker`` for the life of the service (started with the others, or at once if running)."""
        state = WorkerState(worker.name)
        self._workers.append((worker, state))
        if self.state in ("starting", "running"):
            self._spawn(worker, state)

    def add_collector(self, collector: Collector, name: str | None = None) -> None:
        """Add a collector (anything with ``collect()``); it is timed and isolated from the others."""
        self._metrics.add_collector(collector, name)

    def add_readiness_check(self, name: str, check: Check) -> None:
        self.readiness.add_check(name, check)

    def add_monitor_section(self, name: str, section: Callable[[], Any]) -> None:
        """Show ``section()`` under ``name`` in /-/monitor (registration and discovery state, ...)."""
        self._monitor_sections[name] = section

    def http_client(self, base_url: str = "", **kwargs: Any) -> HTTPClient:
        """A project HTTP client bound to this service: its logger, request-id header, and — when tracing is on —
        CLIENT spans with ``traceparent`` propagation. ``kwargs`` go to :class:`~stator.client.HTTPClient`."""
        return HTTPClient(base_url, **{**self.client_options(), **kwargs})

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments that make any project HTTP client (including the registry presets) this service's:
        logger, redaction, request-id header and tracing hook."""
        hooks = [self.tracing.client_hook] if self.tracing is not None else []
        return {
            "logger": self.logger,
            "redact": self.settings.log.redact_keys,
            "request_id_header": self.settings.http.request_id_header,
            "hooks": hooks,
        }

    def upstream(self, name: str, **options: Any) -> Upstream:
        """A client of service ``name``: discovered healthy instances, balancing, retries within a budget,
        outlier ejection, a circuit breaker and a rate limit (docs/upstream.md). ``options`` override
        ``STATOR_UPSTREAM_*`` for this upstream; one client per name."""
        if self._upstreams is None:
            from stator.upstream import UpstreamHub

            self._upstreams = UpstreamHub(self)  # its metrics collector and the "upstreams" /-/monitor section
        return self._upstreams.get(name, **options)

    def metrics_policy(self, metric: object, policy: str) -> None:
        """How a gauge merges across worker processes: sum|max|min|mostrecent|worker|worker+sum|first
        (docs/workers.md; the default for gauges stator does not know is per worker)."""
        self.merge_policies.declare(metric, policy)

    def _worker_status(self) -> dict[str, Any]:
        """This worker's line in /-/monitor's worker list (read from the group's slot thread)."""
        red = getattr(self, "http_metrics", None)  # asked for while joining, before the metrics exist
        routes = list(red.routes.values()) if red is not None else []
        return {"state": getattr(self, "state", "new"), "requests": sum(sum(list(r.statuses.values())) for r in routes)}

    @property
    def service_metrics(self) -> ServiceMetrics:
        return self._metrics

    @property
    def tracer_provider(self) -> Any:
        """The service's OpenTelemetry ``TracerProvider`` (None when tracing is off)."""
        return self.tracing.provider if self.tracing is not None else None

    # -- what the ops endpoints show ---------------------------------------------------------------------

    def alive(self) -> bool:
        return not (self.state == "running" and self.loop_monitor.wedged())

    def monitor(self) -> dict[str, Any]:
        now = time.time()
        report = self.readiness.last
        out: dict[str, Any] = {
            "app_id": self.app_id,
            "run_id": self.run_id,
            "instance_id": self.instance_id,
            "version": self.version,
            "state": self.state,
            "started_at": self.started_at,
            "uptime_seconds": round(now - self.started_at, 3),
            "address": _show(self.address),
            "ops_address": _show(self.ops_address),
            "workers": [state.snapshot() for _, state in self._workers],
            "readiness": {
                "shutting_down": self.readiness.shutting_down,
                "last": report.as_json() if report else None,
            },
            "event_loop": {
                "last_lag_seconds": round(self.loop_monitor.last_lag, 6),
                "max_lag_seconds": round(self.loop_monitor.max_lag, 6),
            },
        }
        out["tracing"] = self.tracing.monitor() if self.tracing is not None else {"enabled": False}
        for name, section in self._monitor_sections.items():
            try:
                out[name] = section()
            except Exception as exc:
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    def config_dump(self) -> dict[str, Any]:
        return redacted_dump(self.settings)

    def listen_address(self) -> tuple[str, int] | None:
        """Where the application is served: the bound address under ``stator run``; under an outside server the
        listening socket of this process (from /proc), preferring ``STATOR_HTTP_PORT`` when several listen."""
        if self.address is not None or self.serving:
            return self.address
        found = [a for a in sockets.listening() if self.ops_address is None or a[1] != self.ops_address[1]]
        if not found:
            return None
        preferred = [a for a in found if a[1] == self.settings.http.port]
        return (preferred or found)[0]

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _spawn(self, worker: Worker, state: WorkerState) -> None:
        backoff = Backoff(self._restart_backoff[0], self._restart_backoff[1])
        task = asyncio.create_task(supervise(worker, state, self.logger, backoff), name=f"worker:{worker.name}")
        self._tasks[state.worker_id] = task

    def install_logging(self) -> None:
        """Route stdlib logging (libraries, the server, the app's own loggers) through this service's logger:
        the one process-global hook, undone by :meth:`uninstall_logging` (idempotent)."""
        if self._uninstall_logging is None:
            self._uninstall_logging = stdlib.install(self.logger, self.settings.log.level)

    def uninstall_logging(self) -> None:
        if self._uninstall_logging is not None:
            self._uninstall_logging()
            self._uninstall_logging = None

    @property
    def started(self) -> bool:
        return self.state != "new"

    async def start(self) -> None:
        """Install the logging bridge and the global tracer provider, start the workers (registration and
        discovery among them) and, under an outside server, the ops listener. Idempotent."""
        if self.state != "new":
            return
        self.state = "starting"
        if self._log_sink is not None:
            self._log_sink.bind(asyncio.get_running_loop())
        self.install_logging()
        if self.tracing is not None:
            self.tracing.install_global()
        if self.unnamed:
            self.logger.warning(
                "service has no name: set STATOR_SERVICE_NAME or pass name= to stator.instrument()",
                using=self.app_id,
            )
        if self._from_env:
            for variable in unknown_variables(os.environ):
                self.logger.warning("unknown setting ignored", variable=variable)
        if not self.serving and self.settings.ops.port is not None:
            await self.runner.start_ops_listener()
        for worker, state in self._workers:
            self._spawn(worker, state)
        self.readiness.started = True
        self.state = "running"

    async def begin_shutdown(self, deadline: float | None = None) -> None:
        """Flip readiness and let :class:`PreDrain` workers act before the HTTP drain (idempotent). Starts the
        shutdown deadline (``STATOR_SHUTDOWN_TIMEOUT`` from now) unless one is given."""
        if self._deadline is None:
            self._deadline = deadline if deadline is not None else time.monotonic() + self.settings.shutdown.timeout
        if self.readiness.shutting_down:
            return
        deadline = self._deadline
        self.readiness.shutting_down = True
        self.state = "stopping"
        for worker, state in self._workers:
            if isinstance(worker, PreDrain):
                remaining = max(0.0, deadline - time.monotonic())
                try:
                    async with asyncio.timeout(remaining):
                        await worker.before_drain()
                except TimeoutError:
                    self.logger.error("pre-drain step timed out", worker=state.name)
                except Exception as exc:
                    self.logger.error("pre-drain step failed", exc=exc, worker=state.name)

    async def finish_shutdown(self) -> None:
        """After the app's own shutdown under an outside server: stop workers, flush spans, undo the logging
        bridge. Under ``stator run`` the HTTP drain comes first, so :meth:`serve` does it instead."""
        if self.serving:
            return
        await self.begin_shutdown()
        await self.runner.stop_ops_listener()
        await self.stop_workers(self._deadline or time.monotonic())
        self.logger.info("stopped")

    async def stop_workers(self, deadline: float) -> None:
        """Cancel every worker and wait for them, at most until ``deadline`` (monotonic); flush the spans."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                self.logger.error("worker did not stop in time", task=task.get_name())
        if self.profiler is not None:
            self.profiler.close()
        if self.tracing is not None:
            # After the drain, so the last requests' spans go out too; bounded by what is left of the deadline.
            await asyncio.to_thread(self.tracing.shutdown, max(0.5, deadline - time.monotonic()))
        if self.group is not None:
            self.group.close()  # a final snapshot (its totals stay in the sum), slot and leadership released
        self.state = "stopped"
        if not self.serving:  # under `stator run`, the Runner removes the bridge after the last line is written
            self.uninstall_logging()
        if self._log_sink is not None:
            self._log_sink.unbind()

    # -- serving (stator run): the Runner drives uvicorn; these are the Service's handles on it -----------------

    def request_stop(self) -> None:
        """Begin the ordered stop of :meth:`serve` (what SIGINT/SIGTERM do)."""
        self.runner.request_stop()

    async def serve(self, sock: socket.socket | None = None, ops_sock: socket.socket | None = None) -> int:
        """Serve HTTP and run the workers until :meth:`request_stop`; returns the process exit code."""
        return await self.runner.serve(sock, ops_sock)

    def run(self, sock: socket.socket | None = None, ops_sock: socket.socket | None = None) -> int:
        """Serve until SIGINT/SIGTERM on a fresh event loop (uvloop when available); returns the exit code.
        ``sock``/``ops_sock``: listening sockets bound by a supervisor (``stator run --workers``)."""
        return self.runner.run(sock, ops_sock)


def _show(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None
