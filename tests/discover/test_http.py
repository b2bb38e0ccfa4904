"""GET /services: the answer, long-polling with ?after=&wait=, HEAD/405/400, and the "none" source."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from stator.discover import Discover, PollResult, ServicesEndpoint
from tests.discover.conftest import doc, memory_logger
from tests.discover.test_worker import ScriptedPoller


def _client(endpoint: ServicesEndpoint) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/services", endpoint)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def _running(poller: ScriptedPoller) -> tuple[Discover, asyncio.Task[None]]:
    logger, _ = memory_logger()
    discover = Discover(poller, logger=logger)
    return discover, asyncio.create_task(discover.run())


async def test_none_source_answers_an_empty_set() -> None:
    async with _client(ServicesEndpoint()) as client:
        resp = await client.get("/services")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        assert resp.json() == {
            "services": [],
            "updated_at": None,
            "source": "none",
            "index": None,
            "version": 0,
            "state": "waiting",
        }
        # Nothing will ever change: a long-poll answers at once rather than hanging.
        assert (await client.get("/services", params={"after": 0, "wait": "10s"})).status_code == 200


async def test_services_answer_and_long_poll() -> None:
    poller = ScriptedPoller(PollResult(doc(1), 11))
    discover, task = await _running(poller)
    endpoint = ServicesEndpoint()
    endpoint.attach(discover)
    try:
        await asyncio.wait_for(discover.changed(0), 5)
        async with _client(endpoint) as client:
            resp = await client.get("/services")
            body = resp.json()
            assert body["services"] == [
                {"uri": "http://pool.example/api", "capabilities": [{"name": "resize", "capacity": 1}]}
            ]
            assert body["source"] == "fake" and body["index"] == 11 and body["version"] == 1
            assert isinstance(body["updated_at"], float) and body["state"] == "ok"
            assert resp.headers["x-stator-version"] == "1" and resp.headers["cache-control"] == "no-store"

            # after < version: at once. after == version: held until the next change.
            assert (await client.get("/services", params={"after": 0})).json()["version"] == 1
            held = asyncio.create_task(client.get("/services", params={"after": 1, "wait": "10s"}))
            await asyncio.sleep(0.05)
            assert not held.done()
            poller.push(PollResult(doc(2), 12))
            changed = (await asyncio.wait_for(held, 5)).json()
            assert changed["version"] == 2 and changed["services"][0]["capabilities"][0]["capacity"] == 2

            # A version from before a restart (ahead of ours): answered at once, not held.
            ahead = await asyncio.wait_for(client.get("/services", params={"after": 99, "wait": "10s"}), 1)
            assert ahead.json()["version"] == 2

            # wait runs out: the unchanged answer.
            timed_out = await client.get("/services", params={"after": 2, "wait": "50ms"})
            assert timed_out.json()["version"] == 2

            # shutdown: held long-polls return at once.
            held = asyncio.create_task(client.get("/services", params={"after": 2, "wait": "0.5"}))
            await asyncio.sleep(0.05)
            await discover.before_drain()
            assert (await asyncio.wait_for(held, 1)).json()["version"] == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_head_method_and_bad_queries() -> None:
    async with _client(ServicesEndpoint()) as client:
        head = await client.head("/services")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        post = await client.post("/services")
        assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
        for query in ({"after": "x"}, {"after": "1", "wait": "soon"}, {"after": "1", "wait": "-1s"}):
            assert (await client.get("/services", params=query)).status_code == 400


@pytest.mark.parametrize(("wait", "expected"), [("", 30.0), ("2s", 2.0), ("1.5", 1.5), ("1h", 300.0)])
def test_wait_parsing_and_cap(wait: str, expected: float) -> None:
    assert ServicesEndpoint()._wait(wait) == expected


async def test_long_poll_ends_when_the_client_goes_away() -> None:
    poller = ScriptedPoller(PollResult(doc(1), 1))
    discover, task = await _running(poller)
    await asyncio.wait_for(discover.changed(0), 5)
    endpoint = ServicesEndpoint(discover)
    messages: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not messages:
            messages.append({"type": "http.request"})
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/services", "query_string": b"after=1&wait=60s", "headers": []}
    call = asyncio.create_task(endpoint(scope, receive, send))
    await asyncio.sleep(0.05)
    assert not call.done()
    disconnect.set()
    await asyncio.wait_for(call, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
