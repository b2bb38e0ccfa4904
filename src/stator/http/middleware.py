"""One pure-ASGI pass for request ids, RED metrics, the access log and error responses.

Stacking starlette-exporter, asgi-correlation-id and a logging middleware costs ~100 µs per request (three
wrappers, three header scans, ``labels()`` per request, a stdlib log record). Here one wrapper scans the headers
once, keeps its per-request state in local variables, records metrics through cached children and writes the
access line with the project logger.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

import orjson

from stator.http import routes
from stator.http.asgi import ASGIApp, Message, Receive, Scope, Send
from stator.http.red import RedMetrics, method_label
from stator.ids import RequestIds
from stator.logs import Logger
from stator.logs.context import _fields

_CLIENT_CONTROLLED = ("path", "user_agent")  # access-line fields a client can make arbitrarily long
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
CLIENT_CLOSED = 499


class RequestTracer(Protocol):
    """What the middleware needs from tracing (the tracing module provides it; absent means tracing off)."""

    def start(
        self, scope: Scope, method: str, traceparent: bytes | None, tracestate: bytes | None, request_id: str
    ) -> tuple[Any, dict[str, str]]:
        """Start the server span; return its handle and the log fields (trace_id, span_id)."""

    def finish(self, span: Any, route: str, status: int, exc: BaseException | None) -> dict[str, str] | None:
        """End the span; return the exemplar labels (trace_id, span_id) when the span was sampled."""


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: Logger,
        metrics: RedMetrics,
        ops_paths: Collection[str] = (),
        request_id_header: str = "X-Request-ID",
        slow: float = 1.0,
        access_log: bool = True,
        instrument_ops: bool = False,
        ops_log_sample: float = 0.0,
        route_resolver: Callable[[Scope], str] | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self.app = app
        self.logger = logger
        self.metrics = metrics
        self.ops_paths = frozenset(ops_paths)
        self.header = request_id_header.lower().encode("latin-1")
        self.header_out = request_id_header.encode("latin-1")
        self.slow = slow
        self.access_log = access_log
        self.instrument_ops = instrument_ops
        self.ops_log_sample = ops_log_sample
        self.route_resolver = route_resolver
        self.tracer = tracer
        self.ids = RequestIds()
        self._sample = random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        is_ops = path in self.ops_paths

        header = self.header
        request_id = None
        user_agent = b""
        content_length = None
        traceparent = tracestate = None
        for key, value in scope["headers"]:
            if key == header:
                request_id = value.decode("latin-1")
            elif key == b"user-agent":
                user_agent = value
            elif key == b"content-length":
                content_length = value
            elif key == b"traceparent":
                traceparent = value
            elif key == b"tracestate":
                tracestate = value
        if request_id is None or VALID_REQUEST_ID.fullmatch(request_id) is None:
            request_id = self.ids.new()
        rid_header = (self.header_out, request_id.encode("latin-1"))

        tracer = self.tracer
        if tracer is not None:
            span, trace_fields = tracer.start(scope, method, traceparent, tracestate, request_id)
            token = _fields.set({**_fields.get(), "request_id": request_id, **trace_fields})
        else:
            span = None
            token = _fields.set({**_fields.get(), "request_id": request_id})
        record_metrics = self.instrument_ops or not is_ops
        if record_metrics:
            self.metrics.in_flight += 1

        status = 0
        response_bytes = 0
        request_bytes = 0
        disconnected = False
        complete = False

        async def receive_wrapper() -> Message:
            nonlocal request_bytes, disconnected
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                request_bytes += len(message.get("body", b""))
            elif kind == "http.disconnect" and not complete:
                disconnected = True
            return message

        # uvicorn drops sends after the client went away without telling the app; its cycle object (the
        # receive callable's owner) knows. Duck-typed: other servers just do not give us this signal.
        cycle = getattr(receive, "__self__", None)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_bytes, complete, disconnected
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                # A copy, never an append: Starlette sends a Response's own header list, and an app that reuses
                # one Response object would otherwise grow a header per request.
                message["headers"] = [*message.get("headers", ()), rid_header]
            elif kind == "http.response.body":
                response_bytes += len(message.get("body", b""))
                if not message.get("more_body", False):
                    # The last chunk is where an undelivered response shows: the app finished, the client
                    # did not get it.
                    if getattr(cycle, "disconnected", False):
                        disconnected = True
                    else:
                        complete = True
            await send(message)

        entry_root_path = scope.get("root_path", "")
        error: BaseException | None = None
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:  # CancelledError too: a cancelled request is a client that went away
            error = exc
            if isinstance(exc, Exception):
                if status == 0:
                    status = await self._error_response(exc, request_id, send_wrapper)
                else:  # headers already sent: nothing to tell the client, the log keeps the stack
                    disconnected = disconnected or isinstance(exc, OSError)
            else:
                disconnected = True
        finally:
            duration = time.perf_counter() - start
            if disconnected and not complete:
                status = CLIENT_CLOSED
            elif status == 0:
                status = 500  # the app returned without responding
            resolver = self.route_resolver
            if is_ops:
                route = path  # the ops endpoints are a fixed set of literal paths: each is its own template
            elif resolver is not None:
                route = resolver(scope)
            else:
                route = routes.template(scope, entry_root_path)
            exemplar = tracer.finish(span, route, status, error) if tracer is not None else None
            if not request_bytes and content_length is not None and content_length.isdigit():
                request_bytes = int(content_length)  # the app did not read the body: trust the declared size
            if record_metrics:
                self.metrics.in_flight -= 1
                self.metrics.record(
                    method_label(method), route, status, duration, request_bytes, response_bytes, exemplar
                )
            if error is not None and isinstance(error, Exception) and status >= 500:
                self.logger.error("unhandled exception", exc=error, method=method, path=path, route=route)
            if self.access_log and (
                not is_ops or (self.ops_log_sample and self._sample.random() < self.ops_log_sample)
            ):
                client = scope.get("client")
                fields = {
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "request_bytes": request_bytes,
                    "response_bytes": response_bytes,
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    "user_agent": user_agent.decode("latin-1"),
                }
                if duration >= self.slow:
                    self.logger.log_trusted("warning", "slow request", fields, _CLIENT_CONTROLLED)
                else:
                    self.logger.log_trusted("info", "request", fields, _CLIENT_CONTROLLED)
            _fields.reset(token)
        if error is not None and not isinstance(error, Exception):
            raise error  # cancellation and exit signals keep propagating

    async def _error_response(self, exc: Exception, request_id: str, send: Send) -> int:
        """Map an exception to a JSON error response: ``status_code`` when it carries a 4xx/5xx, else 500.
        A 5xx never shows the exception text to the client; the stack goes to the log."""
        code = getattr(exc, "status_code", None)
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        message = str(exc) if status < 500 and str(exc) else _reason(status)
        body = orjson.dumps({"error": message, "request_id": request_id})
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except OSError:
            pass  # the client is gone; the access log will say 499
        return status


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"
