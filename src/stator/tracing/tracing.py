r"""Tracing for one service: a tracer of its own (never the global provider) with the SDK's ParentBased ratio
sampler and the service's resource, the server span made inside the observability middleware's single pass, and
the bounded export queue. Spans are :class:`~stator.tracing.spans.LightSpan`\ s (see that module for why).

Per request the middleware calls :meth:`Tracing.start` (W3C ``traceparent``/``tracestate`` extracted, a SERVER
span started with the request attributes and made current, so spans the handler starts — and the project HTTP
client's CLIENT spans — become its children) and :meth:`Tracing.finish` (route, status, error status and
exception event, end; returns the exemplar for the latency histogram when the span was sampled).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.asgi import OVERFLOW, UNMATCHED, Scope
from stator.config import Settings
from stator.logs import Logger
from stator.tracing.export import HTTPPoster, Post, QueueSpanProcessor
from stator.tracing.provider import ServiceTracerProvider, attach_global, detach_global
from stator.tracing.recent import RecentSpans
from stator.tracing.spans import LightSpan

_NO_ROUTE = frozenset({UNMATCHED, OVERFLOW})
_PROPAGATOR = TraceContextTextMapPropagator()  # stateless: a parser, not state


def _headers(raw: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


class _Handle:
    __slots__ = ("exemplar", "method", "span", "token")

    def __init__(self, span: trace.Span, token: object, method: str, exemplar: dict[str, str]) -> None:
        self.span = span
        self.token = token
        self.method = method
        self.exemplar = exemplar  # also the log fields: one formatting of the ids per request


class Tracing:
    def __init__(
        self,
        settings: Settings,
        logger: Logger,
        registry: CollectorRegistry,
        *,
        service_name: str,
        version: str,
        instance_id: str,
        post: Post | None = None,
    ) -> None:
        otlp = settings.otlp
        self.endpoint = otlp.endpoint
        self.sample_ratio = otlp.sample_ratio
        self.logger = logger
        resource = Resource.create(
            {"service.name": service_name, "service.version": version, "service.instance.id": instance_id}
        )
        endpoint = otlp.endpoint  # a SecretURL: its text is redacted; credentials go as a Basic header
        headers = {**endpoint.auth_headers(), **_headers(otlp.headers.get_secret_value())}
        poster = post or HTTPPoster(endpoint.bare, headers, otlp.timeout)
        self.processor = QueueSpanProcessor(
            poster,
            logger,
            queue_size=otlp.queue_size,
            batch_size=otlp.batch_size,
            batch_delay=otlp.batch_delay,
        )
        # A real OpenTelemetry TracerProvider (get_tracer per instrumentation scope) over the light spans: the
        # server span comes from its "stator" tracer, user and library spans from theirs, one export queue.
        # What this instance finished recently, for /-/ui/tracez (bounded; a few appends per span).
        self.recent = RecentSpans()
        recent_add, enqueue = self.recent.add, self.processor.enqueue

        def on_end(span: LightSpan) -> None:
            recent_add(span)
            enqueue(span)

        self.provider = ServiceTracerProvider(ParentBased(TraceIdRatioBased(otlp.sample_ratio)), resource, on_end)
        self.tracer = self.provider.get_tracer("stator", version)
        self.global_provider = otlp.global_provider
        self._global = False
        self.server_address = settings.http.host
        registry.register(_TracingCollector(self))

    # -- the middleware's two calls ------------------------------------------------------------------------

    def start(
        self,
        scope: Scope,
        method: str,
        traceparent: bytes | None,
        tracestate: bytes | None,
        request_id: str,
    ) -> tuple[_Handle, dict[str, str]]:
        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = _PROPAGATOR.extract(carrier)
        # Sampling is decided before any attribute is built: an unsampled request pays for ids and context only.
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        if isinstance(span, LightSpan):
            attributes = span.attributes
            attributes["http.request.method"] = method
            attributes["url.path"] = scope["path"]
            attributes["url.scheme"] = scope.get("scheme", "http")
            attributes["network.protocol.version"] = scope.get("http_version", "1.1")
            attributes["stator.request_id"] = request_id
            server = scope.get("server")
            if server:
                attributes["server.address"] = server[0]
                attributes["server.port"] = server[1]
            client = scope.get("client")
            if client:
                attributes["client.address"] = client[0]
            query = scope.get("query_string")
            if query:
                attributes["url.query"] = query.decode("latin-1")
        token = context.attach(trace.set_span_in_context(span, parent))
        ctx = span.get_span_context()
        ids = {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
        return _Handle(span, token, method, ids), ids

    def finish(self, handle: _Handle, route: str, status: int, exc: BaseException | None) -> dict[str, str] | None:
        context.detach(handle.token)  # type: ignore[arg-type]
        span = handle.span
        if not isinstance(span, LightSpan):
            return None  # not recorded (sampled out): nothing to finish, no exemplar
        attributes = span.attributes
        attributes["http.response.status_code"] = status
        if route not in _NO_ROUTE:
            attributes["http.route"] = route
            span.name = f"{handle.method} {route}"
        failed = exc is not None and isinstance(exc, Exception)
        if failed:
            assert exc is not None
            span.record_exception(exc)
            attributes["error.type"] = type(exc).__qualname__
        elif status >= 500:
            attributes["error.type"] = str(status)
        if failed or status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        if not span.context.trace_flags.sampled:
            return None
        return handle.exemplar

    # -- the HTTP client's hook -----------------------------------------------------------------------------

    def client_hook(self, request: httpx.Request) -> Callable[[httpx.Response | None, BaseException | None], None]:
        """A :data:`stator.client.http.RequestHook`: a CLIENT span around the exchange, child of the current
        span, and its context sent as ``traceparent``/``tracestate`` so the callee continues the trace."""
        url = request.url
        span = self.tracer.start_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "url.full": str(url.copy_with(query=None)),
            },
        )
        _PROPAGATOR.inject(request.headers, context=trace.set_span_in_context(span))

        def finish(response: httpx.Response | None, error: BaseException | None) -> None:
            if response is not None:
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_attribute("error.type", str(response.status_code))
                    span.set_status(Status(StatusCode.ERROR))
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
            span.end()

        return finish

    # -- the global provider -------------------------------------------------------------------------------

    def install_global(self) -> None:
        """Answer OpenTelemetry's global ``get_tracer()`` with this service's provider (STATOR_OTLP_GLOBAL_PROVIDER);
        undone by :meth:`shutdown`."""
        if not self.global_provider or self._global:
            return
        self._global = attach_global(self.provider)
        if not self._global:
            self.logger.warning(
                "another OpenTelemetry tracer provider is installed globally: spans made with trace.get_tracer()"
                " go to it, not through stator",
                provider=type(trace.get_tracer_provider()).__qualname__,
            )

    def uninstall_global(self) -> None:
        if self._global:
            detach_global(self.provider)
            self._global = False

    # -- state, shutdown -----------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        p = self.processor
        return {
            "enabled": True,
            "endpoint": self.endpoint,
            "sample_ratio": self.sample_ratio,
            "queued": len(p.queue),
            "exported": p.exported,
            "dropped": p.dropped,
            "failed_batches": p.failed_batches,
            "last_export_at": p.last_export_at,
            "last_error": p.last_error,
        }

    def shutdown(self, timeout: float) -> bool:
        """Flush what is queued within ``timeout`` seconds, then stop the export thread (blocking: call it
        from a thread). Returns whether everything queued was exported."""
        started = time.monotonic()
        self.uninstall_global()
        flushed = self.processor.force_flush(int(max(0.0, timeout) * 1000))
        self.processor.shutdown()
        self.logger.info(
            "tracing flushed" if flushed else "tracing flush incomplete",
            exported=self.processor.exported,
            dropped=self.processor.dropped,
            queued=len(self.processor.queue),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return flushed


class _TracingCollector:
    """Export counters read at scrape time (the export thread only bumps plain ints)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def collect(self) -> Iterator[Metric]:
        p = self.tracing.processor
        yield CounterMetricFamily("stator_tracing_spans_exported", "Spans accepted by the collector.", p.exported)
        yield CounterMetricFamily(
            "stator_tracing_spans_dropped",
            "Spans dropped: export queue full or the collector failed.",
            p.dropped,
        )
        yield CounterMetricFamily("stator_tracing_export_failures", "Export requests that failed.", p.failed_batches)
        yield GaugeMetricFamily("stator_tracing_queue_spans", "Finished spans waiting for export.", len(p.queue))
