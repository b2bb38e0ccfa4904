"""Serving a :class:`~stator.service.Service` with uvicorn driven step by step (``stator run``), so shutdown is
stator's order and not uvicorn's: readiness 503 → deregistration → lame duck (``STATOR_SHUTDOWN_DELAY``, every
response saying ``Connection: close``) → stop listening and drain within ``STATOR_SHUTDOWN_TIMEOUT`` (a request
still running then answers a JSON 503) → workers → spans. Also the ops listener (``STATOR_OPS_PORT``) that a
service starts for itself under an outside server. The listeners use :mod:`stator.http.protocol`'s edge (limits,
timeouts, connection cap, JSON answers to malformed requests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from stator.asgi import ASGIApp
from stator.http.protocol import Edge, EdgeLimits
from stator.logs import stdlib

if TYPE_CHECKING:
    from stator.service import Service


class Runner:
    """One service's uvicorn servers, its stop event and its signal handling."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.edge: Edge | None = None  # limits of the listeners stator runs itself; built with the first server
        self.ops_server: uvicorn.Server | None = None
        self._stop = asyncio.Event()
        self._signals = 0

    async def stop_ops_listener(self) -> None:
        if self.ops_server is not None:
            self.ops_server.should_exit = True
            await self.ops_server.shutdown()
            self.ops_server = None

    async def start_ops_listener(self) -> None:
        """STATOR_OPS_PORT under an outside server: the ops endpoints on their own listener in this process.
        SO_REUSEPORT lets every worker process of a multi-process server bind it."""
        service = self.service
        ops = service.settings.ops
        assert ops.port is not None
        sock = socket.socket(socket.AF_INET6 if ":" in service.settings.http.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((service.settings.http.host, ops.port))
        except OSError as exc:
            sock.close()
            service.logger.error("ops port cannot be bound", port=ops.port, exc=exc)
            return
        server = self._server(service.ops_app(), service.settings.http.host, ops.port, lifespan=False)
        await server.startup(sockets=[sock])
        self.ops_server = server
        service.ops_address = _bound(server, service.settings.http.host, ops.port)
        service.logger.info("ops listening", address=_show(service.ops_address))

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self, sock: socket.socket | None = None, ops_sock: socket.socket | None = None) -> int:
        """Serve HTTP and run the workers until :meth:`request_stop`; returns the process exit code."""
        service = self.service
        token = stdlib.current_logger.set(service.logger)
        service.install_logging()
        try:
            return await self._serve(sock, ops_sock)
        finally:
            service.uninstall_logging()
            stdlib.current_logger.reset(token)

    async def _serve(self, sock: socket.socket | None, ops_sock: socket.socket | None) -> int:
        service = self.service
        http = service.settings.http
        service.serving = True
        service.logger.info("starting up", version=service.version, config=service.config_dump())
        server = self._server(service.asgi, http.host, http.port, lifespan=True)
        ops_server = None
        if service.settings.ops.port is not None:
            ops_server = self._server(service.ops_app(), http.host, service.settings.ops.port, lifespan=False)
        try:
            await server.startup(sockets=[sock] if sock else None)
            if ops_server is not None:
                await ops_server.startup(sockets=[ops_sock] if ops_sock else None)
        except SystemExit:  # uvicorn exits on bind errors and failed lifespan startup, after logging them
            service.logger.error("http server failed to start", host=http.host, port=http.port)
            if server.started:
                server.should_exit = True
                await server.shutdown()
            await service.stop_workers(time.monotonic() + 1.0)
            return 1
        service.address = _bound(server, http.host, http.port)
        service.logger.info("listening", address=_show(service.address))
        if ops_server is not None:
            service.ops_address = _bound(ops_server, http.host, service.settings.ops.port or 0)
            service.logger.info("ops listening", address=_show(service.ops_address))
        await service.start()
        servers = [s for s in (server, ops_server) if s is not None]
        loops = [asyncio.create_task(s.main_loop(), name="uvicorn-main-loop") for s in servers]
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([*loops, stop], return_when=asyncio.FIRST_COMPLETED)

        # -- shutdown (issue 13: lame duck, deadline 503) ---------------------------------------------------------
        now = time.monotonic()
        lame_duck_until = now + service.settings.shutdown.delay
        deadline = lame_duck_until + service.settings.shutdown.timeout  # the drain gets the whole timeout
        service.logger.info("shutting down")
        if self.edge is not None:
            self.edge.set_closing()  # from now on every response says Connection: close
        await service.begin_shutdown(deadline)
        if (left := lame_duck_until - time.monotonic()) > 0:
            # Clients holding this address from the registry or DNS keep being served while they learn it is gone.
            service.logger.info("lame duck: still serving, responses say Connection: close", seconds=round(left, 3))
            await asyncio.sleep(left)
        service.logger.info("shutting down http service")
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*loops)
        stop.cancel()
        for s in servers:
            # uvicorn's own cancel (plain-text 500, "Exception in ASGI application") only backs up the cut below.
            # uvicorn types this as int but only hands it to asyncio.wait_for: a float is honoured.
            s.config.timeout_graceful_shutdown = max(0.1, deadline - time.monotonic()) + 1.0  # type: ignore[assignment]
        cutter = asyncio.create_task(self._cut_at(deadline), name="shutdown-deadline")
        await asyncio.gather(*(s.shutdown() for s in servers))
        cutter.cancel()
        service.logger.info("http service stopped")
        await service.stop_workers(deadline)
        service.logger.info("stopped")
        return 0

    async def _cut_at(self, deadline: float) -> None:
        """At the shutdown deadline, requests still running answer a JSON 503 with their request id."""
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        if self.edge is not None and (cut := self.edge.cut(503, "the service is shutting down")):
            self.service.logger.warning("requests cut at the shutdown deadline", requests=cut)

    def _server(self, app: ASGIApp, host: str, port: int, *, lifespan: bool) -> uvicorn.Server:
        service = self.service
        if self.edge is None:
            http = service.settings.http
            limits = EdgeLimits(
                max_header_bytes=http.max_header_bytes,
                max_headers=http.max_headers,
                header_timeout=http.header_timeout,
                body_timeout=http.body_timeout,
                max_connections=http.max_connections,
            )
            self.edge = Edge(limits, service.logger, request_id_header=http.request_id_header)
            service.metrics.register(self.edge)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # The application listener is capped; the ops listener (lifespan off) stays reachable when it is full.
            http=self.edge.protocol_class(capped=lifespan),
            lifespan="on" if lifespan else "off",
            log_config=None,
            access_log=False,  # the stator middleware writes a richer access line
            server_header=False,
            timeout_graceful_shutdown=max(1, round(service.settings.shutdown.timeout)),
        )
        server = uvicorn.Server(config)
        # Server.serve() would install uvicorn's own signal handlers and drain before we could deregister;
        # driving startup/main_loop/shutdown ourselves keeps the shutdown order ours.
        config.load()
        server.lifespan = config.lifespan_class(config)
        return server

    def run(self, sock: socket.socket | None = None, ops_sock: socket.socket | None = None) -> int:
        """Serve until SIGINT/SIGTERM on a fresh event loop (uvloop when available); returns the exit code.
        ``sock``/``ops_sock``: listening sockets bound by a supervisor (``stator run --workers``)."""
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(self._run_with_signals(sock, ops_sock))

    async def _run_with_signals(self, sock: socket.socket | None, ops_sock: socket.socket | None) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        return await self.serve(sock, ops_sock)

    def _on_signal(self, sig: int) -> None:
        service = self.service
        self._signals += 1
        name = signal.Signals(sig).name
        if self._signals == 1:
            service.logger.info("signal received", signal=name)
            self.request_stop()
            return
        if sig == signal.SIGTERM and service.group is not None and service.group.identity.master == "stator":
            # A worker of `stator run --workers` may get SIGTERM twice (from its master and from a service
            # manager killing the whole control group): only SIGINT twice means "exit now".
            return
        service.logger.error("second signal: forced exit", signal=name)
        service.logger.flush()
        os._exit(128 + sig)


def _show(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


def _bound(server: uvicorn.Server, host: str, port: int) -> tuple[str, int]:
    """The address a server actually listens on (port 0 resolves to the OS-chosen port)."""
    if server.servers and server.servers[0].sockets:
        name = server.servers[0].sockets[0].getsockname()
        return str(name[0]), int(name[1])
    return host, port
