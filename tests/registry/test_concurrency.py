"""Thousands of blocking queries parked at once on asyncio waiters, all released by one write; a client that
disconnects mid-block frees its waiter at once."""

from __future__ import annotations

import asyncio
import json
import time

from .conftest import RegistryThread
from .rawhttp import RawConn

WATCHERS = 2000


async def _until(predicate: object, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_two_thousand_blocked_queries_woken_by_one_put(registry: RegistryThread) -> None:
    port = registry.port
    writer = await RawConn.open(port)
    status, headers, _ = await writer.request("PUT", "/v1/kv/hot", b"v1")
    assert status == 200
    status, headers, _ = await writer.request("GET", "/v1/kv/hot")
    index = int(headers["x-consul-index"])

    conns: list[RawConn] = []
    for start in range(0, WATCHERS, 250):  # open in batches: no SYN burst against the backlog
        batch = await asyncio.gather(*(RawConn.open(port) for _ in range(start, min(start + 250, WATCHERS))))
        for conn in batch:
            conn.send("GET", f"/v1/kv/hot?index={index}&wait=60s")
        conns.extend(batch)
    # All parked at once: one waiter each, no thread per request.
    await _until(lambda: registry.state.waiter_count() == WATCHERS, limit=30)

    started = time.monotonic()
    status, _, body = await writer.request("PUT", "/v1/kv/hot", b"v2")
    assert (status, body) == (200, b"true")
    results = await asyncio.wait_for(asyncio.gather(*(c.response() for c in conns)), timeout=30)
    elapsed = time.monotonic() - started
    for status, headers, body in results:
        assert status == 200
        assert int(headers["x-consul-index"]) > index
        assert json.loads(body)[0]["Value"] == "djI="  # base64("v2")
    assert registry.state.waiter_count() == 0
    # Semantics, not speed: every watcher answered because of the write, long before its 60 s wait.
    assert elapsed < 20
    for c in [*conns, writer]:
        c.close()


async def test_disconnect_frees_waiter(registry: RegistryThread) -> None:
    conn = await RawConn.open(registry.port)
    status, headers, _ = await conn.request("GET", "/v1/kv/quiet")
    index = int(headers["x-consul-index"])
    for path in (f"/v1/kv/quiet?index={index}&wait=5m", "/v1/catalog/services?index=999999&wait=5m"):
        c = await RawConn.open(registry.port)
        c.send("GET", path)
        await _until(lambda: registry.state.waiter_count() == 1, limit=5)
        c.close()
        # Freed when the connection drops, not when the 5-minute wait ends.
        await _until(lambda: registry.state.waiter_count() == 0, limit=5)
    # The registry is unaffected and still answers.
    status, _, _ = await conn.request("GET", "/v1/agent/self")
    assert status == 200
    conn.close()


async def test_shutdown_releases_parked_queries(registry_factory: object) -> None:
    reg: RegistryThread = registry_factory()  # type: ignore[operator]
    conn = await RawConn.open(reg.port)
    conn.send("GET", "/v1/catalog/services?index=999999&wait=10m")
    await _until(lambda: reg.state.waiter_count() == 1, limit=5)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, reg.stop)
    # Answered with current data at shutdown instead of holding the server for 10 minutes.
    status, headers, _ = await asyncio.wait_for(conn.response(), timeout=5)
    assert status == 200 and int(headers["x-consul-index"]) >= 1
    assert time.monotonic() - started < 5
    conn.close()
