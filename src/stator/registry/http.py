"""The registry's HTTP/1.1 server: httptools parsing on asyncio transports, no framework and no ASGI.

Owning the connection is what two of Consul's behaviours need:

* **Parked blocking queries cost no task.** A query that must wait is handed back as a :class:`Park`; the
  connection joins a :class:`~stator.registry.watch.Group` (one per distinct query) and does nothing until the
  group's topic changes. The group then renders the answer once (one ``compute``, one JSON encoding, one header
  block) and writes the same bytes to every waiting connection, so 1,000 watchers of one key cost one encoding
  and 1,000 ``send`` calls back to back, not 1,000 coroutine resumptions through a framework.
* **An oversized body still gets its 413 read.** The answer is sent as soon as the headers show the size, the
  rest of the body is read and discarded (up to :data:`DRAIN_LIMIT`), and only then is the connection closed:
  a client that writes its whole body before reading (``urllib``, ``requests``) would otherwise hit a reset
  instead of the 413.

Everything else is plain HTTP/1.1: keep-alive, pipelined requests answered in order, chunked request bodies,
``Expect: 100-continue``, HTTP/1.0, ``HEAD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final, Protocol, cast

import httptools

from stator.logs import Logger

# Bodies past their limit are read and dropped up to this many bytes so the client can read its 413; a client
# still sending after that is cut off.
DRAIN_LIMIT: Final = 64 * 1024 * 1024
MAX_HEADER_BYTES: Final = 1024 * 1024
# Reading pauses while this much of a body is buffered and not yet handled.
HIGH_WATER: Final = 4 * 1024 * 1024

Headers = list[tuple[bytes, bytes]]


@dataclass
class Request:
    method: str
    path: str
    raw_query: bytes
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: Headers = field(default_factory=list)
    close: bool = False


class Render(Protocol):
    """Computes a parked query's answer now: (the index it reflects, the response)."""

    def __call__(self) -> tuple[int, Response]: ...


@dataclass
class Park:
    """A blocking query that has to wait: join ``key``'s group on ``topic`` until ``render`` reports an index
    above ``min_index`` or ``timeout`` seconds pass (then answer with what ``render`` gives)."""

    topic: tuple[object, ...]
    key: object
    min_index: int
    timeout: float
    render: Render


class App(Protocol):
    """What the server serves (the registry's application)."""

    def body_limit(self, method: str, path: str) -> int: ...

    def too_large(self, method: str, path: str, size: int) -> Response: ...

    async def handle(self, request: Request) -> Response | Park: ...

    def park(self, conn: Connection, park: Park) -> None: ...

    def unpark(self, conn: Connection) -> None: ...

    async def startup(self) -> None: ...

    def begin_shutdown(self) -> None: ...

    async def shutdown(self) -> None: ...


_date_cache: list[object] = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[return-value]


_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}


def encode_response(resp: Response, head_only: bool = False) -> bytes:
    """The full bytes of a response: status line, headers (with Date and Content-Length), body."""
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (resp.status, _REASONS.get(resp.status, b"")),
        b"date: " + http_date() + b"\r\n",
    ]
    for name, value in resp.headers:
        parts.append(name + b": " + value + b"\r\n")
    if resp.status != 304 and not 100 <= resp.status < 200 and resp.status != 204:
        parts.append(b"content-length: %d\r\n" % len(resp.body))
    if resp.close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(resp.body)
    return b"".join(parts)


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, parks blocking queries."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        # Per-request parse state.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._limit = 0
        self._too_large = False
        self._drained = 0
        self._header_bytes = 0
        self._in_headers = False
        # Complete requests waiting their turn (pipelining), and the one being answered.
        self._queue: deque[tuple[Request, bool]] = deque()
        self._busy = False
        self._keep_alive = True
        self._current_head = False
        self._reading_paused = False
        self.parked: Park | None = None
        self.park_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.parked is not None:
            self.app.unpark(self)
            self._clear_park()
        self._queue.clear()
        if self._busy:  # a request still counted in flight (a parked blocking query): shutdown must not wait for it
            self._busy = False
            self.server.in_flight -= 1
        self.server.notify_idle()

    def eof_received(self) -> bool | None:
        return None  # close our side too: a client that half-closes is gone for a blocking query

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._write_and_close(Response(400, b"Upgrade not supported", _TEXT, close=True))
        except httptools.HttpParserError as exc:
            if not self.closed:
                self._write_and_close(Response(400, f"Bad Request: {exc}".encode(), _TEXT, close=True))

    # ------------------------------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._too_large = False
        self._drained = 0
        self._header_bytes = 0
        self._in_headers = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value))
        self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            self._write_and_close(Response(431, b"Request Header Fields Too Large", _TEXT, close=True))
            raise httptools.HttpParserError("headers too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        parsed = httptools.parse_url(self._url)
        path = parsed.path.decode("latin-1") if parsed.path else "/"
        method = self.parser.get_method().decode("latin-1")
        self._limit = self.app.body_limit(method, path)
        declared = self._headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            self._reject_too_large(method, path, int(declared))
        elif self._headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _reject_too_large(self, method: str, path: str, size: int) -> None:
        """Answer 413 now, then keep reading (and dropping) the body so the client gets to read the answer."""
        self._too_large = True
        resp = self.app.too_large(method, path, size)
        resp.close = True
        if self.transport is not None and not self.closed:
            self.transport.write(encode_response(resp))
        if self._headers.get("expect", "").lower() == "100-continue":
            self._close()  # the client waits for our verdict before sending: nothing to drain

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            self._drained += len(body)
            if self._drained > DRAIN_LIMIT:
                self._close()
            return
        self._body_size += len(body)
        if self._body_size > self._limit:
            parsed = httptools.parse_url(self._url)
            path = parsed.path.decode("latin-1") if parsed.path else "/"
            self._body = []
            self._reject_too_large(self.parser.get_method().decode("latin-1"), path, self._body_size)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            self._close()
            return
        parsed = httptools.parse_url(self._url)
        request = Request(
            method=self.parser.get_method().decode("latin-1"),
            path=(parsed.path or b"/").decode("utf-8", "replace"),
            raw_query=parsed.query or b"",
            headers=self._headers,
            body=b"".join(self._body),
        )
        keep_alive = self.parser.should_keep_alive()
        self._body = []
        self._queue.append((request, keep_alive))
        if self._busy:
            self._pause_reading()  # pipelined: read no more until the queue drains
        else:
            self._next()

    # ------------------------------------------------------------------------------------------ answering

    def _next(self) -> None:
        if self.closed or not self._queue:
            return
        request, keep_alive = self._queue.popleft()
        self._busy = True
        self._keep_alive = keep_alive and not self.server.shutting_down
        self._current_head = request.method == "HEAD"
        self.server.in_flight += 1
        task = self.loop.create_task(self._run(request))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _run(self, request: Request) -> None:
        try:
            result = await self.app.handle(request)
        except Exception as exc:  # the app answers its own errors; anything here is a bug
            self.server.logger.error("unhandled error", exc=exc, method=request.method, path=request.path)
            result = Response(500, (str(exc) or type(exc).__name__).encode(), list(_TEXT))
        if self.closed:
            self._done()
            return
        if isinstance(result, Park):
            self.parked = result
            self.park_timer = self.loop.call_later(result.timeout, self._park_timeout)
            self.app.park(self, result)
            return
        self.send(encode_response(self._finish(result), self._current_head))

    def _finish(self, resp: Response) -> Response:
        if not self._keep_alive:
            resp.close = True
        return resp

    def send(self, data: bytes) -> None:
        """Write one complete response (already encoded) and move on to the next request."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            if not self._keep_alive:
                self._close()
        self._done()

    def answer_parked(self, data: bytes) -> None:
        """Called by the watch group with the shared answer bytes (encoded for keep-alive HTTP/1.1)."""
        self._clear_park()
        if self._current_head:
            data = data[: data.index(b"\r\n\r\n") + 4]
        self.send(data)

    def _park_timeout(self) -> None:
        self.park_timer = None
        park = self.parked
        if park is None:
            return
        self.app.unpark(self)
        self._clear_park()
        _, resp = park.render()
        self.send(encode_response(self._finish(resp), self._current_head))

    def _clear_park(self) -> None:
        self.parked = None
        if self.park_timer is not None:
            self.park_timer.cancel()
            self.park_timer = None

    def _done(self) -> None:
        if not self._busy:
            return
        self._busy = False
        self.server.in_flight -= 1
        if self.server.shutting_down and not self._queue:
            self._close()
        elif self._queue:
            self._next()
        else:
            self._resume_reading()
        self.server.notify_idle()

    def idle(self) -> bool:
        return not self._busy and not self._queue

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _write_and_close(self, resp: Response) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(encode_response(resp))
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


_TEXT: Final = [(b"content-type", b"text/plain; charset=utf-8")]


class Server:
    """Serves an :class:`App` on listening sockets until :meth:`request_exit` (or SIGTERM/SIGINT)."""

    def __init__(self, app: App, logger: Logger, *, graceful_timeout: float = 5.0) -> None:
        self.app = app
        self.logger = logger
        self.graceful_timeout = graceful_timeout
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.shutting_down = False
        self.started = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by serve()
        self._exit: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._exit_requested = threading.Event()

    def request_exit(self) -> None:
        """Start a graceful shutdown; callable from any thread and from signal handlers."""
        self._exit_requested.set()
        loop, event = self.loop, self._exit
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def notify_idle(self) -> None:
        if self._idle is not None and self.in_flight == 0:
            self._idle.set()

    async def serve(self, sockets: list[socket.socket], *, handle_signals: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        if self._exit_requested.is_set():
            self._exit.set()
        await self.app.startup()
        servers = [await self.loop.create_server(lambda: Connection(self), sock=s, backlog=4096) for s in sockets]
        installed: list[signal.Signals] = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.request_exit)
                installed.append(sig)
        self.started = True
        try:
            await self._exit.wait()
        finally:
            for sig in installed:
                self.loop.remove_signal_handler(sig)
            await self._shutdown(servers)

    async def _shutdown(self, servers: list[asyncio.Server]) -> None:
        self.shutting_down = True
        for srv in servers:
            srv.close()
        # Parked queries answer at once with their current data; idle keep-alive connections close.
        self.app.begin_shutdown()
        for conn in list(self.connections):
            if conn.idle():
                conn._close()
        self._idle = asyncio.Event()
        self.notify_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.graceful_timeout)
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            conn._close()
        await self.app.shutdown()
        for srv in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
