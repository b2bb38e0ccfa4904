"""Ops endpoints and behaviour that needs a real server on loopback (disconnects, the separate ops port)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stator.app.reference import create_app
from tests.http.helpers import log_lines, make_service, running, serving


async def test_healthy_and_ready_with_no_checks() -> None:
    service, _ = make_service()
    async with running(service) as client:
        assert (await client.get("/-/healthy")).json() == {"status": "ok"}
        ready = await client.get("/-/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {}}
        head = await client.head("/-/ready")
        assert head.status_code == 200
        assert head.content == b""


async def test_readiness_reports_failing_and_slow_checks() -> None:
    service, _ = make_service(env={"STATOR_OPS_READY_TIMEOUT": "100ms", "STATOR_OPS_READY_CACHE": "0s"})
    state = {"db": True}

    async def db() -> bool:
        return state["db"]

    async def broken() -> None:
        raise ConnectionError("refused")

    async def slow() -> None:
        await asyncio.sleep(5)

    service.add_readiness_check("db", db)
    async with running(service) as client:
        assert (await client.get("/-/ready")).status_code == 200
        service.add_readiness_check("cache", broken)
        service.add_readiness_check("slow", slow)
        response = await client.get("/-/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["db"]["status"] == "ok"
        assert body["checks"]["cache"] == {
            "status": "fail",
            "duration": body["checks"]["cache"]["duration"],
            "error": "ConnectionError: refused",
        }
        assert body["checks"]["slow"]["error"] == "timed out after 0.1s"
        assert body["checks"]["slow"]["duration"] < 1  # the probe did not wait for the slow check


async def test_readiness_is_cached_and_shared() -> None:
    service, _ = make_service(env={"STATOR_OPS_READY_CACHE": "10s"})
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)

    service.add_readiness_check("counted", counted)
    async with running(service) as client:
        await asyncio.gather(*(client.get("/-/ready") for _ in range(20)))
        await client.get("/-/ready")
    assert calls == 1


async def test_readiness_flips_when_shutdown_begins() -> None:
    import time

    service, _ = make_service()
    async with running(service) as client:
        assert (await client.get("/-/ready")).status_code == 200
        await service.begin_shutdown(time.monotonic() + 1)
        response = await client.get("/-/ready")
        assert response.status_code == 503
        assert response.json()["reason"] == "shutting down"


async def test_monitor_shows_identity_workers_and_readiness() -> None:
    service, _ = make_service()
    async with running(service) as client:
        await client.get("/-/ready")
        monitor = (await client.get("/monitor")).json()
    assert monitor["app_id"] == "stator"
    assert monitor["run_id"] == service.run_id
    assert monitor["version"]
    assert monitor["uptime_seconds"] >= 0
    assert monitor["started_at"] > 0
    assert {w["name"] for w in monitor["workers"]} >= {"loop-monitor"}
    assert all({"name", "state", "restarts", "last_error"} <= set(w) for w in monitor["workers"])
    assert monitor["readiness"]["last"]["status"] == "ready"


async def test_config_is_redacted() -> None:
    service, sink = make_service(env={"STATOR_CONSUL_TOKEN": "hunter2-token"})
    async with running(service) as client:
        body = (await client.get("/-/config")).json()
    assert body["config"]["http"]["port"] == 8087
    assert body["config"]["shutdown"]["timeout"] == "15s"
    assert body["config"]["consul"]["token"] == "--redacted--"
    assert "hunter2" not in str(body)
    assert "hunter2" not in sink.text()


async def test_ops_methods_and_unknown_paths() -> None:
    service, _ = make_service()
    async with running(service) as client:
        post = await client.post("/monitor")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert post.json()["error"] == "method POST not allowed"
        assert (await client.get("/-/nope")).status_code == 404


async def test_client_disconnect_is_recorded_as_499() -> None:
    service, sink = make_service(create_app(), env={"STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": "0"})
    async with serving(service) as base:
        port = int(base.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /sleep?seconds=0.4 HTTP/1.1\r\nHost: x\r\nX-Request-ID: gone-1\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.6)
    line = next(x for x in log_lines(sink) if x["msg"] == "request" and x["request_id"] == "gone-1")
    assert line["status"] == 499
    from tests.http.helpers import samples

    statuses = {dict(k)["status"] for k in samples(service, "http_requests_total")}
    assert statuses == {"499"}


async def test_separate_ops_port_serves_only_ops() -> None:
    env = {"STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": "0", "STATOR_OPS_PORT": "0"}
    service, _ = make_service(create_app(), env=env)
    async with serving(service) as base:
        assert service.ops_address is not None
        ops = f"http://127.0.0.1:{service.ops_address[1]}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/hello")).status_code == 200
            assert (await client.get(f"{base}/-/healthy")).status_code == 404
            assert (await client.get(f"{base}/metrics")).status_code == 404
            assert (await client.get(f"{ops}/-/healthy")).status_code == 200
            assert (await client.get(f"{ops}/metrics")).status_code == 200
            assert (await client.get(f"{ops}/hello")).status_code == 404
            monitor = (await client.get(f"{ops}/monitor")).json()
    assert monitor["ops_address"].endswith(str(service.ops_address[1]))


async def test_instrument_works_under_plain_uvicorn() -> None:
    """``uvicorn mymodule:app`` path: uvicorn owns the server, stator runs through the lifespan."""
    import uvicorn

    from stator import instrument

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = instrument(Starlette(routes=[Route("/hi", hello)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/hi")).text == "hi"
            assert (await client.get("/-/ready")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'http_requests_total{method="GET",route="/hi",status="200"} 1.0' in metrics
            service: Any = app.service  # type: ignore[attr-defined]
            assert service.state == "running"
    finally:
        server.should_exit = True
        await task
    assert service.state == "stopped"


@pytest.mark.parametrize(
    "path", ["/-/healthy", "/-/ready", "/monitor", "/-/config", "/metrics", "/-/monitor", "/-/metrics"]
)
async def test_ops_endpoints_mountable_without_app(path: str) -> None:
    service, _ = make_service()
    async with running(service) as client:
        assert (await client.get(path)).status_code == 200
