"""The tracez page in process: spans by name and latency bucket, errors apart, a span's attributes and events, the
parent/child tree of a trace this instance saw; bounded, escaped, and an honest page when tracing is off."""

from __future__ import annotations

import asyncio
import re

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stator.tracing.recent import MAX_NAMES, PER_BUCKET, RecentSpans
from tests.http.helpers import make_service, running
from tests.tracing.receiver import OTLPReceiver

XSS = "<script>window.__x=1</script>"


async def work(request: Request) -> Response:
    tracer = trace.get_tracer("tests.tracez")
    with tracer.start_as_current_span("load items") as span:
        span.set_attribute("items", 3)
        await asyncio.sleep(0.002)
        with tracer.start_as_current_span(f"query {XSS}"):
            pass
    return JSONResponse({"ok": True})


async def boom(request: Request) -> Response:
    raise ValueError("boom <b>")


APP = Starlette(routes=[Route("/work", work), Route("/boom", boom)])


async def test_tracez_shows_spans_by_latency_errors_and_the_trace_tree() -> None:
    with OTLPReceiver() as receiver:
        service, _ = make_service(APP, env={"STATOR_OTLP_ENDPOINT": receiver.endpoint})
        async with running(service) as client:
            for _ in range(3):
                assert (await client.get("/work")).status_code == 200
            assert (await client.get("/boom")).status_code == 500
            summary = (await client.get("/-/ui/tracez")).text
            assert "GET /work" in summary and "load items" in summary and "GET /boom" in summary
            assert XSS not in summary and "&lt;script&gt;" in summary  # a span name is shown, never run
            # the 3 "load items" spans took >= 2 ms: counted in the 1-10 ms bucket (index 1)
            row = re.search(r"<code>load items</code>(.*?)</tr>", summary, re.S)
            assert row is not None and 'bucket=1">3</a>' in row.group(1)
            # errors apart, with the exception event
            errors = (await client.get("/-/ui/tracez", params={"name": "GET /boom", "errors": "1"})).text
            assert "exception" in errors and "ValueError" in errors and "boom <b>" not in errors
            cell = (await client.get("/-/ui/tracez", params={"name": "load items", "bucket": "1"})).text
            assert "items" in cell and ">3<" in cell  # the span's attribute
            # the tree of one trace: server span > load items > query
            trace_id = re.search(r"trace_id=([0-9a-f]{32})", cell)
            assert trace_id is not None
            tree = (await client.get("/-/ui/tracez", params={"trace_id": trace_id.group(1)})).text
            first = tree.index("GET /work")
            assert first < tree.index("load items") < tree.index("query &lt;script&gt;")
            assert tree.count("&nbsp;&nbsp;&nbsp;&nbsp;<code>query") == 1  # two levels down: indented twice
            assert "&nbsp;" * 8 + "<code>query" in tree
            bad = await client.get("/-/ui/tracez", params={"trace_id": "not-hex"})
            assert bad.status_code == 200 and "hexadecimal" in bad.text
            # from the recent-requests page, a failed request links to its spans
            assert "/-/ui/tracez?trace_id=" in (await client.get("/-/ui/requests")).text


async def test_tracez_without_tracing_says_so() -> None:
    service, _ = make_service(APP)
    async with running(service) as client:
        page = await client.get("/-/ui/tracez")
    assert page.status_code == 200 and "Tracing is off" in page.text


def test_recent_spans_are_bounded() -> None:
    with OTLPReceiver() as receiver:
        service, _ = make_service(APP, env={"STATOR_OTLP_ENDPOINT": receiver.endpoint})
        assert service.tracing is not None
        tracer = service.tracing.provider.get_tracer("bounds")
        for n in range(MAX_NAMES + 20):
            for _ in range(PER_BUCKET + 3):
                tracer.start_span(f"name-{n}").end()
        recent: RecentSpans = service.tracing.recent
        assert len(recent.names) == MAX_NAMES and recent.dropped_names == 20 * (PER_BUCKET + 3)
        assert all(len(bucket) <= PER_BUCKET for s in recent.names.values() for bucket in s.latest)
        assert recent.names["name-0"].counts[0] == PER_BUCKET + 3  # counted, though only the latest are kept
        assert len(recent.spans) <= recent.spans.maxlen  # type: ignore[operator]
        service.tracing.shutdown(1.0)
