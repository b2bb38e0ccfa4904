"""The project HTTP client: base URL, headers, request-id propagation, redacted debug logs, hooks, limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from stator.client import (
    HTTPClient,
    ResponseTooLarge,
    UnexpectedStatus,
    aexpect_2xx,
    consul_client,
    expect_2xx,
)
from stator.config.settings import ConsulSettings
from stator.logs import Logger, MemorySink, log_context


def _logger(level: Any = "debug") -> tuple[Logger, MemorySink]:
    sink = MemorySink()
    return Logger(app_id="t", run_id="r", sink=sink, level=level), sink


def _lines(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.lines]


class Recorder:
    """A MockTransport handler that records requests and answers what the test says."""

    def __init__(self, status: int = 200, body: bytes = b'{"ok":true}', headers: dict[str, str] | None = None):
        self.requests: list[httpx.Request] = []
        self.status = status
        self.body = body
        self.headers = headers or {"content-type": "application/json"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, content=self.body, headers=self.headers)


async def test_base_url_default_and_request_headers() -> None:
    rec = Recorder()
    async with HTTPClient(
        "http://upstream.test/api/", headers={"X-Default": "1"}, transport=httpx.MockTransport(rec)
    ) as client:
        resp = await client.get("items", params={"a": 1}, headers={"X-Extra": "2"})
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    req = rec.requests[0]
    assert str(req.url) == "http://upstream.test/api/items?a=1"
    assert req.headers["x-default"] == "1" and req.headers["x-extra"] == "2"


async def test_request_id_from_log_context_is_propagated() -> None:
    rec = Recorder()
    async with HTTPClient("http://u.test", transport=httpx.MockTransport(rec)) as client:
        await client.get("/a")
        with log_context(request_id="req-123"):
            await client.get("/b")
            await client.get("/c", headers={"X-Request-ID": "explicit"})
    assert "x-request-id" not in rec.requests[0].headers
    assert rec.requests[1].headers["x-request-id"] == "req-123"
    assert rec.requests[2].headers["x-request-id"] == "explicit"  # the caller's choice wins


async def test_custom_request_id_header_name() -> None:
    rec = Recorder()
    async with HTTPClient(
        "http://u.test", request_id_header="X-Correlation-ID", transport=httpx.MockTransport(rec)
    ) as c:
        with log_context(request_id="abc"):
            await c.get("/")
    assert rec.requests[0].headers["x-correlation-id"] == "abc"


async def test_debug_logs_with_sensitive_headers_and_query_redacted() -> None:
    logger, sink = _logger()
    rec = Recorder(headers={"content-type": "application/json", "Set-Cookie": "session=s3cr3t"})
    async with HTTPClient(
        "http://u.test",
        logger=logger,
        headers={"Authorization": "Bearer s3cr3t", "X-Consul-Token": "s3cr3t"},
        redact=["authorization", "token", "api_key", "cookie"],
        transport=httpx.MockTransport(rec),
    ) as client:
        with log_context(request_id="rid-1"):
            await client.get("/v1/kv/x", params={"token": "s3cr3t", "index": 5}, headers={"X-Api-Key": "s3cr3t"})
    # The upstream still gets the real values.
    sent = rec.requests[0]
    assert sent.headers["authorization"] == "Bearer s3cr3t" and sent.url.params["token"] == "s3cr3t"
    assert "s3cr3t" not in sink.text()
    sending, received = _lines(sink)
    assert sending["msg"] == "sending request" and sending["method"] == "GET"
    assert sending["headers"]["authorization"] == "--redacted--"
    assert sending["headers"]["x-consul-token"] == "--redacted--"
    assert sending["headers"]["x-api-key"] == "--redacted--"
    assert "index=5" in sending["url"] and "token=--redacted--" in sending["url"]
    assert received["msg"] == "received response"
    assert received["status"] == 200 and isinstance(received["elapsed_ms"], float)
    assert received["request_id"] == "rid-1" and received["url"] == sending["url"]
    assert received["headers"]["set-cookie"] == "--redacted--"
    assert received["bytes"] == len(rec.body)


async def test_no_log_lines_above_debug() -> None:
    logger, sink = _logger("info")
    async with HTTPClient("http://u.test", logger=logger, transport=httpx.MockTransport(Recorder())) as client:
        await client.get("/")
    assert sink.lines == []


async def test_transport_error_is_logged_and_raised() -> None:
    logger, sink = _logger()

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with HTTPClient("http://u.test", logger=logger, transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
    failed = _lines(sink)[-1]
    assert failed["msg"] == "request failed" and "ConnectError" in failed["error"]


async def test_non_2xx_is_returned_and_expect_2xx_raises_with_truncated_body() -> None:
    rec = Recorder(status=500, body=b"boom " * 500, headers={"content-type": "text/plain"})
    async with HTTPClient("http://u.test", transport=httpx.MockTransport(rec)) as client:
        resp = await client.get("/")
        assert resp.status_code == 500  # not raised: callers (Consul's 404) need to see it
        with pytest.raises(UnexpectedStatus) as info:
            expect_2xx(resp, limit=20)
    err = info.value
    assert err.status == 500 and err.body.endswith("--truncated--") and len(err.body) == 20 + len("--truncated--")
    assert str(err).startswith("unexpected status code 500 with body: boom boom")
    assert err.method == "GET" and err.url == "http://u.test/"
    ok = httpx.Response(204, request=resp.request)
    assert expect_2xx(ok) is ok


async def test_aexpect_2xx_reads_a_bounded_prefix_of_a_streamed_error() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=endless())

    client = HTTPClient("http://u.test", transport=httpx.MockTransport(handler))
    async with client, client.stream("GET", "/") as resp:
        with pytest.raises(UnexpectedStatus) as info:
            await aexpect_2xx(resp, limit=50)
    assert info.value.status == 503 and info.value.body.startswith("x" * 50)


async def test_max_body_declared_length() -> None:
    rec = Recorder(body=b"a" * 2000)
    async with HTTPClient("http://u.test", transport=httpx.MockTransport(rec)) as client:
        with pytest.raises(ResponseTooLarge) as info:
            await client.get("/", max_body=1000)
        assert info.value.limit == 1000 and info.value.seen == 2000
        ok = await client.get("/", max_body=2000)
        assert ok.content == b"a" * 2000


async def test_max_body_chunked_without_length() -> None:
    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b" " * 100

    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params["n"])
        return httpx.Response(200, content=chunks(n))

    async with HTTPClient("http://u.test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get("/", params={"n": 50}, max_body=1000)
        small = await client.get("/", params={"n": 5}, max_body=1000)
    assert small.content == b" " * 500 and small.text == " " * 500


async def test_json_after_bounded_read() -> None:
    body = json.dumps({"a": [1, 2, 3]}).encode()
    async with HTTPClient("http://u.test", transport=httpx.MockTransport(Recorder(body=body))) as client:
        resp = await client.get("/", max_body=len(body))
    assert resp.json() == {"a": [1, 2, 3]} and resp.is_closed


async def test_hooks_see_request_and_outcome() -> None:
    seen: list[Any] = []

    def hook(request: httpx.Request) -> Any:
        request.headers["traceparent"] = "00-abc-def-01"
        seen.append(("before", request.headers.get("x-request-id")))

        def done(response: httpx.Response | None, error: BaseException | None) -> None:
            seen.append(("done", response.status_code if response else None, type(error).__name__ if error else None))

        return done

    def broken_finish(request: httpx.Request) -> Any:
        def done(response: httpx.Response | None, error: BaseException | None) -> None:
            raise RuntimeError("exporter down")

        return done

    rec = Recorder(status=404)
    async with HTTPClient("http://u.test", hooks=[hook, broken_finish], transport=httpx.MockTransport(rec)) as client:
        with log_context(request_id="r9"):
            resp = await client.get("/")
        assert resp.status_code == 404
        assert rec.requests[0].headers["traceparent"] == "00-abc-def-01"
        # the request-id hook runs first, so later hooks see the final headers
        assert seen == [("before", "r9"), ("done", 404, None)]

        seen.clear()
        with pytest.raises(ResponseTooLarge):
            await client.get("/", max_body=1)
        assert seen == [("before", None), ("done", None, "ResponseTooLarge")]
    assert client.is_closed


async def test_stream_yields_after_headers_and_finishes_on_exit() -> None:
    logger, sink = _logger()
    released = asyncio.Event()
    finished: list[int | None] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"line1\n"
        await released.wait()
        yield b"line2\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    def hook(request: httpx.Request) -> Any:
        return lambda resp, err: finished.append(resp.status_code if resp else None)

    c = HTTPClient("http://u.test", logger=logger, hooks=[hook], transport=httpx.MockTransport(handler))
    async with c, c.stream("POST", "/watch", json={"k": "v"}) as resp:
        assert resp.status_code == 200
        assert [m["msg"] for m in _lines(sink)] == ["sending request", "received response"]
        lines = resp.aiter_lines()
        assert await lines.__anext__() == "line1"
        assert finished == []
        released.set()
        assert await lines.__anext__() == "line2"
    assert finished == [200]


async def test_per_request_timeout_against_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HTTPClient(f"http://127.0.0.1:{port}", timeout=30.0) as client:
            began = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/", timeout=httpx.Timeout(5.0, read=0.2))
            assert time.monotonic() - began < 5
    finally:
        server.close()


async def test_wrapping_an_existing_httpx_client_leaves_it_open() -> None:
    inner = httpx.AsyncClient(base_url="http://u.test", transport=httpx.MockTransport(Recorder()))
    client = HTTPClient(client=inner)
    assert (await client.get("/")).status_code == 200
    await client.aclose()
    assert not inner.is_closed and client.inner is inner
    await inner.aclose()


async def test_consul_preset_sends_token_and_never_logs_it() -> None:
    logger, sink = _logger()
    rec = Recorder()
    settings = ConsulSettings(addr="127.0.0.1:8500", token="t0ps3cret", timeout=3.0)  # type: ignore[arg-type]
    client = consul_client(settings, logger, transport=httpx.MockTransport(rec))
    async with client:
        await client.get("/v1/kv/x")
    assert rec.requests[0].headers["x-consul-token"] == "t0ps3cret"
    assert str(rec.requests[0].url) == "http://127.0.0.1:8500/v1/kv/x"
    assert "t0ps3cret" not in sink.text()
    assert client.inner.timeout.read == 3.0
