"""The etcd poller against a real etcd on loopback: range then watch, resume after a disconnect without losing
or repeating changes, compaction, idle restarts, oversize values, and etcd restarting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient
from stator.discover import Discover, EtcdPoller, PollError
from tests.discover.conftest import DOC_A, DOC_B, Etcd, doc, log_lines, memory_logger

pytestmark = pytest.mark.external

_keys = iter(range(1_000_000))


def _key() -> str:
    return f"/stator/test/services-{next(_keys)}"


def _poller(etcd: Etcd, key: str, **kw: Any) -> EtcdPoller:
    return EtcdPoller(lambda: HTTPClient(etcd.url), key, **kw)


async def _poll(poller: EtcdPoller, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(poller.poll(), timeout)


async def test_range_then_watch_follows_puts_and_deletes(etcd: Etcd) -> None:
    key = _key()
    poller = _poller(etcd, key)
    missing = await _poll(poller)
    assert missing.data is None and poller.revision >= 1
    rev = etcd.put(key, doc(1))
    first = await _poll(poller)
    assert first.data == doc(1) and first.index == rev
    rev = etcd.put(key, b"")
    assert (await _poll(poller)).data == b""  # empty value: the key exists (the watcher rejects it as "empty")
    etcd.delete(key)
    gone = await _poll(poller)
    assert gone.data is None and gone.index > rev
    assert poller.watches == 1  # one stream for all of it
    await poller.aclose()


async def test_an_existing_value_is_read_first(etcd: Etcd) -> None:
    key = _key()
    rev = etcd.put(key, doc(7))
    poller = _poller(etcd, key)
    result = await _poll(poller)
    assert result.data == doc(7) and result.index == rev
    await poller.aclose()


async def test_watch_resumes_from_the_last_revision_after_a_disconnect(etcd: Etcd) -> None:
    key = _key()
    etcd.put(key, doc(1))
    poller = _poller(etcd, key)
    await _poll(poller)
    etcd.put(key, doc(2))
    assert (await _poll(poller)).data == doc(2)
    await poller.aclose()  # the connection goes away (as when the network drops)
    etcd.put(key, doc(3))
    etcd.put(key, doc(4))
    seen = []
    while not seen or seen[-1] != doc(4):
        seen.append((await _poll(poller)).data)
    # Changes made while disconnected arrive; nothing seen before comes back (no doc(2) again).
    assert doc(2) not in seen and seen[-1] == doc(4)
    assert poller.watches == 2 and poller.resyncs == 0
    await poller.aclose()


async def test_compacted_revisions_force_a_fresh_read(etcd: Etcd) -> None:
    key = _key()
    etcd.put(key, doc(1))
    poller = _poller(etcd, key)
    await _poll(poller)
    await poller.aclose()
    etcd.put(key, doc(2))
    rev = etcd.put(key, doc(3))
    etcd.compact(rev)
    with pytest.raises(PollError, match="compacted"):
        await _poll(poller)
    assert poller.resyncs == 1 and poller.revision == 0
    result = await _poll(poller)  # range read: the current value, then watching from there
    assert result.data == doc(3)
    etcd.put(key, doc(4))
    assert (await _poll(poller)).data == doc(4)
    await poller.aclose()


async def test_idle_watch_is_restarted_after_wait(etcd: Etcd) -> None:
    key = _key()
    etcd.put(key, doc(1))
    poller = _poller(etcd, key, wait=0.2)
    first = await _poll(poller)
    began = time.monotonic()
    same = await _poll(poller)  # nothing happens for `wait`: the same document, the watch is closed
    assert time.monotonic() - began >= 0.19
    assert same == first and poller.monitor()["watching"] is False
    etcd.put(key, doc(2))
    assert (await _poll(poller)).data == doc(2)  # reopened from the same revision: nothing missed
    assert poller.watches == 2
    await poller.aclose()


async def test_oversize_value_is_refused(etcd: Etcd) -> None:
    key = _key()
    poller = _poller(etcd, key, max_bytes=1000)
    await _poll(poller)
    etcd.put(key, b"[" + b" " * 5000 + b"]")
    with pytest.raises(PollError) as info:
        await _poll(poller)
    assert info.value.reason == "oversize"
    with pytest.raises(PollError) as info:
        await _poll(poller)  # starts over with a range read, which refuses it as well
    assert info.value.reason == "oversize"
    etcd.put(key, doc(1))
    assert (await _poll(poller)).data == doc(1)
    await poller.aclose()


async def test_watcher_survives_etcd_restart(etcd_factory: Callable[[], Etcd]) -> None:
    server = etcd_factory()
    key = _key()
    server.put(key, orjson.dumps(DOC_A))
    poller = _poller(server, key)
    logger, sink = memory_logger()
    registry = CollectorRegistry()
    discover = Discover(poller, logger=logger, registry=registry, retry_initial=0.05, retry_max=0.3)
    task = asyncio.create_task(discover.run())
    try:
        good = await asyncio.wait_for(discover.changed(0), 5)
        server.stop()
        await asyncio.sleep(1.0)
        assert discover.snapshot is good and discover.failures >= 1
        server.start()  # same ports, same data: revisions carry on
        server.put(key, orjson.dumps(DOC_B))
        snap = await asyncio.wait_for(discover.changed(good.version), 10)
        assert [s.as_json() for s in snap.services] == DOC_B
        assert any(line["msg"] == "discovery recovered" for line in log_lines(sink))
        assert poller.resyncs == 0  # resumed by revision, not re-read
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_shutdown_while_watching_is_prompt(etcd: Etcd) -> None:
    key = _key()
    etcd.put(key, doc(1))
    poller = _poller(etcd, key, wait=300.0)
    logger, _ = memory_logger()
    discover = Discover(poller, logger=logger)
    task = asyncio.create_task(discover.run())
    await asyncio.wait_for(discover.changed(0), 5)
    await asyncio.sleep(0.2)  # the watch stream is open and idle
    assert poller.monitor()["watching"] is True
    began = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - began < 1.0 and poller.monitor()["watching"] is False
