"""The HTTP edge of ``stator run``: uvicorn's httptools protocol with limits, timeouts and answers a client can read.

uvicorn alone reads any number of headers of any size, waits forever for a request head or a body, accepts as many
connections as the process has file descriptors, and answers a malformed request with a plain-text ``Invalid HTTP
request received.`` that names no reason and no request id. :class:`Edge` fixes that for the listeners ``stator
run`` drives (``uvicorn.Config(http=edge.protocol_class())``):

==========================  ======================================================================================
too many headers / bytes    431 JSON (``STATOR_HTTP_MAX_HEADERS``, ``STATOR_HTTP_MAX_HEADER_BYTES``), counted as it
                            arrives: a 64 MB header is refused after the first read, not buffered
malformed request           400 JSON naming the parser's reason (bad request line, bad bytes in the path, bad
                            header, chunked garbage, Content-Length together with Transfer-Encoding, ...)
head too slow               408 JSON once ``STATOR_HTTP_HEADER_TIMEOUT`` passed since the connection opened (or the
                            keep-alive request's first byte); a connection that sent nothing is just closed
body stalled                408 JSON, through the application's middleware (so it is recorded with its request id),
                            when no body byte arrived for ``STATOR_HTTP_BODY_TIMEOUT`` while the app waits for one
connection cap              ``STATOR_HTTP_MAX_CONNECTIONS`` (default: the fd limit minus 128) on the application
                            port: a new connection past it closes the oldest idle or slow-head one (that one gets a
                            503 JSON if it had sent bytes); when every connection runs a request, the newcomer gets
                            the 503 JSON. The ops port is not capped, so health checks get through
lame duck                   every response says ``Connection: close``, so keep-alive clients move on
shutdown deadline           :meth:`Edge.cut`: running requests answer a JSON 503 through the middleware
==========================  ======================================================================================

Every refusal is counted in ``stator_http_rejected_total{reason}`` and logged at warning with the client address
and the request id of the JSON answer — at most once per reason every ``LOG_INTERVAL`` seconds, with the number of
lines left out in between (a flood must not become a log flood).

Timeouts cost nothing per request: one sweeper (a ``call_later`` chain that runs only while connections are open)
walks the open connections every ``interval`` seconds. The per-request additions are a few attribute reads and
writes in the parser callbacks.

It subclasses uvicorn internals (``HttpToolsProtocol``, ``RequestResponseCycle``): :func:`internals_problems` lists
what it relies on that the installed uvicorn lacks (tests fail on it; :meth:`Edge.protocol_class` falls back to
plain httptools with an error line rather than serve with a broken edge). Verified with uvicorn 0.54.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from stator.http.middleware import EDGE_VERDICT
from stator.ids import RequestIds
from stator.logs import Logger

LOG_INTERVAL = 10.0
FD_RESERVE = 128  # file descriptors kept for the service's own files, clients and the ops listener

# Reasons of stator_http_rejected_total: a closed set (label cardinality), every one exported from the start.
REASONS = (
    "bad_request_line",
    "bad_path",
    "bad_header",
    "bad_chunk",
    "bad_content_length",
    "length_and_chunked",
    "malformed",
    "headers_too_large",
    "too_many_headers",
    "header_timeout",
    "body_timeout",
    "connection_limit",
    "evicted",
    "shutdown_deadline",
)

# Where a connection's parser is: reading a head, a body, between requests, or refused (input ignored from then on).
_HEAD, _BODY, _IDLE, _DONE = 0, 1, 2, 3


@dataclass(frozen=True)
class EdgeLimits:
    """The limits, from ``STATOR_HTTP_*`` (0 = off for each)."""

    max_header_bytes: int = 65_536
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 0  # 0 = from the fd limit

    def connection_cap(self) -> int:
        if self.max_connections:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 20
        return max(16, soft - FD_RESERVE)


def classify(message: str) -> str:
    """The ``reason`` label of a parser error message (llhttp's wording, as httptools reports it)."""
    text = message.lower()
    if "transfer-encoding" in text and "content-length" in text:
        return "length_and_chunked"
    if "content-length" in text or "content length" in text:
        return "bad_content_length"
    if "chunk" in text:
        return "bad_chunk"
    if "url" in text or "path" in text or "query" in text or "fragment" in text:
        return "bad_path"
    if "method" in text or "http/" in text or "version" in text or "request line" in text:
        return "bad_request_line"
    if "header" in text:
        return "bad_header"
    return "malformed"


class _Refuse(Exception):
    """Raised inside a parser callback: the request is answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _LogGate:
    """At most one line per reason per interval; the lines left out are counted and reported with the next one."""

    def __init__(self, logger: Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, **fields: Any) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._next[key] = now + self.interval
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        self.logger.warning(msg, **fields)


class Edge:
    """The HTTP edge of one service: limits, counters, the open connections of its listeners and their sweeper."""

    def __init__(
        self,
        limits: EdgeLimits,
        logger: Logger,
        *,
        request_id_header: str = "X-Request-ID",
        log_interval: float = LOG_INTERVAL,
    ) -> None:
        self.limits = limits
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.logger = logger
        self.cap = limits.connection_cap()
        self.ids = RequestIds()
        self.log = _LogGate(logger, log_interval)
        self.rejected = dict.fromkeys(REASONS, 0)
        # Every connection of every listener built from this edge, oldest first (a dict keeps insertion order).
        self.open: dict[StatorHttpProtocol, None] = {}
        self.capped = 0  # how many of them count against the cap (the application listener's)
        self.closing = False  # lame duck: every response from now on says Connection: close
        timeouts = [t for t in (limits.header_timeout, limits.body_timeout) if t > 0]
        self.interval = min(1.0, max(0.05, min(timeouts) / 4)) if timeouts else 0.0
        self._sweeper: asyncio.TimerHandle | None = None

    # -- wiring ---------------------------------------------------------------------------------------------------

    def protocol_class(self, *, capped: bool = True) -> type[asyncio.Protocol] | str:
        """The class to pass as ``uvicorn.Config(http=...)``; ``capped=False`` for a listener that must stay
        reachable when the application port is full (the ops port). Plain ``"httptools"`` if uvicorn changed."""
        problems = internals_problems()
        if problems:
            self.logger.error(
                "uvicorn internals changed: the HTTP edge limits are off (plain httptools)", problems=problems
            )
            return "httptools"
        return type(
            "StatorHttpProtocol" if capped else "StatorOpsHttpProtocol",
            (StatorHttpProtocol,),
            {"edge": self, "capped": capped},
        )

    def set_closing(self) -> None:
        """Lame duck: responses from now on carry ``Connection: close``; idle keep-alive connections are closed
        at their next request's end, so clients reconnect (to another instance, once the registry says so)."""
        self.closing = True

    # -- the sweeper ----------------------------------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None and self.interval:
            self._sweeper = loop.call_later(self.interval, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = None
        now = loop.time()
        header_timeout = self.limits.header_timeout
        body_timeout = self.limits.body_timeout
        for conn in list(self.open):
            phase = conn.phase
            if phase == _HEAD:
                if header_timeout and now - conn.since > header_timeout:
                    conn.head_timed_out()
            elif phase == _BODY and body_timeout and now - conn.since > body_timeout:
                conn.body_timed_out()
        if self.open:
            self._arm(loop)

    # -- counting and telling -------------------------------------------------------------------------------------

    def evict(self, newcomer: StatorHttpProtocol) -> bool:
        """At the cap: close the oldest capped connection that runs no request (idle keep-alive, or still sending
        its head: a slow client) to make room for the new one. False when every connection is busy."""
        for conn in self.open:
            if conn is not newcomer and conn.capped and conn.phase in (_HEAD, _IDLE) and conn.idle():
                conn.evicted()
                return True
        return False

    def count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def cut(self, status: int = 503, message: str = "the service is shutting down") -> int:
        """The shutdown deadline: every request still running is cancelled; its middleware answers ``status``
        in JSON with the request id (or, when the response had started, the connection is closed). Returns how
        many were cut."""
        cut = 0
        for conn in list(self.open):
            if conn.cut(status, message):
                cut += 1
        self.rejected["shutdown_deadline"] += cut
        return cut

    def collect(self) -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            "stator_http_rejected",
            "Requests and connections refused or cut by the HTTP edge (stator run), by reason.",
            labels=["reason"],
        )
        for reason, n in list(self.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("stator_http_connections", "Open HTTP connections (stator run).", value=len(self.open))
        yield GaugeMetricFamily(
            "stator_http_connections_limit",
            "Connections accepted on the application port before new ones get 503 (STATOR_HTTP_MAX_CONNECTIONS).",
            value=self.cap,
        )


class StatorHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the edge's limits. Built per edge by :meth:`Edge.protocol_class`."""

    edge: ClassVar[Edge]
    capped: ClassVar[bool]

    phase: int
    since: float
    head_bytes: int

    # -- connection -----------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        edge = self.edge
        self.phase = _HEAD
        self.since = self.loop.time()
        self.head_bytes = 0
        edge.open[self] = None
        edge._arm(self.loop)
        if self.capped:
            edge.capped += 1
            if edge.capped > edge.cap and not edge.evict(self):
                self.refuse(
                    503, "connection_limit", f"too many connections (limit {edge.cap})", log="connection limit reached"
                )

    def connection_lost(self, exc: Exception | None) -> None:
        edge = self.edge
        if self in edge.open:
            del edge.open[self]
            if self.capped:
                edge.capped -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the limits and the JSON answers; kept close to it (see internals_problems).
        self._unset_keepalive_if_required()
        phase = self.phase
        if phase == _HEAD:
            self.head_bytes += len(data)
        elif phase == _BODY:
            self.since = self.loop.time()  # body progress
        elif phase == _DONE:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self.refuse(cause.status, cause.reason, cause.message)
            elif isinstance(cause, httptools.HttpParserInvalidURLError):
                self.refuse(400, "bad_path", "malformed request: invalid request target")
            else:
                self.refuse(400, "malformed", "malformed request")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            detail = str(exc) or "unparsable request"
            self.refuse(400, classify(detail), f"malformed request: {detail}")
            return
        limit = self.edge.limits.max_header_bytes
        if self.phase == _HEAD and limit and self.head_bytes > limit:
            self.refuse(431, "headers_too_large", f"request headers exceed {limit} bytes")

    # -- parser callbacks -----------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != _HEAD:  # a keep-alive request: its head clock starts at its first byte
            self.phase = _HEAD
            self.since = self.loop.time()
            self.head_bytes = 1  # at least its first byte arrived (the rest of this read is not counted)

    def on_header(self, name: bytes, value: bytes) -> None:
        limit = self.edge.limits.max_headers
        if limit and len(self.headers) >= limit:
            raise _Refuse(431, "too_many_headers", f"more than {limit} request header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        edge = self.edge
        limit = edge.limits.max_header_bytes
        if limit and self.head_bytes > limit:
            # The whole head came in one read larger than the limit (reads bigger than the limit that also hold
            # body bytes land here too): measure the head itself.
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limit:
                raise _Refuse(431, "headers_too_large", f"request headers exceed {limit} bytes")
        self.phase = _BODY
        self.since = self.loop.time()
        super().on_headers_complete()
        if edge.closing and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = _IDLE

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn's, remembering the task on the cycle so that the edge can cut it (body timeout, deadline).
        if getattr(self.config, "reset_contextvars", False):
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        cycle.stator_task = task  # type: ignore[attr-defined]

    # -- what the edge does to a connection ----------------------------------------------------------------------

    def head_timed_out(self) -> None:
        if self.head_bytes:
            self.refuse(408, "header_timeout", "request headers not received in time")
        else:  # a new connection that never sent a byte: nothing to answer, just close
            self._closed_for("header_timeout")

    def idle(self) -> bool:
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.transport.is_closing()

    def evicted(self) -> None:
        if self.head_bytes and self.phase == _HEAD:
            self.refuse(503, "evicted", "too many connections: the slowest was closed", log="connection evicted")
        else:
            self._closed_for("evicted")

    def body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or self.flow.read_paused:
            return  # the application is not reading (flow control paused us): not the client's stall
        if self._through_app(408, "request body not received in time"):
            self.edge.count("body_timeout")
            self.edge.log.warning(
                "body_timeout",
                "request body not received in time",
                reason="body_timeout",
                status=408,
                client=self._client(),
                method=self.scope.get("method"),
                path=str(self.scope.get("path", ""))[:256],
            )
        else:  # answered already (or streaming its answer) while the client still owes body bytes: close
            self._closed_for("body_timeout")

    def cut(self, status: int, message: str) -> bool:
        """The shutdown deadline: a running request answers ``status`` (or, mid-response, its connection closes)."""
        cycle = self.cycle
        task: asyncio.Task[None] | None = getattr(cycle, "stator_task", None) if cycle is not None else None
        if cycle is None or task is None or task.done() or cycle.response_complete:
            return False
        if not self._through_app(status, message):
            # Too late for a status: close, so the client sees a truncated response rather than a complete one.
            setattr(cycle, EDGE_VERDICT, (status, message))
            self.transport.close()
            task.cancel(f"stator: {message}")
        return True

    def _through_app(self, status: int, message: str) -> bool:
        """Cut the running request so that the observability middleware answers ``status`` in JSON with its request
        id and records it (``Connection: close``). False when no request is running or its response has started."""
        cycle = self.cycle
        task: asyncio.Task[None] | None = getattr(cycle, "stator_task", None) if cycle is not None else None
        if cycle is None or task is None or task.done() or cycle.response_started:
            return False
        self.phase = _DONE
        setattr(cycle, EDGE_VERDICT, (status, message))
        # On the next loop turn: a task created by this very read has not run its first step yet, and a task
        # cancelled before it starts never reaches the middleware. If it finished meanwhile, close instead.
        self.loop.call_soon(self._cancel, task, message)
        return True

    def _cancel(self, task: asyncio.Task[None], message: str) -> None:
        if task.done():
            self.transport.close()
        else:
            task.cancel(f"stator: {message}")

    def _closed_for(self, reason: str) -> None:
        self.phase = _DONE
        self.edge.count(reason)
        self.edge.log.warning(
            reason, "connection closed: " + reason.replace("_", " "), reason=reason, client=self._client()
        )
        self.transport.close()

    def refuse(self, status: int, reason: str, message: str, *, log: str = "request rejected") -> None:
        """Answer ``status`` in JSON with a request id (also in the log line), count it, close the connection.
        While the application runs the request (a malformed chunked body), the middleware answers instead."""
        edge = self.edge
        edge.count(reason)
        if self._through_app(status, message):
            edge.log.warning(reason, log, reason=reason, status=status, error=message, client=self._client())
            return
        request_id = edge.ids.new()
        edge.log.warning(
            reason, log, reason=reason, status=status, error=message, client=self._client(), request_id=request_id
        )
        self.phase = _DONE
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # a pipelined request went wrong mid-response: no room for an answer
            return
        body = orjson.dumps({"error": message, "reason": reason, "request_id": request_id})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
            edge.request_id_header,
            b": ",
            request_id.encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()

    def _client(self) -> str | None:
        client = self.client
        return f"{client[0]}:{client[1]}" if client else None


# -- what this module relies on in uvicorn ------------------------------------------------------------------------

_PROTOCOL_METHODS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "_start_asgi_task": ["self", "cycle", "app"],
    "_unset_keepalive_if_required": ["self"],
    "_should_upgrade": ["self"],
    "handle_websocket_upgrade": ["self"],
    "_unsupported_upgrade_warning": ["self"],
    "on_url": ["self", "url"],
    "on_body": ["self", "body"],
    "on_response_complete": ["self"],
    "shutdown": ["self"],
}
_PROTOCOL_ATTRS = (
    "parser",
    "transport",
    "flow",
    "client",
    "cycle",
    "headers",
    "url",
    "scope",
    "loop",
    "config",
    "tasks",
    "connections",
    "server_state",
)
_CYCLE_ATTRS = ("response_started", "response_complete", "keep_alive", "disconnected", "receive", "send", "run_asgi")


def internals_problems() -> list[str]:
    """What this module relies on in uvicorn's httptools protocol and is not there (empty: all is well)."""
    problems: list[str] = []
    try:
        _source_problems(problems)
    except OSError as exc:  # no source files shipped: only the signatures can be checked
        problems.append(f"uvicorn sources unreadable ({exc}): cannot verify the overrides")
    return problems


def _source_problems(problems: list[str]) -> None:
    for name, params in _PROTOCOL_METHODS.items():
        method = getattr(HttpToolsProtocol, name, None)
        if method is None:
            problems.append(f"HttpToolsProtocol.{name} is gone")
            continue
        found = list(inspect.signature(method).parameters)
        if found[: len(params)] != params:
            problems.append(f"HttpToolsProtocol.{name}{tuple(found)}: expected {tuple(params)}")
    init = inspect.getsource(HttpToolsProtocol.__init__) + inspect.getsource(HttpToolsProtocol.on_message_begin)
    for attr in _PROTOCOL_ATTRS:
        if f"self.{attr} =" not in init and f"self.{attr}: " not in init:
            problems.append(f"HttpToolsProtocol no longer sets self.{attr}")
    cycle_src = inspect.getsource(RequestResponseCycle)
    for attr in _CYCLE_ATTRS:
        if f"self.{attr} =" not in cycle_src and f"def {attr}(" not in cycle_src:
            problems.append(f"RequestResponseCycle has no {attr}")
    data_received = inspect.getsource(HttpToolsProtocol.data_received)
    for needle in ("self.parser.feed_data(data)", "HttpParserUpgrade", "self._unset_keepalive_if_required()"):
        if needle not in data_received:
            problems.append(f"HttpToolsProtocol.data_received changed (no {needle!r}): re-check the override")
    start = inspect.getsource(HttpToolsProtocol._start_asgi_task)
    for needle in ("cycle.run_asgi(app)", "self.tasks.add(task)", "add_done_callback(self.tasks.discard)"):
        if needle not in start:
            problems.append(f"HttpToolsProtocol._start_asgi_task changed (no {needle!r}): re-check the override")
    if 400 not in STATUS_LINE or 431 not in STATUS_LINE:
        problems.append("httptools_impl.STATUS_LINE changed")
