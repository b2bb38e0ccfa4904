"""The Service: one observable process — its logger, metrics, readiness, workers and HTTP server.

Nothing here is global: every piece is created by the Service and passed to what needs it, so two services can
run in one process (tests do) without seeing each other's metrics, workers or log context.

Lifecycle (``run``/``serve``): config → logging → HTTP listening → workers. On SIGINT/SIGTERM: ``shutting down``;
readiness flips to not-ready at once; :class:`PreDrain` workers act (deregistration) with the clock running; the
HTTP server stops accepting and drains in-flight requests; the remaining workers are cancelled and awaited;
``stopped``. All of it within ``STATOR_SHUTDOWN_TIMEOUT``. A second signal exits at once with a non-zero code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from stator import __version__
from stator.backoff import Backoff
from stator.client import HTTPClient
from stator.config import Settings, load_settings, redacted_dump
from stator.health import Check, Readiness
from stator.http.asgi import ASGIApp, Scope
from stator.http.middleware import RequestTracer
from stator.http.red import RedMetrics
from stator.ids import short_id
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.lifecycle.worker import PreDrain, Worker, WorkerState, supervise
from stator.logs import Logger, LoopBufferedSink, stdlib
from stator.metrics import ServiceMetrics
from stator.tracing import Tracing

State = Literal["new", "starting", "running", "stopping", "stopped"]


class Service:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: ASGIApp | None = None,
        logger: Logger | None = None,
        version: str = __version__,
        restart_backoff: tuple[float, float] = (1.0, 60.0),
        route_resolver: Callable[[Scope], str] | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(os.environ)
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
        self._stop = asyncio.Event()
        self._stop_signals = 0
        # True while serve() drives the lifecycle: the ASGI lifespan then leaves the workers to it, so they
        # stop after the HTTP drain, not inside it.
        self.serving = False
        self.address: tuple[str, int] | None = None
        self.ops_address: tuple[str, int] | None = None
        self.add_worker(self.loop_monitor)
        self._metrics.install_defaults()
        for worker in self._metrics.workers():
            self.add_worker(worker)
        from stator.http.app import build_app  # the HTTP layer depends on Service, not the reverse

        self.user_app = app
        self.asgi: ASGIApp = build_app(self, app)

    # -- composition -------------------------------------------------------------------------------------

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
        """Show ``section()`` under ``name`` in /monitor (registration and discovery state, ...)."""
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

    @property
    def service_metrics(self) -> ServiceMetrics:
        return self._metrics

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
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            "ops_address": f"{self.ops_address[0]}:{self.ops_address[1]}" if self.ops_address else None,
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

    # -- workers -----------------------------------------------------------------------------------------

    def _spawn(self, worker: Worker, state: WorkerState) -> None:
        backoff = Backoff(self._restart_backoff[0], self._restart_backoff[1])
        task = asyncio.create_task(supervise(worker, state, self.logger, backoff), name=f"worker:{worker.name}")
        self._tasks[state.worker_id] = task

    async def start(self) -> None:
        """Start the workers and mark the service started (idempotent). Used by ``serve`` and ASGI lifespan."""
        if self.state != "new":
            return
        self.state = "starting"
        if self._log_sink is not None:
            self._log_sink.bind(asyncio.get_running_loop())
        for worker, state in self._workers:
            self._spawn(worker, state)
        self.readiness.started = True
        self.state = "running"

    async def begin_shutdown(self, deadline: float) -> None:
        """Flip readiness and let :class:`PreDrain` workers act before the HTTP drain (idempotent)."""
        if self.readiness.shutting_down:
            return
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

    async def stop_workers(self, deadline: float) -> None:
        """Cancel every worker and wait for them, at most until ``deadline`` (monotonic)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                self.logger.error("worker did not stop in time", task=task.get_name())
        if self.tracing is not None:
            # After the drain, so the last requests' spans go out too; bounded by what is left of the deadline.
            await asyncio.to_thread(self.tracing.shutdown, max(0.5, deadline - time.monotonic()))
        self.state = "stopped"
        if self._log_sink is not None:
            self._log_sink.unbind()

    # -- serving -----------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self, sock: socket.socket | None = None) -> int:
        """Serve HTTP and run the workers until :meth:`request_stop`; returns the process exit code."""
        token = stdlib.current_logger.set(self.logger)
        uninstall = stdlib.install(self.logger, self.settings.log.level)
        try:
            return await self._serve(sock)
        finally:
            uninstall()
            stdlib.current_logger.reset(token)

    async def _serve(self, sock: socket.socket | None) -> int:
        http = self.settings.http
        self.serving = True
        self.logger.info("starting up", version=self.version, config=self.config_dump())
        server = self._server(self.asgi, http.host, http.port, lifespan=True)
        ops_server = None
        if self.settings.ops.port is not None:
            from stator.http.app import ops_app

            ops_server = self._server(ops_app(self), http.host, self.settings.ops.port, lifespan=False)
        try:
            await server.startup(sockets=[sock] if sock else None)
            if ops_server is not None:
                await ops_server.startup()
        except SystemExit:  # uvicorn exits on bind errors and failed lifespan startup, after logging them
            self.logger.error("http server failed to start", host=http.host, port=http.port)
            if server.started:
                server.should_exit = True
                await server.shutdown()
            await self.stop_workers(time.monotonic() + 1.0)
            return 1
        self.address = _bound(server, http.host, http.port)
        self.logger.info("listening", address=f"{self.address[0]}:{self.address[1]}")
        if ops_server is not None:
            self.ops_address = _bound(ops_server, http.host, self.settings.ops.port or 0)
            self.logger.info("ops listening", address=f"{self.ops_address[0]}:{self.ops_address[1]}")
        await self.start()
        servers = [s for s in (server, ops_server) if s is not None]
        loops = [asyncio.create_task(s.main_loop(), name="uvicorn-main-loop") for s in servers]
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([*loops, stop], return_when=asyncio.FIRST_COMPLETED)

        deadline = time.monotonic() + self.settings.shutdown.timeout
        self.logger.info("shutting down")
        await self.begin_shutdown(deadline)
        self.logger.info("shutting down http service")
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*loops)
        stop.cancel()
        for s in servers:
            # uvicorn types this as int but only hands it to asyncio.wait_for: a float deadline is honoured.
            s.config.timeout_graceful_shutdown = max(0.1, deadline - time.monotonic())  # type: ignore[assignment]
        await asyncio.gather(*(s.shutdown() for s in servers))
        self.logger.info("http service stopped")
        await self.stop_workers(deadline)
        self.logger.info("stopped")
        return 0

    def _server(self, app: ASGIApp, host: str, port: int, *, lifespan: bool) -> uvicorn.Server:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on" if lifespan else "off",
            log_config=None,
            access_log=False,  # the stator middleware writes a richer access line
            server_header=False,
            timeout_graceful_shutdown=max(1, round(self.settings.shutdown.timeout)),
        )
        server = uvicorn.Server(config)
        # Server.serve() would install uvicorn's own signal handlers and drain before we could deregister;
        # driving startup/main_loop/shutdown ourselves keeps the shutdown order ours.
        config.load()
        server.lifespan = config.lifespan_class(config)
        return server

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM on a fresh event loop (uvloop when available); returns the exit code."""
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(self._run_with_signals())

    async def _run_with_signals(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        return await self.serve()

    def _on_signal(self, sig: int) -> None:
        self._stop_signals += 1
        name = signal.Signals(sig).name
        if self._stop_signals == 1:
            self.logger.info("signal received", signal=name)
            self.request_stop()
            return
        self.logger.error("second signal: forced exit", signal=name)
        self.logger.flush()
        os._exit(128 + sig)


def _bound(server: uvicorn.Server, host: str, port: int) -> tuple[str, int]:
    """The address a server actually listens on (port 0 resolves to the OS-chosen port)."""
    if server.servers and server.servers[0].sockets:
        name = server.servers[0].sockets[0].getsockname()
        return str(name[0]), int(name[1])
    return host, port
