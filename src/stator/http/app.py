"""Composition of the ASGI app a Service serves: lifespan → ops endpoints → the application."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from stator.http.asgi import ASGIApp, Message, Receive, Scope, Send
from stator.http.middleware import ObservabilityMiddleware
from stator.http.ops import OpsApp, not_found_app

if TYPE_CHECKING:
    from stator.service import Service


class ServiceApp:
    """What a Service serves: the observability middleware around a router that sends ops paths to
    :class:`OpsApp` and everything else to the application; plus the service's workers run through the ASGI
    lifespan (so ``uvicorn mymodule:app`` runs them too). The application's own lifespan, if it has one, runs
    inside ours: its startup after the workers start, its shutdown before they stop.

    With ``ops=False`` (a separate ops port) the ops paths are not routed here but served by :func:`ops_app`.
    """

    def __init__(self, service: Service, app: ASGIApp | None, *, ops: bool = True) -> None:
        self.service = service
        self.app = app or not_found_app
        self.ops = OpsApp(service, service.service_metrics.endpoint(), service.settings.metrics.path) if ops else None
        self.http = _middleware(service, self._route, self.ops.paths if self.ops else ())

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ops is not None and scope["path"] in self.ops.paths:
            await self.ops(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        await service.start()
        inner = _InnerLifespan(self.app, scope)
        try:
            await inner.startup()
        except Exception as exc:
            service.logger.error("application startup failed", exc=exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        deadline = time.monotonic() + service.settings.shutdown.timeout
        await service.begin_shutdown(deadline)
        try:
            await inner.shutdown()
        except Exception as exc:
            service.logger.error("application shutdown failed", exc=exc)
        if not service.serving:
            await service.stop_workers(deadline)
        await send({"type": "lifespan.shutdown.complete"})


def _middleware(service: Service, app: ASGIApp, ops_paths: Collection[str]) -> ObservabilityMiddleware:
    http = service.settings.http
    return ObservabilityMiddleware(
        app,
        logger=service.logger,
        metrics=service.http_metrics,
        ops_paths=ops_paths,
        request_id_header=http.request_id_header,
        slow=http.slow,
        access_log=http.access_log,
        instrument_ops=http.instrument_ops,
        ops_log_sample=http.access_log_ops_sample,
        route_resolver=service.route_resolver,
        tracer=service.tracer,
    )


def ops_app(service: Service) -> ASGIApp:
    """The ops endpoints alone, for the separate ops listener (``STATOR_OPS_PORT``)."""
    ops = OpsApp(service, service.service_metrics.endpoint(), service.settings.metrics.path)
    return _middleware(service, ops, ops.paths)


class _InnerLifespan:
    """Drives the wrapped application's lifespan protocol, tolerating apps that do not implement it."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.to_app.get, self.from_app.put)
        finally:
            # Apps without lifespan support return or raise on the scope type; either way nobody will answer,
            # so answer for them instead of leaving startup waiting forever.
            self.from_app.put_nowait({"type": "lifespan.unsupported"})

    async def _exchange(self, kind: str) -> None:
        await self.to_app.put({"type": f"lifespan.{kind}"})
        reply = await self.from_app.get()
        if reply["type"] == f"lifespan.{kind}.failed":
            raise RuntimeError(reply.get("message") or f"lifespan {kind} failed")
        if reply["type"] == "lifespan.unsupported":
            self.supported = False

    async def startup(self) -> None:
        self.task = asyncio.create_task(self._run())
        # The app task may end with the exception that says "no lifespan here": retrieve it so asyncio
        # does not log it as never retrieved.
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self.supported and self.task is not None and not self.task.done():
            await self._exchange("shutdown")


def build_app(service: Service, app: ASGIApp | None) -> ASGIApp:
    return ServiceApp(service, app, ops=service.settings.ops.port is None)
