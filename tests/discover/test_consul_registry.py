"""The Consul KV watcher against the real dev registry over loopback: blocking queries, the missing-key state,
validation of what operators PUT, shutdown during a 5-minute wait, and the registry going away and coming back."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient
from stator.discover import ConsulKVPoller, Discover, TokenBucket
from tests.discover.conftest import DOC_A, DOC_B, DevRegistry, doc, eventually, log_lines, memory_logger

_keys = iter(range(1_000_000))


def _key() -> str:
    return f"stator/test/services-{next(_keys)}"


def _discover(url: str, key: str, **kw: Any) -> tuple[Discover, ConsulKVPoller, Any, CollectorRegistry]:
    wait = kw.pop("wait", 300.0)
    poller = ConsulKVPoller(lambda: HTTPClient(url), key, wait=wait, limiter=TokenBucket(3, 0.01))
    logger, sink = memory_logger()
    registry = CollectorRegistry()
    return Discover(poller, logger=logger, registry=registry, **kw), poller, sink, registry


async def _changed(discover: Discover, after: int, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(discover.changed(after), timeout)


async def test_watch_missing_then_published_then_updated(registry: DevRegistry) -> None:
    key = _key()
    discover, poller, sink, metrics = _discover(registry.url, key)
    task = asyncio.create_task(discover.run())
    try:
        snap = await _changed(discover, 0)
        assert snap.state == "missing" and snap.services == () and snap.index >= 1  # 404: a state

        registry.put(key, orjson.dumps(DOC_A))
        snap = await _changed(discover, snap.version)  # the blocked query wakes on creation
        assert snap.state == "ok" and [s.as_json() for s in snap.services] == DOC_A
        assert poller.index == snap.index

        # Rewriting identical bytes moves the index but publishes nothing.
        version = snap.version
        index = snap.index
        registry.put(key, orjson.dumps(DOC_A))
        await eventually(lambda: (discover.source_index or 0) > index)  # seen, not published
        assert discover.snapshot.version == version

        # What operators get wrong: kept out, the last good set served, each bad payload logged once.
        negative = b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": -3}]}]'
        for bad in (negative, negative, b"{not json", b""):
            registry.put(key, bad)
            index = registry.index(key)
            await eventually(lambda: (discover.source_index or 0) >= index)  # noqa: B023 - awaited right here
        assert discover.snapshot.version == version and [s.as_json() for s in discover.services] == DOC_A
        errors = {
            r: metrics.get_sample_value("stator_discovery_errors_total", {"reason": r}) for r in ("invalid", "empty")
        }
        assert errors == {"invalid": 2.0, "empty": 1.0}  # the repeated PUT of the same bytes is not re-examined
        bad_lines = [line for line in log_lines(sink) if line["msg"].startswith("invalid services document")]
        assert len(bad_lines) == 3  # negative capacity, bad JSON, empty: once each

        registry.put(key, orjson.dumps(DOC_B))
        snap = await _changed(discover, version)
        assert [s.as_json() for s in snap.services] == DOC_B

        registry.delete(key)
        snap = await _changed(discover, snap.version)
        assert snap.state == "missing" and snap.services == ()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_idle_waits_time_out_with_the_same_index(registry: DevRegistry) -> None:
    key = _key()
    registry.put(key, doc(1))
    discover, poller, _, metrics = _discover(registry.url, key, wait=0.2)
    task = asyncio.create_task(discover.run())
    try:
        await _changed(discover, 0)
        index = poller.index
        await eventually(lambda: poller.requests >= 4, timeout=5)
        assert poller.index == index and discover.snapshot.version == 1
        assert metrics.get_sample_value("stator_discovery_updates_total") == 1
        assert metrics.get_sample_value("stator_discovery_errors_total", {"reason": "timeout"}) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_shutdown_within_a_second_while_a_five_minute_wait_is_pending(registry: DevRegistry) -> None:
    key = _key()
    registry.put(key, doc(1))
    discover, poller, _, _ = _discover(registry.url, key, wait=300.0)
    task = asyncio.create_task(discover.run())
    await _changed(discover, 0)
    await eventually(lambda: poller.requests == 2)  # the blocking query is in flight
    await asyncio.sleep(0.1)
    began = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - began < 1.0
    assert poller._client is None  # connections released


async def test_registry_down_keeps_last_good_set_and_recovers_within_one_backoff_step(
    registry_factory: Callable[[], DevRegistry],
) -> None:
    reg = registry_factory()
    key = _key()
    reg.put(key, orjson.dumps(DOC_A))
    retry_max = 0.5
    discover, _, sink, metrics = _discover(reg.url, key, wait=300.0, retry_initial=0.05, retry_max=retry_max)
    task = asyncio.create_task(discover.run())
    try:
        good = await _changed(discover, 0)
        reg.kill()  # gone without a goodbye: the pending query breaks, reconnects are refused
        down = 3.0
        await asyncio.sleep(down)
        assert discover.snapshot is good and [s.as_json() for s in discover.services] == DOC_A
        assert not discover.monitor()["healthy"]
        failures = discover.failures
        assert failures >= 3
        failed_lines = [line for line in log_lines(sink) if line["msg"] == "discovery poll failed"]
        assert 1 <= len(failed_lines) <= math.floor(math.log2(failures)) + 2  # bounded: 1, 2, 4, 8, ...
        assert len(sink.lines) <= 12

        reg.start()  # same port, same data dir: the key is still there
        reg.put(key, orjson.dumps(DOC_B))
        returned = time.monotonic()
        snap = await _changed(discover, good.version, timeout=10)
        took = time.monotonic() - returned
        assert [s.as_json() for s in snap.services] == DOC_B
        assert took <= retry_max + 1.0, took  # one backoff step (plus a request)
        assert any(line["msg"] == "discovery recovered" for line in log_lines(sink))
        transport = metrics.get_sample_value("stator_discovery_errors_total", {"reason": "transport"}) or 0
        assert transport >= failures
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
