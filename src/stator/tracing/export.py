"""Finished spans → a bounded queue → a background thread that encodes and POSTs them (OTLP/HTTP protobuf).

Nothing here runs on the event loop: ``on_end`` is a deque append (and, once per batch, an Event.set). When the
queue is full, spans are dropped and counted — a slow or dead collector costs memory up to ``queue_size`` spans
and never latency. Export failures drop that batch (counted, logged once per outage) rather than retrying into
an ever-growing backlog: traces are samples, the service's own health comes first.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import cast

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from stator.logs import Logger
from stator.tracing.otlp import EncodableSpan, encode_spans

Post = Callable[[bytes], int]
"""Sends one encoded batch; returns the HTTP status (raises on transport errors)."""


class HTTPPoster:
    """One keep-alive connection to the collector, used only by the export thread."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"OTLP endpoint must be an http(s) URL, got {url!r}")
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.https else 80)
        self.path = parsed.path or "/v1/traces"
        self.headers = {"Content-Type": "application/x-protobuf", **headers}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self, body: bytes) -> int:
        for attempt in (1, 2):  # a kept-alive connection the collector closed fails once: reconnect then
            conn = self._conn or self._connect()
            try:
                conn.request("POST", self.path, body=body, headers=self.headers)
                response = conn.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class QueueSpanProcessor(SpanProcessor):
    """A BatchSpanProcessor with the parts stator needs to show: counters, an honest drop count, a
    deadline-bounded flush, and the fast encoder."""

    def __init__(
        self,
        post: Post,
        logger: Logger,
        *,
        queue_size: int = 2048,
        batch_size: int = 512,
        batch_delay: float = 1.0,
    ) -> None:
        self.post = post
        self.logger = logger
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.batch_delay = batch_delay
        self.queue: deque[EncodableSpan] = deque()
        self.exported = 0
        self.dropped = 0
        self.failed_batches = 0
        self.last_export_at: float | None = None
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._flush = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="stator-otlp-export", daemon=True)
        self._thread.start()

    # -- SpanProcessor ------------------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        """As an SDK span processor (for SDK TracerProviders)."""
        self.enqueue(cast(EncodableSpan, span))

    def enqueue(self, span: EncodableSpan) -> None:
        """Queue a finished span for export (stator's LightTracer calls this directly)."""
        ctx = span.get_span_context()
        if ctx is None or not ctx.trace_flags.sampled:
            return
        queue = self.queue
        if len(queue) >= self.queue_size:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) == self.batch_size:
            self._wake.set()

    def shutdown(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        close = getattr(self.post, "close", None)
        if callable(close):
            close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; True when the queue drained within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        self._flush = True
        try:
            while time.monotonic() < deadline:
                if not self.queue and self._idle.is_set():
                    return True
                self._wake.set()
                time.sleep(0.005)
            return not self.queue and self._idle.is_set()
        finally:
            self._flush = False

    # -- export thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        # Full batches go out as soon as they fill; a partial batch only once batch_delay has passed since the
        # last export (or on flush/stop). Exporting "whatever is queued" after each POST would, under load, send
        # batches of a few dozen spans and pay the per-request cost of export many times over, under the GIL.
        queue = self.queue
        last = time.monotonic()
        while True:
            self._wake.wait(max(0.0, self.batch_delay - (time.monotonic() - last)))
            self._wake.clear()
            self._idle.clear()
            while len(queue) >= self.batch_size:
                self._export([queue.popleft() for _ in range(self.batch_size)])
                last = time.monotonic()
            if queue and (self._stop or self._flush or time.monotonic() - last >= self.batch_delay):
                self._export([queue.popleft() for _ in range(min(self.batch_size, len(queue)))])
                last = time.monotonic()
            elif not queue:
                last = time.monotonic()  # nothing waiting: the next span's delay starts when it arrives
            self._idle.set()
            if self._stop and not queue:
                return

    def _export(self, batch: list[EncodableSpan]) -> None:
        try:
            status = self.post(encode_spans(batch))
            error = None if 200 <= status < 300 else f"collector answered HTTP {status}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.exported += len(batch)
            self.last_export_at = time.time()
            if self._failing:
                self._failing = False
                self.logger.info("span export recovered", exported=self.exported)
            return
        self.failed_batches += 1
        self.dropped += len(batch)
        self.last_error = error
        if not self._failing:  # one line per outage, not per batch
            self._failing = True
            self.logger.warning("span export failing; dropping batches until it recovers", error=error)
