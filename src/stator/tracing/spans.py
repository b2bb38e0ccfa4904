"""A lightweight OpenTelemetry tracer for the spans stator makes on every request.

The SDK's ``Span`` validates and copies every attribute under a lock, keeps a ``BoundedAttributes`` per span and
builds a ``ReadableSpan`` at the end: ~16–20 µs per span on this machine class before any export work, more than
the whole budget for request tracing. :class:`LightTracer` implements the OpenTelemetry **API** (``Tracer``,
``Span``) with plain slotted objects, and keeps what the SDK is good at: its sampler (``ParentBased`` ratio), its
id generator and its ``Resource``. The spans it makes are ordinary OTel spans to everything else — they sit in
the OTel context, handler code can read ``trace.get_current_span()`` and start children on any tracer — and
:mod:`stator.tracing.otlp` encodes them directly.

Spans are mutated only by the code that owns them (the request's task); the export thread sees a span only after
``end()``, which is the last write.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager  # what the API's own Tracer uses

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class LightSpan(trace.Span):
    """A recording span. Attribute names match the SDK's ``ReadableSpan`` so one encoder serves both."""

    __slots__ = (
        "_on_end",
        "attributes",
        "context",
        "end_time",
        "events",
        "instrumentation_scope",
        "kind",
        "links",
        "name",
        "parent",
        "provider",
        "resource",
        "start_time",
        "status",
    )
    dropped_attributes = 0
    dropped_events = 0
    dropped_links = 0

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
        start_time: int,
        resource: Resource,
        scope: InstrumentationScope,
        on_end: Callable[[LightSpan], None],
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.links = links
        self.start_time = start_time
        self.end_time: int | None = None
        self.events: list[Event] = []
        self.status = _UNSET
        self.resource = resource
        self.instrumentation_scope = scope
        self._on_end = on_end
        # The provider of the tracer that made it: tracers of the global provider route children to it.
        self.provider: Any = None

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time is None:
            self.events.append(Event(name, dict(attributes or {}), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self.end_time is None and context.is_valid:
            self.links = [*self.links, Link(context, attributes)]

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return  # OK is final, as in the SDK
        if isinstance(status, StatusCode):
            status = Status(status, description)
        self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self._on_end(self)


class CurrentSpanTracer(trace.Tracer):
    """``start_as_current_span`` in terms of ``start_span``: what every tracer here shares."""

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class LightTracer(CurrentSpanTracer):
    def __init__(
        self,
        sampler: Sampler,
        resource: Resource,
        scope: InstrumentationScope,
        on_end: Callable[[LightSpan], None],
        id_generator: IdGenerator | None = None,
    ) -> None:
        self.sampler = sampler
        self.resource = resource
        self.scope = scope
        self.on_end = on_end
        self.ids = id_generator or RandomIdGenerator()
        self.provider: Any = None  # the ServiceTracerProvider that made this tracer, if any

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        current = trace.get_current_span(context).get_span_context()
        parent: SpanContext | None = current if current.is_valid else None
        trace_state: TraceState | None = None
        if parent is not None:
            trace_id = parent.trace_id
            trace_state = parent.trace_state
        else:
            trace_id = self.ids.generate_trace_id()
        sampled = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        if sampled.trace_state is not None:
            trace_state = sampled.trace_state
        recording = sampled.decision is not Decision.DROP
        ctx = SpanContext(
            trace_id,
            self.ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED if sampled.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED,
            trace_state=trace_state,
        )
        if not recording:
            return trace.NonRecordingSpan(ctx)
        attrs = dict(attributes) if attributes else {}
        if sampled.attributes:
            attrs.update(sampled.attributes)
        span = LightSpan(
            name,
            ctx,
            parent,
            kind,
            attrs,
            list(links or ()),
            start_time or time.time_ns(),
            self.resource,
            self.scope,
            self.on_end,
        )
        span.provider = self.provider
        return span
