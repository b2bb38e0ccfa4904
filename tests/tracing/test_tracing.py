"""Tracing end to end: spans reach a real OTLP/HTTP receiver; two services calling each other make one trace;
log lines and exemplars carry the ids of exported spans."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stator.service import Service
from tests.http.helpers import log_lines, make_service, serving
from tests.tracing.receiver import OTLPReceiver, attrs

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {
        "STATOR_HTTP_HOST": "127.0.0.1",
        "STATOR_HTTP_PORT": "0",
        "STATOR_OTLP_ENDPOINT": receiver.endpoint,
        "STATOR_OTLP_BATCH_DELAY": "50ms",
        "STATOR_SHUTDOWN_TIMEOUT": "5s",
        **extra,
    }


async def _wait_spans(receiver: OTLPReceiver, n: int, timeout: float = 10) -> list[tuple[dict[str, Any], Span]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = receiver.snapshot()
        if len(spans) >= n:
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {n} spans, got {len(receiver.snapshot())}")


async def test_two_services_make_one_trace_with_correct_links() -> None:
    with OTLPReceiver() as receiver:
        backend_app = Starlette(routes=[Route("/work/{job}", lambda r: JSONResponse({"job": r.path_params["job"]}))])
        backend, backend_sink = make_service(backend_app, env={**_env(receiver), "STATOR_SERVICE_NAME": "backend"})
        holder: dict[str, Service] = {}

        async def front(request: Request) -> JSONResponse:
            async with holder["front"].http_client(request.app.state.backend_url) as client:
                answer = await client.get("/work/42")
            holder["front"].logger.info("called backend", status=answer.status_code)
            return JSONResponse({"backend": answer.json()})

        front_app = Starlette(routes=[Route("/front", front)])
        frontend, front_sink = make_service(front_app, env={**_env(receiver), "STATOR_SERVICE_NAME": "frontend"})
        holder["front"] = frontend
        incoming_trace = "0af7651916cd43dd8448eb211c80319c"
        incoming_parent = "b7ad6b7169203331"
        async with serving(backend) as backend_url, serving(frontend) as front_url:
            front_app.state.backend_url = backend_url
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"{front_url}/front",
                    headers={"traceparent": f"00-{incoming_trace}-{incoming_parent}-01", "X-Request-ID": "req-77"},
                )
            assert response.json() == {"backend": {"job": "42"}}
            spans = await _wait_spans(receiver, 3)
            async with httpx.AsyncClient() as client:
                scrape = await client.get(f"{front_url}/metrics", headers={"Accept": OPENMETRICS})
            front_metrics = scrape.text

    by_kind = {(res["service.name"], span.kind): span for res, span in spans}
    server_front = by_kind[("frontend", Span.SPAN_KIND_SERVER)]
    client_front = by_kind[("frontend", Span.SPAN_KIND_CLIENT)]
    server_back = by_kind[("backend", Span.SPAN_KIND_SERVER)]
    # one trace, continued from the incoming traceparent
    assert {span.trace_id.hex() for _, span in spans} == {incoming_trace}
    assert server_front.parent_span_id.hex() == incoming_parent
    assert client_front.parent_span_id == server_front.span_id
    assert server_back.parent_span_id == client_front.span_id
    # names and semantic-convention attributes
    assert server_front.name == "GET /front"
    assert server_back.name == "GET /work/{job}"
    a = attrs(server_back)
    assert a["http.request.method"] == "GET"
    assert a["http.route"] == "/work/{job}"
    assert a["url.path"] == "/work/42"
    assert a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1"
    assert attrs(server_front)["stator.request_id"] == "req-77"
    assert attrs(server_back)["stator.request_id"] == "req-77"  # the client propagated X-Request-ID too
    assert attrs(client_front)["http.response.status_code"] == 200
    # resource
    resources = {res["service.name"]: res for res, _ in spans}
    assert resources["backend"]["service.instance.id"] == backend.instance_id
    # log lines carry the ids of exported spans
    front_lines = [x for x in log_lines(front_sink) if x.get("request_id") == "req-77"]
    assert {x["msg"] for x in front_lines} >= {"called backend", "request"}
    assert all(x["trace_id"] == incoming_trace for x in front_lines)
    assert all(x["span_id"] == server_front.span_id.hex() for x in front_lines)
    back_line = next(x for x in log_lines(backend_sink) if x["msg"] == "request")
    assert back_line["trace_id"] == incoming_trace
    assert back_line["span_id"] == server_back.span_id.hex()
    # the latency histogram's exemplar is the exported server span
    exemplars = [
        s.exemplar
        for family in text_string_to_metric_families(front_metrics)
        if family.name == "http_request_duration_seconds"
        for s in family.samples
        if s.exemplar is not None
    ]
    assert exemplars, front_metrics
    assert {e.labels["trace_id"] for e in exemplars} == {incoming_trace}
    assert {e.labels["span_id"] for e in exemplars} == {server_front.span_id.hex()}


async def test_errors_mark_spans_and_unsampled_requests_export_nothing() -> None:
    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("kaput")

    with OTLPReceiver() as receiver:
        service, sink = make_service(Starlette(routes=[Route("/boom", boom)]), env=_env(receiver))
        async with serving(service) as url:
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{url}/boom")).status_code == 500
                unsampled = "00-11111111111111111111111111111111-2222222222222222-00"
                await client.get(f"{url}/nothing", headers={"traceparent": unsampled})
            spans = await _wait_spans(receiver, 1)
            await asyncio.sleep(0.3)
        spans = receiver.snapshot()
    assert len(spans) == 1  # the unsampled request produced no exported span
    span = spans[0][1]
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert attrs(span)["http.response.status_code"] == 500
    assert any(e.name == "exception" for e in span.events)
    unsampled_line = next(x for x in log_lines(sink) if x.get("path") == "/nothing")
    assert unsampled_line["trace_id"] == "1" * 32  # logs still correlate an unsampled trace


async def test_monitor_and_metrics_show_export_state_and_drops() -> None:
    with OTLPReceiver(status=503) as receiver:
        service, sink = make_service(Starlette(routes=[]), env=_env(receiver))
        async with serving(service) as url, httpx.AsyncClient() as client:
            for _ in range(5):
                await client.get(f"{url}/x")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and service.tracing and service.tracing.processor.dropped < 5:
                await asyncio.sleep(0.05)
            monitor = (await client.get(f"{url}/monitor")).json()
            metrics = (await client.get(f"{url}/metrics")).text
    assert monitor["tracing"]["enabled"] is True
    assert monitor["tracing"]["dropped"] >= 5
    assert "HTTP 503" in monitor["tracing"]["last_error"]
    assert "stator_tracing_spans_dropped_total" in metrics
    warnings = [x for x in log_lines(sink) if x["msg"].startswith("span export failing")]
    assert len(warnings) == 1  # one line per outage, not per batch


async def test_queue_bound_drops_instead_of_growing() -> None:
    from stator.logs import Logger, MemorySink
    from stator.tracing.export import QueueSpanProcessor

    posted: list[int] = []

    def slow_post(body: bytes) -> int:
        posted.append(len(body))
        time.sleep(0.2)
        return 200

    processor = QueueSpanProcessor(
        slow_post, Logger(app_id="t", run_id="t", sink=MemorySink()), queue_size=10, batch_size=5, batch_delay=0.01
    )
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for _ in range(100):
        tracer.start_span("s").end()
    assert len(processor.queue) <= 10
    assert processor.dropped >= 80
    assert processor.force_flush(5000)
    processor.shutdown()
    assert posted  # batches did go out while the rest was dropped


async def test_tracing_off_by_default_costs_nothing() -> None:
    service, sink = make_service(Starlette(routes=[]))
    assert service.tracing is None
    assert service.tracer is None
    from tests.http.helpers import running

    async with running(service) as client:
        await client.get("/x")
        monitor = (await client.get("/monitor")).json()
    assert monitor["tracing"] == {"enabled": False}
    assert "trace_id" not in next(x for x in log_lines(sink) if x["msg"] == "request")


@pytest.mark.parametrize("bad", ["ftp://x/v1/traces", "not a url", "http://", "https:///v1/traces"])
def test_bad_endpoint_is_a_config_error(bad: str) -> None:
    from stator.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="STATOR_OTLP_ENDPOINT"):
        load_settings({"STATOR_OTLP_ENDPOINT": bad})


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
        ("https://collector/custom/path", "https://collector/custom/path"),
    ],
)
def test_endpoint_gets_the_traces_path(given: str, used: str) -> None:
    from stator.config import load_settings

    assert load_settings({"STATOR_OTLP_ENDPOINT": given}).otlp.endpoint == used
