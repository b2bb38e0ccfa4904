"""The embedding path in detail, in process: ops paths and aliases, the app winning collisions, sensitive
endpoints, prometheus_client's default REGISTRY, the start-up warnings, and OpenTelemetry interop with an
instrumentation library (opentelemetry-instrumentation-httpx) exporting through stator in the request's trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import prometheus_client
import pytest
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from stator.http.instrument import Instrumented, instrument
from tests.http.helpers import log_lines, make_service, running, samples
from tests.tracing.receiver import OTLPReceiver


def _app(*routes: Route) -> Starlette:
    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/hello", hello), *routes])


async def test_ops_live_under_dash_and_aliases_yield_to_app_routes() -> None:
    async def monitor(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the app's own monitor")

    service, sink = make_service(_app(Route("/monitor", monitor)))
    async with running(service) as client:
        assert (await client.get("/monitor")).text == "the app's own monitor"  # the app wins
        assert (await client.get("/-/monitor")).json()["app_id"]  # stator's is always here
        assert (await client.get("/services")).json()["source"] == "none"  # alias: the app has no /services
        assert (await client.get("/-/services")).json()["source"] == "none"
        assert "http_requests_total" in (await client.get("/metrics")).text
        assert "http_requests_total" in (await client.get("/-/metrics")).text
        assert (await client.get("/-/nope")).status_code == 404
        assert (await client.post("/-/monitor")).status_code == 405
        await client.get("/monitor")
    collisions = [
        line for line in log_lines(sink) if line["msg"] == "the application routes an ops alias: its route wins"
    ]
    assert [c["path"] for c in collisions] == ["/monitor"]  # once, however often it is hit
    # The app's route is application traffic: counted under its own template.
    assert samples(service, "http_requests_total")[(("method", "GET"), ("route", "/monitor"), ("status", "200"))] == 2


async def test_sensitive_endpoints_can_be_kept_off_the_public_port() -> None:
    service, _ = make_service(_app(), env={"STATOR_OPS_EXPOSE_SENSITIVE": "false"})
    async with running(service) as client:
        assert (await client.get("/-/config")).status_code == 404
        assert (await client.get("/-/debug/pprof/cmdline")).status_code == 404
        assert (await client.get("/debug/pprof/cmdline")).status_code == 404
        assert (await client.get("/-/healthy")).status_code == 200
    exposed, _ = make_service(_app())
    async with running(exposed) as client:
        assert (await client.get("/-/debug/pprof/cmdline")).status_code == 200
        assert (await client.get("/debug/pprof/cmdline")).status_code == 200  # alias: the app has no such route
        assert (await client.get("/-/debug/pprof/tasks?debug=1")).status_code == 200


async def test_default_registry_metrics_are_exported_once() -> None:
    counter = prometheus_client.Counter("embed_test_jobs", "Jobs a library counted on the default registry.")
    counter.inc(3)
    try:
        service, _ = make_service(_app())
        async with running(service) as client:
            text = (await client.get("/metrics")).text
        assert "embed_test_jobs_total 3.0" in text
        # prometheus_client's own process/GC collectors are not exported beside stator's (no duplicates).
        assert text.count("# TYPE process_cpu_seconds_total counter") == 1
        assert text.count("# TYPE python_info gauge") == 1
        service_off, _ = make_service(_app(), env={"STATOR_METRICS_DEFAULT_REGISTRY": "false"})
        async with running(service_off) as client:
            assert "embed_test_jobs" not in (await client.get("/metrics")).text
    finally:
        prometheus_client.REGISTRY.unregister(counter)


async def test_unnamed_service_warns_once_and_name_argument_names_it() -> None:
    service, sink = make_service(_app())
    async with running(service):
        pass
    assert [line["msg"] for line in log_lines(sink)].count(
        "service has no name: set STATOR_SERVICE_NAME or pass name= to stator.instrument()"
    ) == 1
    named = instrument(_app(), make_service()[0].settings, name="orders")
    assert isinstance(named, Instrumented) and named.service.app_id == "orders" and not named.service.unnamed


async def test_server_without_lifespan_gets_one_warning() -> None:
    service, sink = make_service(_app())
    transport = httpx.ASGITransport(app=service.asgi)  # sends no lifespan events, like `granian --interface asginl`
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(3):
            assert (await client.get("/hello")).status_code == 200
    warnings = [line for line in log_lines(sink) if "sent no ASGI lifespan events" in line["msg"]]
    assert len(warnings) == 1


@pytest.fixture
def httpx_instrumented() -> Iterator[None]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


async def test_instrumentation_library_spans_join_the_request_trace(httpx_instrumented: None) -> None:
    async def call(request: Request) -> JSONResponse:
        # A plain httpx client over real HTTP, instrumented by the OpenTelemetry library (not stator's client).
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{upstream.server_address[1]}/ping")
        with trace.get_tracer("user.code").start_as_current_span("after the call") as span:
            span.set_attribute("status", response.status_code)
        return JSONResponse({"status": response.status_code})

    class Pong(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return None

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Pong)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with OTLPReceiver() as receiver:
        service, _ = make_service(
            _app(Route("/call", call)),
            env={"STATOR_OTLP_ENDPOINT": receiver.endpoint, "STATOR_OTLP_BATCH_DELAY": "50ms"},
        )
        async with running(service) as client:
            assert (await client.get("/call")).json() == {"status": 200}
        spans = {s.name: s for _, s in receiver.snapshot()}
    server_span = spans["GET /call"]
    client_span = spans["GET"]  # opentelemetry-instrumentation-httpx names its CLIENT span by method
    user_span = spans["after the call"]
    for span in (client_span, user_span):
        assert span.trace_id == server_span.trace_id and span.parent_span_id == server_span.span_id
    # Tracing off: the same calls are cheap no-ops (non-recording spans).
    service_off, _ = make_service(_app(Route("/call", call)))
    async with running(service_off) as client:
        assert (await client.get("/call")).json() == {"status": 200}
    assert not trace.get_tracer("user.code").start_span("x").is_recording()
    upstream.shutdown()
    upstream.server_close()


def test_instrumented_is_typed_for_users() -> None:
    # `mypy --strict examples` (CI) is the real check; this one guards the runtime shape it relies on.
    app = instrument(_app(), make_service()[0].settings, name="typed")
    assert app.service.asgi is app


def test_stator_run_warns_of_unknown_settings_once(spawn: Any) -> None:
    proc = spawn(STATOR_HTTP_PROT="8080")  # a typo of STATOR_HTTP_PORT
    line = proc.wait_for("unknown setting ignored")
    assert line["variable"] == "STATOR_HTTP_PROT"
    proc.wait_for("listening")
    assert proc.messages().count("unknown setting ignored") == 1
