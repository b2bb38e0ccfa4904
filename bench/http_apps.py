"""The ASGI apps of the HTTP overhead benchmark (``bench/bench_http.py``), one factory per configuration.

Serve one with uvicorn from the repository root, e.g.::

    uvicorn --factory bench.http_apps:peer --loop uvloop --http httptools --no-access-log

Configurations (the peer stack is built the way ``shared/reference/peer_overhead.md`` built its B+D+E(+F)):
  bare         Starlette with ``/hello`` (plain text) and ``/items/{item_id}`` (JSON).
  peer         bare + asgi-correlation-id + starlette-exporter (PrometheusMiddleware, ``/metrics``) + a pure-ASGI
               structlog access-log middleware set up per structlog's performance guidance (orjson JSONRenderer,
               BytesLoggerFactory on a real file, cached filtering bound logger). Outermost first.
  stator       bare wrapped by ``stator.instrument`` (request id + RED metrics + access log, ops endpoints).
  peer_full    peer + opentelemetry-instrumentation-asgi outermost, SDK TracerProvider, BatchSpanProcessor,
               OTLP/HTTP span exporter to ``BENCH_OTLP_ENDPOINT`` (the local sink, ``bench/otlp_sink.py``).
  stator_full  stator with tracing on: ``STATOR_OTLP_*`` from the environment (the driver sets them).

Environment:
  BENCH_LOG_FILE       file the peer access log is written to (default ``/dev/null``; the driver sets a real file).
  BENCH_OTLP_ENDPOINT  OTLP/HTTP traces URL for peer_full (default ``http://127.0.0.1:4318/v1/traces``).
  STATOR_*             passed to stator's settings on top of the benchmark's base settings.
The stator logger writes to stdout: the driver redirects the server's stdout to a file.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

ASGIApp = Any

# Settings the stator rows run with; STATOR_* variables in the environment are applied on top.
STATOR_BASE_ENV: dict[str, str] = {
    "STATOR_SERVICE_NAME": "bench",
    "STATOR_HTTP_ACCESS_LOG": "true",
    "STATOR_LOG_FORMAT": "json",
    "STATOR_LOG_LEVEL": "info",
}


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def item(request: Request) -> Response:
    return JSONResponse({"item_id": request.path_params["item_id"], "name": "widget"})


def _starlette(middleware: list[Middleware] | None = None) -> Starlette:
    return Starlette(
        routes=[Route("/hello", hello), Route("/items/{item_id}", item)],
        middleware=middleware,
    )


def bare() -> ASGIApp:
    return _starlette()


# -- the peer stack ---------------------------------------------------------------------------------------------


def _structlog_logger() -> Any:
    """structlog's fastest documented setup, writing one line per call to a real file."""
    import orjson
    import structlog

    path = os.environ.get("BENCH_LOG_FILE", "/dev/null")
    fh = open(path, "ab")  # noqa: SIM115 - lives as long as the server
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(fh),
    )
    return structlog.get_logger()


class AccessLogMiddleware:
    """Pure-ASGI access log: one structlog line per request with the same fields stator's line carries
    (request_id from asgi-correlation-id; trace_id when OpenTelemetry is active)."""

    def __init__(self, app: ASGIApp, with_trace: bool = False) -> None:
        from asgi_correlation_id import correlation_id

        self.app = app
        self.log = _structlog_logger()
        self.correlation_id = correlation_id
        self.with_trace = with_trace

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        response_bytes = 0

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            client = scope.get("client")
            user_agent = ""
            for key, value in scope["headers"]:
                if key == b"user-agent":
                    user_agent = value.decode("latin-1")
                    break
            fields: dict[str, Any] = {
                "request_id": self.correlation_id.get(),
                "method": scope["method"],
                "route": getattr(route, "path", None),
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "response_bytes": response_bytes,
                "client": f"{client[0]}:{client[1]}" if client else None,
                "user_agent": user_agent,
            }
            if self.with_trace:
                from opentelemetry import trace

                ctx = trace.get_current_span().get_span_context()
                if ctx.is_valid:
                    fields["trace_id"] = format(ctx.trace_id, "032x")
                    fields["span_id"] = format(ctx.span_id, "016x")
            self.log.info("request", **fields)


def _peer_app(with_trace: bool = False) -> Starlette:
    from asgi_correlation_id import CorrelationIdMiddleware
    from starlette_exporter import PrometheusMiddleware, handle_metrics

    app = _starlette(
        [
            Middleware(CorrelationIdMiddleware),
            Middleware(PrometheusMiddleware),
            Middleware(AccessLogMiddleware, with_trace=with_trace),
        ]
    )
    app.add_route("/metrics", handle_metrics)
    return app


def peer() -> ASGIApp:
    return _peer_app()


def peer_full() -> ASGIApp:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = os.environ.get("BENCH_OTLP_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-peer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)  # its atexit hook flushes the queue when uvicorn exits
    return OpenTelemetryMiddleware(_peer_app(with_trace=True), tracer_provider=provider)


# -- stator -----------------------------------------------------------------------------------------------------


def stator_env() -> dict[str, str]:
    return {**STATOR_BASE_ENV, **{k: v for k, v in os.environ.items() if k.startswith("STATOR_")}}


def stator() -> ASGIApp:
    import stator as stator_pkg
    from stator.config import load_settings

    return stator_pkg.instrument(bare(), load_settings(stator_env()))


def stator_full() -> ASGIApp:
    # Same as stator: tracing is switched on by the STATOR_OTLP_* variables the driver puts in the environment.
    if not os.environ.get("STATOR_OTLP_ENDPOINT"):
        raise RuntimeError("stator_full needs STATOR_OTLP_ENDPOINT (the driver sets it)")
    return stator()


FACTORIES = {
    "bare": bare,
    "peer": peer,
    "stator": stator,
    "peer_full": peer_full,
    "stator_full": stator_full,
}
