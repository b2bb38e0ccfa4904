"""Composition of the ASGI app a service serves: lifespan → observability middleware → ops endpoints or the app.

It depends on two narrow interfaces, declared here where they are consumed: :class:`Lifecycle` (what the ASGI
lifespan drives) and the :class:`~stator.http.ops.OpsApp` it is given. The service builds the middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from stator.asgi import ASGIApp, Message, Receive, Scope, Send
from stator.http.frameworks import routes_path
from stator.http.middleware import OPS_PREFIX
from stator.http.ops import OpsApp, not_found_app
from stator.logs import Logger


class Lifecycle(Protocol):
    """What the ASGI lifespan drives: the service's start, and its ordered stop around the app's own."""

    logger: Logger

    @property
    def started(self) -> bool: ...

    async def start(self) -> None:
        """Logging bridge, workers, registration, discovery (idempotent)."""

    async def begin_shutdown(self) -> None:
        """Readiness off, deregistration (idempotent); starts the shutdown deadline."""

    async def finish_shutdown(self) -> None:
        """Workers stopped, spans flushed, logging bridge removed — unless the service's own server drives it."""


class ServiceApp:
    """What a service serves: the observability middleware around a router that sends ``/-/`` paths to the ops
    endpoints and everything else to the application; the service's lifecycle run through the ASGI lifespan
    (so ``uvicorn mymodule:app``, gunicorn, hypercorn and granian run it too). The application's own lifespan,
    if it has one, runs inside ours: its startup after the service started, its shutdown after readiness flipped
    and deregistration, before the workers stop.

    Aliases outside ``/-/`` (``/metrics``, ``/monitor``, ``/services``) go to the application first: a route of
    its own wins, and only its 404 hands the request to the ops endpoint (a collision is logged once).
    ``ops=None`` (a separate ops port) serves the application alone.
    """

    def __init__(
        self,
        app: ASGIApp | None,
        *,
        lifecycle: Lifecycle,
        middleware: Callable[[ASGIApp], ASGIApp],
        ops: OpsApp | None,
    ) -> None:
        self.app = app or not_found_app
        self.lifecycle = lifecycle
        self.ops = ops
        self.http = middleware(self._route)
        self._lifespan_seen = False
        self._collisions: set[str] = set()

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        ops = self.ops
        if ops is not None:
            path = scope["path"]
            if path.startswith(OPS_PREFIX):
                await ops(scope, receive, send)
                return
            if ops.alias_target(path) is not None:
                await self._alias(ops, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _alias(self, ops: OpsApp, scope: Scope, receive: Receive, send: Send) -> None:
        """The application answers first; its 404 (body swallowed) hands the request to the ops endpoint."""
        missing = False

        async def probe(message: Message) -> None:
            nonlocal missing
            if message["type"] == "http.response.start" and message["status"] == 404:
                missing = True
            if not missing:
                await send(message)

        if self.app is not not_found_app:
            await self.app(scope, receive, probe)
            if not missing:
                self._collided(scope["path"])
                return
        await ops(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self._lifespan_seen:
                self._no_lifespan()
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            self._lifespan_seen = True
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _check_collisions(self) -> None:
        """Say once, at start, which ops aliases the application routes itself (where the framework can tell
        without a request; otherwise the first request to the alias tells)."""
        if self.ops is None or self.app is not_found_app:
            return
        for path in sorted(self.ops.aliases):
            if routes_path(self.app, path):
                self._collided(path)

    def _collided(self, path: str) -> None:
        if path in self._collisions:
            return
        self._collisions.add(path)
        assert self.ops is not None
        self.lifecycle.logger.warning(
            "the application routes an ops alias: its route wins", path=path, ops_endpoint=self.ops.alias_target(path)
        )

    def _no_lifespan(self) -> None:
        self._lifespan_seen = True  # warn once
        if not self.lifecycle.started:
            self.lifecycle.logger.warning(
                "the server sent no ASGI lifespan events: workers, registration, discovery and the logging bridge"
                " are not running (uvicorn: --lifespan on; granian: --interface asgi, not asginl)"
            )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifecycle = self.lifecycle
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await lifecycle.start()
            self._check_collisions()
        except Exception as exc:
            lifecycle.logger.error("service startup failed", exc=exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        inner = _InnerLifespan(self.app, scope)
        try:
            await inner.startup()
        except Exception as exc:
            lifecycle.logger.error("application startup failed", exc=exc)
            await lifecycle.begin_shutdown()
            await lifecycle.finish_shutdown()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await lifecycle.begin_shutdown()
        try:
            await inner.shutdown()
        except Exception as exc:
            lifecycle.logger.error("application shutdown failed", exc=exc)
        await lifecycle.finish_shutdown()
        await send({"type": "lifespan.shutdown.complete"})


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
        if self.app is not_found_app:
            self.supported = False
            return
        self.task = asyncio.create_task(self._run())
        # The app task may end with the exception that says "no lifespan here": retrieve it so asyncio
        # does not log it as never retrieved.
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self.supported and self.task is not None and not self.task.done():
            await self._exchange("shutdown")
