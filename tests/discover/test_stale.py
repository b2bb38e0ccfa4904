"""Defect 9 of issue 13: a registry that restarted without its data must not empty the services set.

A key missing right after the source's index went backwards (Consul ``X-Consul-Index``, etcd store revision) is
data loss, not a deletion: the watcher keeps the last good set in state ``stale`` — once in the log, in
``/monitor`` (the discovery section is :meth:`Discover.monitor`) and in ``stator_discovery_stale`` — until the
key is published again. A deletion seen with an advancing index still empties the set.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient
from stator.discover import ConsulKVPoller, Discover, EtcdPoller, TokenBucket
from stator.discover.worker import Snapshot
from tests.discover.conftest import (
    DOC_A,
    DOC_B,
    DevRegistry,
    Etcd,
    Handler,
    RawFake,
    doc,
    http_response,
    kv_body,
    log_lines,
    memory_logger,
)

STALE_MSG = (
    "services key missing after the registry's index went backwards (restarted without its data?);"
    " keeping the last good set until it is published again"
)
MakeFake = Callable[[Handler], Awaitable[RawFake]]


def _watch(poller: Any) -> tuple[Discover, Any, CollectorRegistry]:
    logger, sink = memory_logger()
    metrics = CollectorRegistry()
    return Discover(poller, logger=logger, registry=metrics, retry_initial=0.05, retry_max=0.3), sink, metrics


async def _state(discover: Discover, state: str, timeout: float = 10.0) -> Snapshot:
    async with asyncio.timeout(timeout):
        while discover.snapshot.state != state:
            await discover.changed(discover.snapshot.version)
    return discover.snapshot


def _uris(snap: Snapshot) -> list[str]:
    return [s.uri for s in snap.services]


def _stale_metric(metrics: CollectorRegistry) -> float | None:
    return metrics.get_sample_value("stator_discovery_stale")


# -- the rules, against scripted Consul answers ------------------------------------------------------------------


def _scripted(answers: list[tuple[int, bytes | None, int]]) -> Handler:
    """(status, value, X-Consul-Index) in order; the last one repeats, each answer held 20 ms like a short wait."""

    async def handle(request: Any) -> bytes:
        status, value, index = answers.pop(0) if len(answers) > 1 else answers[0]
        if len(answers) == 1 and request.query.get("index"):
            await asyncio.sleep(0.02)
        headers = {"X-Consul-Index": str(index)}
        if status == 200:
            return http_response(200, kv_body("services/prod", value, modify_index=index), headers)
        return http_response(404, b"", headers)

    return handle


async def test_missing_key_with_index_backwards_keeps_the_set_then_recovers_and_deletes(raw_fake: MakeFake) -> None:
    fake = await raw_fake(
        _scripted(
            [
                (200, orjson.dumps(DOC_A), 50),
                (404, None, 3),  # the registry came back empty: the index went from 50 to 3
                (404, None, 4),  # still missing, index advancing in the registry's new life: still stale
                (404, None, 5),
                (200, orjson.dumps(DOC_B), 6),  # published again
                (404, None, 7),  # a deletion with an advancing index: the set empties
            ]
        )
    )
    poller = ConsulKVPoller(lambda: HTTPClient(fake.url), "services/prod", wait=1.0, limiter=TokenBucket(100, 0))
    discover, sink, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        good = await _state(discover, "ok")
        stale = await _state(discover, "stale")
        assert stale.services == good.services and stale.index == good.index == 50
        assert stale.updated_at == good.updated_at and stale.version == good.version + 1
        assert orjson.loads(stale.body)["state"] == "stale"  # what /services shows
        assert _stale_metric(metrics) == 1
        assert metrics.get_sample_value("stator_discovery_source_resets_total") == 1
        shown = discover.monitor()
        assert shown["state"] == "stale" and shown["stale"] is True and shown["stale_since"] is not None
        assert shown["services"] == len(DOC_A) and shown["source_resets"] == 1
        assert shown["poller"]["index_resets"] == 1

        back = await _state(discover, "ok")
        assert _uris(back) == [s["uri"] for s in DOC_B] and _stale_metric(metrics) == 0
        assert not discover.monitor()["stale"]
        gone = await _state(discover, "missing")
        assert gone.services == () and gone.index == 7 and _stale_metric(metrics) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    msgs = [line["msg"] for line in log_lines(sink)]
    assert msgs.count(STALE_MSG) == 1  # said once, though the key stayed missing for several answers
    assert msgs.count("services key published again; no longer stale") == 1
    [line] = [line for line in log_lines(sink) if line["msg"] == STALE_MSG]
    assert line["level"] == "warning" and line["kept_services"] == len(DOC_A) and line["index"] == 3


async def test_index_backwards_with_the_key_present_is_followed(raw_fake: MakeFake) -> None:
    # A restored snapshot: the index went back but the key is there (older content): that is the registry's truth.
    fake = await raw_fake(_scripted([(200, doc(1), 50), (200, doc(2), 10)]))
    poller = ConsulKVPoller(lambda: HTTPClient(fake.url), "services/prod", wait=1.0, limiter=TokenBucket(100, 0))
    discover, _, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        first = await _state(discover, "ok")
        snap = await asyncio.wait_for(discover.changed(first.version), 5)
        assert snap.state == "ok" and snap.index == 10 and snap.services[0].capabilities[0].capacity == 2
        assert _stale_metric(metrics) == 0 and metrics.get_sample_value("stator_discovery_source_resets_total") == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_missing_key_before_any_good_set_is_just_missing(raw_fake: MakeFake) -> None:
    fake = await raw_fake(_scripted([(404, None, 50), (404, None, 3)]))
    poller = ConsulKVPoller(lambda: HTTPClient(fake.url), "services/prod", wait=1.0, limiter=TokenBucket(100, 0))
    discover, _, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        await _state(discover, "missing")
        await asyncio.sleep(0.2)  # several answers, one with the index backwards: nothing to keep
        assert discover.snapshot.state == "missing" and _stale_metric(metrics) == 0
        assert poller.resets == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- against the real dev registry, restarted empty ------------------------------------------------------------


def _wipe(reg: DevRegistry) -> None:
    reg.kill()
    shutil.rmtree(reg.data_dir, ignore_errors=True)
    reg.data_dir.mkdir(parents=True)


async def test_dev_registry_restarted_empty_keeps_the_set(registry_factory: Callable[[], DevRegistry]) -> None:
    reg = registry_factory()
    key = "stator/services"
    for n in range(5):  # an index well above what an empty registry starts with
        reg.put(f"other/{n}", b"x")
    reg.put(key, orjson.dumps(DOC_A))
    poller = ConsulKVPoller(lambda: HTTPClient(reg.url), key, wait=30.0, limiter=TokenBucket(3, 0.01))
    discover, sink, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        good = await _state(discover, "ok")
        _wipe(reg)
        await asyncio.to_thread(reg.start)  # same port, no data: the index starts over
        assert reg.index(key) < (good.index or 0)
        stale = await _state(discover, "stale")
        assert stale.services == good.services and _stale_metric(metrics) == 1
        await asyncio.sleep(0.5)  # blocking queries go on against the empty registry: no more lines, still stale
        assert discover.snapshot.state == "stale"
        assert [line["msg"] for line in log_lines(sink)].count(STALE_MSG) == 1

        reg.put(key, orjson.dumps(DOC_B))  # the operator (or a seeding job) publishes again
        back = await _state(discover, "ok")
        assert _uris(back) == [s["uri"] for s in DOC_B] and _stale_metric(metrics) == 0
        reg.delete(key)  # an ordinary deletion, index advancing: the set empties
        gone = await _state(discover, "missing")
        assert gone.services == ()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- etcd: a store restarted empty is behind the revision a resumed watch asks for --------------------------------


@pytest.mark.external
async def test_etcd_restarted_empty_keeps_the_set(etcd_factory: Callable[[], Etcd]) -> None:
    server = etcd_factory()
    key = "/stator/services"
    for n in range(5):
        server.put(f"/other/{n}", b"x")
    server.put(key, orjson.dumps(DOC_A))
    poller = EtcdPoller(lambda: HTTPClient(server.url), key, wait=30.0)
    discover, sink, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        good = await _state(discover, "ok")
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.data_dir, ignore_errors=True)
        await asyncio.to_thread(server.start)  # same ports, empty store: revision 1
        # Without the check, the resumed watch would wait for a revision this store has not reached: silence.
        stale = await _state(discover, "stale", timeout=15)
        assert stale.services == good.services and _stale_metric(metrics) == 1
        assert poller.resets == 1 and discover.monitor()["poller"]["revision_resets"] == 1
        assert [line["msg"] for line in log_lines(sink)].count(STALE_MSG) == 1

        server.put(key, orjson.dumps(DOC_B))
        back = await _state(discover, "ok")
        assert _uris(back) == [s["uri"] for s in DOC_B] and _stale_metric(metrics) == 0
        server.delete(key)
        assert (await _state(discover, "missing")).services == ()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.external
async def test_etcd_compaction_is_not_a_reset(etcd_factory: Callable[[], Etcd]) -> None:
    server = etcd_factory()
    key = "/stator/services"
    server.put(key, orjson.dumps(DOC_A))
    poller = EtcdPoller(lambda: HTTPClient(server.url), key, wait=30.0)
    discover, _, metrics = _watch(poller)
    task = asyncio.create_task(discover.run())
    try:
        await _state(discover, "ok")
        await poller.aclose()  # disconnect; the watch will resume from the last revision seen
        revision = server.delete(key)
        server.put("/other", b"x")
        server.compact(revision + 1)  # the deletion's revision is compacted away: a fresh read follows
        gone = await _state(discover, "missing")
        assert gone.services == () and poller.resets == 0 and _stale_metric(metrics) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
