"""The observability middleware in-process: route labels, request ids, access log, errors, cardinality."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from stator.asgi import Receive, Scope, Send
from stator.logs import Logger
from tests.http.helpers import log_lines, make_service, running, samples


def _requests(service: Any) -> dict[tuple[str, str, str], float]:
    return {
        (dict(k)["method"], dict(k)["route"], dict(k)["status"]): v
        for k, v in samples(service, "http_requests_total").items()
    }


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def raw_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"raw"})


def starlette_app() -> Starlette:
    inner = Starlette(routes=[Route("/things/{thing_id}", ok), Route("/", ok)])
    deeper = Starlette(routes=[Mount("/v2", routes=[Route("/x/{x_id:int}", ok)])])
    return Starlette(
        routes=[
            Route("/items/{item_id}", ok),
            Route("/post-only", ok, methods=["POST"]),
            Mount("/sub", app=inner),
            Mount("/nested", app=deeper),
            Mount("/grouped", routes=[Route("/g/{g_id}", ok)]),
            Mount("/raw", app=raw_ok),
            Mount("/deep", routes=[Mount("/raw", app=raw_ok)]),
        ]
    )


@pytest.mark.parametrize(
    ("path", "method", "route", "status"),
    [
        ("/items/1", "GET", "/items/{item_id}", "200"),
        ("/items/2", "GET", "/items/{item_id}", "200"),
        ("/sub/things/7", "GET", "/sub/things/{thing_id}", "200"),
        ("/sub/", "GET", "/sub/", "200"),
        ("/nested/v2/x/5", "GET", "/nested/v2/x/{x_id}", "200"),
        ("/grouped/g/9", "GET", "/grouped/g/{g_id}", "200"),
        ("/raw/anything/at/all", "GET", "/raw/{path}", "200"),
        ("/deep/raw/x", "GET", "/deep/raw/{path}", "200"),
        ("/post-only", "GET", "/post-only", "405"),
        ("/nothing/here", "GET", "<unmatched>", "404"),
        ("/items/1", "FROB", "/items/{item_id}", "405"),
    ],
)
async def test_starlette_route_templates(path: str, method: str, route: str, status: str) -> None:
    service, _ = make_service(starlette_app())
    async with running(service) as client:
        await client.request(method, path)
    label_method = "OTHER" if method == "FROB" else method
    assert _requests(service) == {(label_method, route, status): 1.0}


async def test_fastapi_prefixed_routers_mounts_and_root_path() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1")

    @router.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    sub = FastAPI()

    @sub.get("/report/{rid}")
    async def report(rid: str) -> dict[str, str]:
        return {"rid": rid}

    app.include_router(router)
    app.mount("/admin", sub)
    service, _ = make_service(app)
    async with running(service) as client:
        assert (await client.get("/api/v1/users/5")).json() == {"id": 5}
        assert (await client.get("/api/v1/users/6")).status_code == 200
        assert (await client.get("/admin/report/r1")).status_code == 200
        assert (await client.get("/api/v1/users/notanint")).status_code == 422
    assert _requests(service) == {
        ("GET", "/api/v1/users/{user_id}", "200"): 2.0,
        ("GET", "/admin/report/{rid}", "200"): 1.0,
        ("GET", "/api/v1/users/{user_id}", "422"): 1.0,
    }


async def test_root_path_deployment_uses_the_app_template() -> None:
    service, _ = make_service(starlette_app())
    async with running(service) as client:
        transport = client._transport
        assert hasattr(transport, "root_path")
        transport.root_path = "/prefix"  # as uvicorn --root-path /prefix behind a proxy
        response = await client.get("/prefix/items/3")
        assert response.status_code == 200
    assert _requests(service) == {("GET", "/items/{item_id}", "200"): 1.0}


async def test_raw_asgi_app_is_instrumented_and_unrouted_is_unmatched() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"created"})

    service, sink = make_service(raw)
    async with running(service) as client:
        response = await client.post("/anything", content=b"12345")
    assert response.status_code == 201
    assert response.headers["x-request-id"]
    assert _requests(service) == {("POST", "<unmatched>", "201"): 1.0}
    line = next(x for x in log_lines(sink) if x["msg"] == "request")
    assert line["request_bytes"] == 5
    assert line["response_bytes"] == 7


async def test_custom_route_resolver() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        scope["my_route"] = "/custom/{id}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    service, _ = make_service(raw, route_resolver=lambda scope: scope.get("my_route", "<unmatched>"))
    async with running(service) as client:
        await client.get("/custom/5")
    assert _requests(service) == {("GET", "/custom/{id}", "200"): 1.0}


async def test_cardinality_cap_overflows_and_counts() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = type("R", (), {"path": scope["path"]})()  # a router that reports raw paths
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    service, _ = make_service(raw, env={"STATOR_HTTP_MAX_LABEL_SETS": "3"})
    async with running(service) as client:
        for i in range(10):
            await client.get(f"/p/{i}")
    series = _requests(service)
    assert len(series) == 4
    assert series[("GET", "<overflow>", "200")] == 7.0
    dropped = samples(service, "stator_http_dropped_label_sets_total")
    assert dropped[(("metric", "http_requests_total"),)] == 7.0
    durations = {dict(k)["route"] for k in samples(service, "http_request_duration_seconds_count")}
    assert "<overflow>" in durations
    assert len(durations) == 4


@pytest.mark.parametrize(
    ("incoming", "accepted"),
    [
        ("abc-123", True),
        ("A.b_c:d/e+f=g-h", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("semi;colon", False),
        ("ünïcode", False),
    ],
)
async def test_request_id_accept_reject(incoming: str, accepted: bool) -> None:
    service, sink = make_service(starlette_app())
    async with running(service) as client:
        response = await client.get("/items/1", headers={"X-Request-ID": incoming.encode("utf-8")})
    echoed = response.headers["x-request-id"]
    if accepted:
        assert echoed == incoming
    else:
        assert echoed != incoming
        assert len(echoed) == 36
        assert echoed[14] == "7"  # UUIDv7
    line = next(x for x in log_lines(sink) if x["msg"] == "request")
    assert line["request_id"] == echoed


async def test_generated_request_ids_are_unique_and_sortable() -> None:
    service, _ = make_service(starlette_app())
    ids = []
    async with running(service) as client:
        for _ in range(50):
            ids.append((await client.get("/items/1")).headers["x-request-id"])
    assert len(set(ids)) == 50
    import uuid

    assert all(
        uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i for i in ids
    )
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # millisecond prefix is monotonic


async def test_custom_request_id_header() -> None:
    service, _ = make_service(starlette_app(), env={"STATOR_HTTP_REQUEST_ID_HEADER": "X-Correlation-ID"})
    async with running(service) as client:
        response = await client.get("/items/1", headers={"X-Correlation-ID": "corr-1"})
    assert response.headers["x-correlation-id"] == "corr-1"


async def test_request_id_reaches_sync_handlers_in_the_threadpool() -> None:
    holder: dict[str, Logger] = {}
    seen: dict[str, str] = {}
    app = FastAPI()

    @app.get("/sync")
    def sync_handler() -> dict[str, str]:
        seen["thread"] = threading.current_thread().name
        holder["logger"].info("inside sync handler")
        return {"ok": "yes"}

    service, sink = make_service(app)
    holder["logger"] = service.logger
    async with running(service) as client:
        response = await client.get("/sync", headers={"X-Request-ID": "sync-req-1"})
    assert response.status_code == 200
    assert seen["thread"] != threading.main_thread().name
    inside = next(x for x in log_lines(sink) if x["msg"] == "inside sync handler")
    assert inside["request_id"] == "sync-req-1"


async def test_access_log_fields() -> None:
    service, sink = make_service(starlette_app())
    async with running(service) as client:
        await client.get("/items/77?q=1", headers={"User-Agent": "tester/1.0", "X-Request-ID": "r-1"})
    line = next(x for x in log_lines(sink) if x["msg"] == "request")
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["route"] == "/items/{item_id}"
    assert line["path"] == "/items/77"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["request_bytes"] == 0
    assert line["response_bytes"] == 2
    assert line["request_id"] == "r-1"
    assert line["client"] == "10.1.2.3:4567"
    assert line["user_agent"] == "tester/1.0"


async def test_slow_requests_log_at_warning() -> None:
    import asyncio

    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.06)
        return PlainTextResponse("slow")

    service, sink = make_service(Starlette(routes=[Route("/slow", slow)]), env={"STATOR_HTTP_SLOW": "50ms"})
    async with running(service) as client:
        await client.get("/slow")
    line = next(x for x in log_lines(sink) if x["msg"] == "slow request")
    assert line["level"] == "warning"
    assert line["duration_ms"] >= 50


class Teapot(Exception):
    status_code = 418


async def test_exceptions_become_json_errors() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("secret internals")
        if scope["path"] == "/teapot":
            raise Teapot("I'm a teapot, not a coffee machine")
        raise ValueError("x")

    service, sink = make_service(raw)
    async with running(service) as client:
        boom = await client.get("/boom", headers={"X-Request-ID": "err-1"})
        teapot = await client.get("/teapot")
    assert boom.status_code == 500
    assert boom.json() == {"error": "internal server error", "request_id": "err-1"}
    assert "secret" not in boom.text
    assert teapot.status_code == 418
    assert teapot.json()["error"] == "I'm a teapot, not a coffee machine"
    lines = log_lines(sink)
    error = next(x for x in lines if x["msg"] == "unhandled exception")
    assert error["request_id"] == "err-1"
    assert error["error_type"] == "RuntimeError"
    assert "secret internals" in error["stack"]
    assert not any(x["msg"] == "unhandled exception" and x.get("error_type", "").endswith("Teapot") for x in lines)
    assert _requests(service) == {("GET", "<unmatched>", "500"): 1.0, ("GET", "<unmatched>", "418"): 1.0}


async def test_exception_after_response_started_keeps_status() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-stream")

    service, sink = make_service(raw)
    async with running(service) as client:
        with contextlib.suppress(Exception):
            await client.get("/stream")
    assert any(x["msg"] == "request" and x["status"] == 200 for x in log_lines(sink))


async def test_ops_endpoints_excluded_from_metrics_and_access_log_by_default() -> None:
    service, sink = make_service(starlette_app())
    async with running(service) as client:
        for path in ("/-/healthy", "/-/ready", "/monitor", "/-/config", "/metrics"):
            assert (await client.get(path)).status_code == 200
        await client.get("/items/1")
    assert set(_requests(service)) == {("GET", "/items/{item_id}", "200")}
    assert [x["path"] for x in log_lines(sink) if x["msg"] == "request"] == ["/items/1"]


async def test_ops_endpoints_can_be_instrumented_and_sampled() -> None:
    env = {"STATOR_HTTP_INSTRUMENT_OPS": "true", "STATOR_HTTP_ACCESS_LOG_OPS_SAMPLE": "1.0"}
    service, sink = make_service(starlette_app(), env=env)
    async with running(service) as client:
        await client.get("/-/healthy")
        await client.get("/-/ready")
    assert _requests(service) == {("GET", "/-/healthy", "200"): 1.0, ("GET", "/-/ready", "200"): 1.0}
    assert [x["path"] for x in log_lines(sink) if x["msg"] == "request"] == ["/-/healthy", "/-/ready"]


async def test_in_flight_gauge_returns_to_zero() -> None:
    service, _ = make_service(starlette_app())
    async with running(service) as client:
        for _ in range(3):
            await client.get("/items/1")
    assert samples(service, "http_requests_in_flight") == {(): 0.0}


async def test_json_error_bodies_from_reference_app() -> None:
    from stator.app.reference import create_app

    service, _ = make_service(create_app())
    async with running(service) as client:
        missing = await client.get("/missing")
        wrong = await client.get("/sum")
        bad = await client.post("/sum", content=b"{not json")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    assert wrong.status_code == 405
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]


async def test_two_services_in_one_process_keep_separate_http_metrics() -> None:
    a, _ = make_service(starlette_app())
    b, _ = make_service(starlette_app())
    async with running(a) as client_a, running(b) as client_b:
        await client_a.get("/items/1")
        await client_a.get("/items/2")
        await client_b.get("/sub/things/1")
    assert _requests(a) == {("GET", "/items/{item_id}", "200"): 2.0}
    assert _requests(b) == {("GET", "/sub/things/{thing_id}", "200"): 1.0}


async def test_json_response_passthrough_headers_preserved() -> None:
    async def h(request: Request) -> JSONResponse:
        return JSONResponse({"a": 1}, headers={"X-Custom": "yes"})

    service, _ = make_service(Starlette(routes=[Route("/h", h)]))
    async with running(service) as client:
        response = await client.get("/h")
    assert response.headers["x-custom"] == "yes"
    assert response.headers["x-request-id"]


async def test_access_log_truncates_client_controlled_fields() -> None:
    service, sink = make_service(starlette_app(), env={"STATOR_LOG_MAXLEN": "40"})
    async with running(service) as client:
        await client.get("/items/" + "x" * 100, headers={"User-Agent": "agent/" + "y" * 100})
    line = next(x for x in log_lines(sink) if x["msg"] == "request")
    assert line["path"].endswith("--truncated--")
    assert len(line["path"]) == 40
    assert line["user_agent"].endswith("--truncated--")
    assert line["route"] == "/items/{item_id}"


async def test_a_reused_response_object_does_not_accumulate_headers() -> None:
    shared = PlainTextResponse("same object every time")

    async def reused(request: Request) -> PlainTextResponse:
        return shared

    service, _ = make_service(Starlette(routes=[Route("/r", reused)]))
    async with running(service) as client:
        for _ in range(3):
            response = await client.get("/r")
            assert len(response.headers.get_list("x-request-id")) == 1
