"""The receiver's HTTP surface: ``POST /api/v1/write``, ``GET|POST /api/v1/series``, ``GET|POST /api/v1/query``.

Write answers: 204 stored; 400 invalid data (bad snappy or protobuf, labels against the spec, a bad version
header, series refused by the limit — senders must not retry these); 413 body or decoded payload over the limit
(refused before reading or decoding it); 415 wrong ``Content-Type``/``Content-Encoding``; 429 with
``Retry-After`` over the ingest rate. Errors are JSON ``{"error": ..., "reason": ...}``. The read endpoints answer
in Prometheus's HTTP API shape, errors as ``{"status": "error", "errorType": "bad_data", "error": ...}``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qs

import orjson
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from stator.asgi import Receive, Scope, Send, send_bytes, send_json
from stator.remotewrite.decode import Batch, WriteError, decode, decompress
from stator.remotewrite.instruments import Log, ReceiverMetrics, RejectionLog
from stator.remotewrite.limiter import SampleRate
from stator.remotewrite.selector import Selector, SelectorError, parse
from stator.remotewrite.store import Applied, Store

OFFLOAD_BYTES: Final = 1 << 20
"""Requests decoding to more than this are parsed in a thread, so a huge batch does not stall other requests."""
MAX_FORM: Final = 1 << 20


class _Gone(Exception):
    """The client disconnected before sending its whole body."""


def prom_float(value: float) -> str:
    """A sample value as Prometheus writes it in JSON (Go's ``FormatFloat(v, 'f', -1, 64)``)."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _time(raw: str | None, now: float) -> float:
    if raw is None or raw == "":
        return now
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SelectorError(f"cannot parse {raw!r} to a valid timestamp") from None


def _bad_data(message: str) -> dict[str, str]:
    return {"status": "error", "errorType": "bad_data", "error": message}


class Receiver:
    """The store, the limits and the instruments of one service's remote-write receiver."""

    def __init__(
        self,
        *,
        max_series: int,
        max_body: int,
        max_decoded: int,
        rate: float,
        burst: int,
        lookback: float,
        logger: Log,
        metrics: ReceiverMetrics | None = None,
        registry: Any = None,
        log_interval: float = 10.0,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = Store(max_series)
        self.max_body = max_body
        self.max_decoded = max_decoded
        self.limiter = SampleRate(rate, burst)
        self.lookback = lookback
        self.logger = logger
        self.metrics = metrics or ReceiverMetrics(registry, lambda: len(self.store), max_series)
        self.rejections = RejectionLog(logger, log_interval)
        self.tracer = tracer
        self.clock = clock
        self.last_write_at: float | None = None
        self.requests = 0

    # -- write -------------------------------------------------------------------------------------------

    async def write(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await send_json(send, 405, {"error": "use POST"}, headers=[(b"allow", b"POST")])
            return
        span_cm = (
            self.tracer.start_as_current_span("remote_write", kind=trace.SpanKind.INTERNAL)
            if self.tracer is not None
            else nullcontext(None)
        )
        with span_cm as span:
            started = time.perf_counter()
            try:
                applied, batch = await self._ingest(scope, receive)
            except WriteError as exc:
                await self._reject(send, exc, span)
                return
            except _Gone:
                return
            elapsed = time.perf_counter() - started
            if span is not None:
                span.set_attributes(
                    {
                        "stator.remote_write.series": batch.series,
                        "stator.remote_write.samples": batch.samples,
                        "stator.remote_write.new_series": applied.new_series,
                        "stator.remote_write.refused_series": applied.refused_series,
                    }
                )
            self.logger.debug(
                "remote write",
                series=batch.series,
                samples=batch.samples,
                new_series=applied.new_series,
                stored=applied.stored,
                duration_ms=round(elapsed * 1000, 3),
            )
            if applied.refused_series:
                # What fits is stored (as Mimir/Cortex do); the sender is told with a non-retryable 400.
                message = (
                    f"series limit {self.store.max_series} reached: {applied.refused_series} new series refused"
                    f" ({applied.refused_samples} samples); the other series were stored"
                )
                await self._reject(send, WriteError(400, "series_limit", message), span)
                return
            self.metrics.requests.labels("ok").inc()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _ingest(self, scope: Scope, receive: Receive) -> tuple[Applied, Batch]:
        headers = {k.lower(): v for k, v in scope.get("headers") or ()}
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        if encoding != b"snappy":
            shown = encoding.decode("latin-1") or "none"
            raise WriteError(415, "unsupported_media_type", f"Content-Encoding must be snappy, got {shown}")
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        media, _, params = ctype.partition(";")
        proto = params.replace(" ", "")
        if media.strip() != "application/x-protobuf" or (proto and proto != "proto=prometheus.writerequest"):
            raise WriteError(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/x-protobuf (remote write 1.0), got {ctype or 'none'}",
            )
        version = headers.get(b"x-prometheus-remote-write-version", b"").decode("latin-1").strip()
        if not version.startswith("0.1."):
            raise WriteError(
                400, "bad_version", f"X-Prometheus-Remote-Write-Version must be 0.1.x, got {version or 'none'}"
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise WriteError(413, "too_large", f"body of {int(length)} bytes exceeds the limit of {self.max_body}")
        wait = self.limiter.exhausted()
        if wait:
            raise _rate_limited(wait)
        body = await self._body(receive)
        started = time.perf_counter()
        data = decompress(body, self.max_decoded)
        known = self.store.aliases
        if len(data) > OFFLOAD_BYTES:
            batch = await asyncio.to_thread(decode, data, known)
        else:
            batch = decode(data, known)
        self.metrics.decode_seconds.observe(time.perf_counter() - started)
        wait = self.limiter.take(batch.samples)
        if wait:
            raise _rate_limited(wait)
        applied = self.store.apply(batch)
        m = self.metrics
        m.samples.inc(batch.samples)
        m.series.inc(batch.series)
        m.body_bytes.observe(len(body))
        if applied.new_series:
            m.new_series.inc(applied.new_series)
        if applied.out_of_order:
            m.ignored.labels("out_of_order").inc(applied.out_of_order)
        if batch.histograms:
            m.ignored.labels("native_histogram").inc(batch.histograms)
        if applied.refused_samples:
            m.ignored.labels("series_limit").inc(applied.refused_samples)
        if batch.metadata:
            m.metadata.inc(batch.metadata)
        self.last_write_at = self.clock()
        self.requests += 1
        return applied, batch

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise WriteError(413, "too_large", f"body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _reject(self, send: Send, exc: WriteError, span: Any) -> None:
        self.metrics.requests.labels(exc.reason).inc()
        self.metrics.rejected.labels(exc.reason).inc()
        self.rejections.rejected(exc.reason, exc.message, status=exc.status)
        if span is not None:
            span.set_attribute("stator.remote_write.rejected", exc.reason)
            span.set_status(Status(StatusCode.ERROR, exc.message))
        headers = [(b"retry-after", str(exc.retry_after).encode())] if isinstance(exc, RateLimited) else []
        if exc.status == 413:
            headers.append((b"connection", b"close"))  # the unread rest of the body is not worth reading
        await send_json(send, exc.status, {"error": exc.message, "reason": exc.reason}, headers=headers)

    # -- read --------------------------------------------------------------------------------------------

    async def series(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = await self._params(scope, receive, send)
        if params is None:
            return
        matches = params.get("match[]", [])
        if not matches:
            await send_json(send, 400, _bad_data("no match[] parameter provided"))
            return
        try:
            selectors = [parse(m) for m in matches]
        except SelectorError as exc:
            await send_json(send, 400, _bad_data(str(exc)))
            return
        seen: set[int] = set()
        out = []
        for selector in selectors:
            for s in self._select(selector):
                if id(s) not in seen:
                    seen.add(id(s))
                    out.append(s.metric)
        await send_bytes(send, 200, orjson.dumps({"status": "success", "data": out}))

    async def query(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = await self._params(scope, receive, send)
        if params is None:
            return
        text = (params.get("query") or [""])[-1]
        now = self.clock()
        try:
            if not text:
                raise SelectorError("no query parameter provided")
            at = _time((params.get("time") or [""])[-1], now)
            selector = parse(text)
        except SelectorError as exc:
            await send_json(send, 400, _bad_data(str(exc)))
            return
        newest = at * 1000
        oldest = newest - self.lookback * 1000
        when = round(at, 3)
        result = [
            {"metric": s.metric, "value": [when, prom_float(s.value)]}
            for s in self._select(selector)
            if not s.stale and oldest < s.timestamp_ms <= newest
        ]
        payload = {"status": "success", "data": {"resultType": "vector", "result": result}}
        await send_bytes(send, 200, orjson.dumps(payload))

    def _select(self, selector: Selector) -> list[Any]:
        return [s for s in self.store.candidates(selector.metric_name) if selector.matches(s.metric)]

    async def _params(self, scope: Scope, receive: Receive, send: Send) -> dict[str, list[str]] | None:
        if scope["type"] != "http":
            return None
        method = scope.get("method")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if method == "GET":
            return query
        if method != "POST":
            await send_json(send, 405, _bad_data(f"method {method} not allowed"), headers=[(b"allow", b"GET, POST")])
            return None
        try:
            body = await _read_limited(receive, MAX_FORM)
        except _Gone:
            return None
        if body is None:
            await send_json(send, 413, _bad_data(f"form body exceeds {MAX_FORM} bytes"))
            return None
        for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
            query.setdefault(key, []).extend(values)
        return query

    # -- /monitor ----------------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        return {
            "series": len(self.store),
            "max_series": self.store.max_series,
            "refused_series_total": self.store.refused_total,
            "requests_accepted": self.requests,
            "last_write_at": self.last_write_at,
            "rate_limit": self.limiter.rate or None,
        }


class RateLimited(WriteError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "rate_limited", f"ingest rate exceeded; retry after {retry_after}s")
        self.retry_after = retry_after


def _rate_limited(wait: float) -> RateLimited:
    return RateLimited(max(1, math.ceil(wait)))


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
