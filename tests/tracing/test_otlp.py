"""The direct OTLP encoder decodes to the same ExportTraceServiceRequest as the stock encoder."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from stator.tracing.otlp import encode_spans


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _normalise(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """The stock encoder leaves the W3C trace flags out of Span.flags/Link.flags; trace.proto puts them in the
    low byte. Compare everything else exactly."""
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.flags &= ~0xFF
                for link in span.links:
                    link.flags &= ~0xFF
    return request


def _compare(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    for rs in ours.resource_spans:  # our low byte holds the W3C sampled flag
        for ss in rs.scope_spans:
            for span in ss.spans:
                assert span.flags & 0x01 == 1  # sampled (the SDK may also set 0x02, "random")
    theirs = stock_encode(spans)
    assert _normalise(ours) == _normalise(theirs)


scalar = st.one_of(
    st.text(max_size=30),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
attr_value = st.one_of(scalar, st.lists(st.text(max_size=10), max_size=4), st.lists(st.integers(0, 1000), max_size=4))
attributes = st.dictionaries(st.text(min_size=1, max_size=20), attr_value, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(max_size=40),
    attrs=attributes,
    kind=st.sampled_from(list(SpanKind)),
    events=st.lists(st.tuples(st.text(max_size=10), attributes), max_size=3),
    status=st.sampled_from([None, (StatusCode.OK, None), (StatusCode.ERROR, "boom"), (StatusCode.ERROR, None)]),
    remote_parent=st.booleans(),
    with_link=st.booleans(),
    state=st.sampled_from(["", "vendor=value", "a=1,b=2"]),
)
def test_matches_stock_encoder(
    name: str,
    attrs: dict[str, Any],
    kind: SpanKind,
    events: list[tuple[str, dict[str, Any]]],
    status: tuple[StatusCode, str | None] | None,
    remote_parent: bool,
    with_link: bool,
    state: str,
) -> None:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "n": 3, "f": 1.5}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("scope-name", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0")
    parent_ctx = None
    if remote_parent:
        parent = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(1),
            trace_state=TraceState.from_header([state]) if state else TraceState(),
        )
        parent_ctx = set_span_in_context(NonRecordingSpan(parent))
    links = []
    if with_link:
        links.append(Link(SpanContext(0x1, 0x2, is_remote=True, trace_flags=TraceFlags(1)), {"link": "yes"}))
    span = tracer.start_span(name, context=parent_ctx, kind=kind, attributes=attrs, links=links)
    for event_name, event_attrs in events:
        span.add_event(event_name, event_attrs)
    if status is not None:
        span.set_status(Status(status[0], status[1]))
    span.end()
    outer = tracer.start_span("second", kind=SpanKind.INTERNAL)
    outer.end()
    _compare(keep.spans)


def test_many_spans_several_scopes() -> None:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    for scope in ("a", "b"):
        tracer = provider.get_tracer(scope)
        for i in range(50):
            with tracer.start_as_current_span(f"op {i}", attributes={"i": i, "path": f"/items/{i}"}):
                with tracer.start_as_current_span("child"):
                    pass
    _compare(keep.spans)
    request = ExportTraceServiceRequest.FromString(encode_spans(keep.spans))
    assert len(request.resource_spans) == 1
    assert [ss.scope.name for ss in request.resource_spans[0].scope_spans] == ["a", "b"]
    assert sum(len(ss.spans) for ss in request.resource_spans[0].scope_spans) == 200
