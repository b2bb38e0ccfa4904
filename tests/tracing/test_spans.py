"""LightTracer: API-conformant spans, SDK sampling semantics, and the same OTLP bytes as the stock encoder."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from stator.tracing.otlp import encode_spans
from stator.tracing.spans import LightSpan, LightTracer
from tests.tracing.test_otlp import _normalise


def _tracer(sampler: object = ALWAYS_ON) -> tuple[LightTracer, list[LightSpan]]:
    ended: list[LightSpan] = []
    tracer = LightTracer(
        sampler,  # type: ignore[arg-type]
        Resource.create({"service.name": "t"}),
        InstrumentationScope("stator", "0.1"),
        ended.append,
    )
    return tracer, ended


def test_nested_spans_parent_and_context() -> None:
    tracer, ended = _tracer()
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        assert trace.get_current_span() is outer
        with tracer.start_as_current_span("inner", attributes={"a": 1}) as inner:
            inner.set_attribute("b", "two")
            inner.add_event("evt", {"k": "v"})
    assert [s.name for s in ended] == ["inner", "outer"]
    inner_span, outer_span = ended
    assert inner_span.parent == outer_span.context
    assert inner_span.context.trace_id == outer_span.context.trace_id
    assert inner_span.attributes == {"a": 1, "b": "two"}
    assert outer_span.parent is None
    assert not outer_span.is_recording()


def test_exceptions_set_error_status_and_event() -> None:
    tracer, ended = _tracer()
    try:
        with tracer.start_as_current_span("failing"):
            raise ValueError("nope")
    except ValueError:
        pass
    span = ended[0]
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].name == "exception"
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == "ValueError"


def test_ok_status_is_final_and_ended_spans_are_frozen() -> None:
    tracer, ended = _tracer()
    span = tracer.start_span("s")
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR))
    span.end()
    span.set_attribute("late", 1)
    span.update_name("renamed")
    span.end()  # a second end is ignored
    assert len(ended) == 1
    assert ended[0].status.status_code is StatusCode.OK
    assert "late" not in ended[0].attributes
    assert ended[0].name == "s"


def test_sampling_follows_the_sdk_samplers() -> None:
    tracer, ended = _tracer(ALWAYS_OFF)
    span = tracer.start_span("dropped")
    assert isinstance(span, NonRecordingSpan)
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert ended == []
    # ParentBased: a sampled remote parent wins over a ratio of 0
    tracer, ended = _tracer(ParentBased(TraceIdRatioBased(0.0)))
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    child = tracer.start_span("child", context=trace.set_span_in_context(NonRecordingSpan(remote)))
    assert isinstance(child, LightSpan)
    assert child.context.trace_id == 0xABC
    assert child.parent == remote
    ratio_half, _ = _tracer(TraceIdRatioBased(0.5))
    decisions = [isinstance(ratio_half.start_span("x"), LightSpan) for _ in range(400)]
    assert 100 < sum(decisions) < 300


def test_light_spans_encode_like_the_stock_encoder() -> None:
    tracer, ended = _tracer()
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span(
        "GET /items/{id}",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.response.status_code": 200, "ratio": 0.5, "ok": True},
    ) as span:
        span.record_exception(RuntimeError("x"))
        span.set_status(Status(StatusCode.ERROR, "bad"))
        with tracer.start_as_current_span("db", kind=SpanKind.CLIENT):
            pass
    ours = ExportTraceServiceRequest.FromString(encode_spans(ended))
    theirs = stock_encode(ended)  # type: ignore[arg-type]
    assert _normalise(ours) == _normalise(theirs)
