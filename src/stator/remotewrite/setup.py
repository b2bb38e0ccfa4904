"""Wiring the remote-write receiver onto a service: ``STATOR_REMOTE_WRITE=true`` and ``STATOR_REMOTE_WRITE_*``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from stator.asgi import ASGIApp, Receive, Scope, Send
from stator.config.settings import Settings
from stator.remotewrite.api import Receiver
from stator.remotewrite.instruments import Log

WRITE_PATH = "/api/v1/write"
SERIES_PATH = "/api/v1/series"
QUERY_PATH = "/api/v1/query"


class _Tracing(Protocol):
    @property
    def tracer(self) -> trace.Tracer: ...


class ReceiverHost(Protocol):
    """What the receiver needs from the service hosting it (:class:`stator.service.Service` provides it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def logger(self) -> Log: ...

    @property
    def metrics(self) -> CollectorRegistry: ...

    @property
    def tracing(self) -> _Tracing | None: ...

    def add_monitor_section(self, name: str, section: Callable[[], Any]) -> None: ...


def build_receiver(host: ReceiverHost) -> Receiver:
    rw = host.settings.remote_write
    tracing = host.tracing
    receiver = Receiver(
        max_series=rw.max_series,
        max_body=rw.max_body,
        max_decoded=rw.max_decoded,
        rate=rw.rate,
        burst=rw.burst,
        lookback=rw.lookback,
        logger=host.logger,
        registry=host.metrics,
        log_interval=rw.log_interval,
        tracer=tracing.tracer if tracing is not None else None,
    )
    return receiver


class _Endpoint:
    """A pure ASGI endpoint (Starlette would wrap a bound method as a request/response function)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def receiver_routes(receiver: Receiver) -> list[Route]:
    """``POST /api/v1/write``, ``GET|POST /api/v1/series`` and ``GET|POST /api/v1/query`` served by ``receiver``."""
    return [
        Route(WRITE_PATH, _Endpoint(receiver.write), methods=["POST"]),
        Route(SERIES_PATH, _Endpoint(receiver.series), methods=["GET", "POST"]),
        Route(QUERY_PATH, _Endpoint(receiver.query), methods=["GET", "POST"]),
    ]


def setup_remote_write(host: ReceiverHost) -> list[Route]:
    """The receiver's routes (mount them in the service's app) when ``STATOR_REMOTE_WRITE=true``, else ``[]``.

    Registers the ``stator_remote_write_*`` metrics in the service's registry and a ``remote_write`` section in
    /monitor. Spans are children of the request's server span when tracing is on.
    """
    if not host.settings.remote_write.enabled:
        return []
    receiver = build_receiver(host)
    host.add_monitor_section("remote_write", receiver.monitor)
    return receiver_routes(receiver)
