"""One pure-ASGI pass for request ids, RED metrics, the access log and error responses.

Stacking starlette-exporter, asgi-correlation-id and a logging middleware costs ~100 µs per request (three
wrappers, three header scans, ``labels()`` per request, a stdlib log record). Here one wrapper scans the headers
once, keeps its per-request state in local variables, records metrics through cached children and writes the
access line with the project logger.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from asyncio import current_task
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from stator.asgi import ASGIApp, Message, Receive, Scope, Send
from stator.http import routes
from stator.http.errors import error_payload, log_exception
from stator.http.recent import RecentRequests
from stator.http.red import RedMetrics, method_label
from stator.ids import RequestIds
from stator.logs import Logger
from stator.logs.context import _fields

_CLIENT_CONTROLLED = ("path", "user_agent")  # access-line fields a client can make arbitrarily long
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
CLIENT_CLOSED = 499
OPS_PREFIX = "/-/"
# Set in the scope by whatever answers a request with an ops endpoint outside OPS_PREFIX (the /metrics, /monitor
# and /services aliases, the separate ops port): such requests are not application traffic.
OPS_SCOPE_KEY = "stator.ops"
# Set by the server layer (stator.http.protocol) on the uvicorn request cycle it cuts, before cancelling the request's
# task: (status, error message). The middleware then answers that status in JSON with the request id and records it,
# instead of a client-gone 499 (the shutdown deadline: 503; a stalled request body: 408).
EDGE_VERDICT = "stator_verdict"
_NO_LIMIT = 1 << 62


class BodyTooLarge(Exception):
    """Raised to the application by ``receive`` once a body grows past the limit (after the 413 went out)."""

    status_code = 413


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
        request_id_header: str = "X-Request-ID",
        slow: float = 1.0,
        access_log: bool = True,
        instrument_ops: bool = False,
        ops_log_sample: float = 0.0,
        route_resolver: Callable[[Scope], str] | None = None,
        tracer: RequestTracer | None = None,
        profiling_tasks: dict[Any, list[Any]] | None = None,
        slow_profile: Callable[[float, float], str] | None = None,
        max_body: int = 0,
    ) -> None:
        self.app = app
        self.max_body = max_body or _NO_LIMIT  # STATOR_HTTP_MAX_BODY; 0 = no limit
        self.logger = logger
        self.metrics = metrics
        self.header = request_id_header.lower().encode("latin-1")
        self.header_out = request_id_header.encode("latin-1")
        self.slow = slow
        self.access_log = access_log
        self.instrument_ops = instrument_ops
        self.ops_log_sample = ops_log_sample
        self.route_resolver = route_resolver
        self.tracer = tracer
        # The profiler's task -> request table (stator.profiling.attribution): the sampler thread reads which
        # request the running task serves. None when profiling is off.
        self.profiling_tasks = profiling_tasks
        # Continuous profiling on: (start, end) unix seconds -> the URL of the CPU samples of that window, put on
        # the access line of a slow request ("slow request -> its CPU samples" in one step).
        self.slow_profile = slow_profile
        self.ids = RequestIds()
        self._sample = random.Random()
        self.recent = RecentRequests()  # the last slow and failed requests, read by /-/ui/requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        # Ops paths: everything under /-/ (known now), and the aliases outside it once the router answered them
        # with an ops endpoint (known at the end, from the scope).
        is_ops = path.startswith(OPS_PREFIX)

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
        max_body = self.max_body
        if (
            content_length is not None
            and content_length.isdigit()
            and (len(content_length) > 18 or int(content_length) > max_body)
        ):
            # A declared body over the limit: answered before the application runs, the body never read.
            await self._too_large(scope, send, rid_header, request_id, content_length, start)
            return

        # Ops requests (health checks every few seconds, scrapes) are not traced unless instrumented.
        tracer = self.tracer if not is_ops or self.instrument_ops else None
        if tracer is not None:
            span, trace_fields = tracer.start(scope, method, traceparent, tracestate, request_id)
            fields = {**_fields.get(), "request_id": request_id, **trace_fields}
        else:
            span = None
            fields = {**_fields.get(), "request_id": request_id}
        token = _fields.set(fields)
        entry_root_path = scope.get("root_path", "")
        tasks = self.profiling_tasks
        if tasks is not None:
            ptask = current_task()
            pentry = [fields, scope, start, entry_root_path, None]  # layout: stator.profiling.attribution
            tasks[ptask] = pentry
        in_flight = self.instrument_ops or not is_ops
        if in_flight:
            self.metrics.in_flight += 1

        status = 0
        response_bytes = 0
        request_bytes = 0
        disconnected = False
        complete = False
        refused = False  # a 413 went out while the body was read: what the application sends after is dropped

        async def receive_wrapper() -> Message:
            nonlocal request_bytes, disconnected, refused
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                request_bytes += len(message.get("body", b""))
                if request_bytes > max_body:  # a chunked body grew past the limit
                    if status == 0:
                        await _send_json(send_wrapper, 413, _too_large_body(request_id, max_body), close=True)
                        refused = True
                    raise BodyTooLarge(f"request body exceeds the limit of {max_body} bytes")
            elif kind == "http.disconnect" and not complete:
                disconnected = True
            return message

        # uvicorn drops sends after the client went away without telling the app; its cycle object (the
        # receive callable's owner) knows. Duck-typed: other servers just do not give us this signal.
        cycle = getattr(receive, "__self__", None)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_bytes, complete, disconnected
            if refused:
                return
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
                verdict = getattr(cycle, EDGE_VERDICT, None) if isinstance(exc, asyncio.CancelledError) else None
                if verdict is None:
                    disconnected = True
                else:  # the server layer cut this request (shutdown deadline, stalled body): answer for it
                    error = None
                    task = current_task()
                    if task is not None:
                        task.uncancel()
                    if status == 0:
                        body = orjson.dumps({"error": verdict[1], "request_id": request_id})
                        await _send_json(send_wrapper, verdict[0], body, close=True)
                    status = verdict[0]
                    disconnected = False
        finally:
            duration = time.perf_counter() - start
            if refused:
                status = 413
            elif disconnected and not complete:
                status = CLIENT_CLOSED
            elif status == 0:
                status = 500  # the app returned without responding
            resolver = self.route_resolver
            if not is_ops and OPS_SCOPE_KEY in scope:
                is_ops = True
            if is_ops:
                route = path  # the ops endpoints are a fixed set of literal paths: each is its own template
            elif resolver is not None:
                route = resolver(scope)
            else:
                route = routes.template(scope, entry_root_path)
            if tasks is not None:
                pentry[4] = route
                tasks.pop(ptask, None)
            exemplar = tracer.finish(span, route, status, error) if tracer is not None else None
            if not request_bytes and content_length is not None and content_length.isdigit():
                request_bytes = int(content_length)  # the app did not read the body: trust the declared size
            if in_flight:
                self.metrics.in_flight -= 1
            if self.instrument_ops or not is_ops:
                self.metrics.record(
                    method_label(method), route, status, duration, request_bytes, response_bytes, exemplar
                )
            # -- recent slow and failed requests (/-/ui/requests): a fast successful request pays this one test.
            if (duration >= self.slow or status >= 500) and not is_ops:
                self.recent.add(
                    slow=duration >= self.slow,
                    method=method,
                    route=route,
                    path=path,
                    status=status,
                    duration=duration,
                    fields=fields,
                    error=error,
                )
            # --
            if error is not None and isinstance(error, Exception):
                log_exception(self.logger, error, status, method, path)
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
                    if self.slow_profile is not None:
                        end = time.time()
                        fields["profile"] = self.slow_profile(end - duration, end)
                    self.logger.log_trusted("warning", "slow request", fields, _CLIENT_CONTROLLED)
                else:
                    self.logger.log_trusted("info", "request", fields, _CLIENT_CONTROLLED)
            _fields.reset(token)
        if error is not None and not isinstance(error, Exception):
            raise error  # cancellation and exit signals keep propagating

    async def _too_large(
        self, scope: Scope, send: Send, rid_header: tuple[bytes, bytes], request_id: str, declared: bytes, start: float
    ) -> None:
        """413 for a declared Content-Length over the limit: the application never runs, the body is never read
        (``Connection: close``: the connection cannot carry another request). Recorded under ``<unmatched>``."""
        body = _too_large_body(request_id, self.max_body)
        try:
            await send(
                {"type": "http.response.start", "status": 413, "headers": [*_json_headers(body, True), rid_header]}
            )
            await send({"type": "http.response.body", "body": body})
        except OSError:
            pass
        method = scope["method"]
        size = int(declared) if len(declared) <= 18 else _NO_LIMIT
        self.metrics.record(method_label(method), routes.UNMATCHED, 413, time.perf_counter() - start, size, len(body))
        if self.access_log:
            client = scope.get("client")
            self.logger.warning(
                "request body too large",
                request_id=request_id,
                method=method,
                path=scope["path"][:256],
                status=413,
                declared_bytes=size,
                limit=self.max_body,
                client=f"{client[0]}:{client[1]}" if client else None,
            )

    async def _error_response(self, exc: Exception, request_id: str, send: Send) -> int:
        """Map an exception to a JSON error response (:func:`~stator.http.errors.error_payload`); the stack goes
        to the log."""
        status, body = error_payload(exc, request_id)
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


def _json_headers(body: bytes, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the request is not read: the connection cannot carry another one
        headers.append((b"connection", b"close"))
    return headers


async def _send_json(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    try:
        await send({"type": "http.response.start", "status": status, "headers": _json_headers(body, close)})
        await send({"type": "http.response.body", "body": body})
    except OSError:
        pass  # the client is gone


def _too_large_body(request_id: str, limit: int) -> bytes:
    return orjson.dumps({"error": f"request body exceeds the limit of {limit} bytes", "request_id": request_id})
