"""The watcher with a scripted poller: dedupe, validation, last-good-set, snapshots, change waits, metrics,
bounded error logs and backoff."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stator.discover import Discover, PollError, PollResult, TokenBucket
from stator.logs import MemorySink
from tests.discover.conftest import doc, eventually, log_lines, memory_logger

Step = PollResult | Exception | Callable[[], Any]


class ScriptedPoller:
    """Returns the scripted results in order, then blocks (like an idle blocking query)."""

    source = "fake"
    key = "svc"

    def __init__(self, *steps: Step) -> None:
        self.steps: asyncio.Queue[Step] = asyncio.Queue()
        for step in steps:
            self.steps.put_nowait(step)
        self.polls = 0
        self.closed = 0

    def push(self, *steps: Step) -> None:
        for step in steps:
            self.steps.put_nowait(step)

    async def poll(self) -> PollResult:
        self.polls += 1
        step = await self.steps.get()
        if isinstance(step, Exception):
            raise step
        if isinstance(step, PollResult):
            return step
        return step()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self.closed += 1

    def monitor(self) -> dict[str, Any]:
        return {"polls": self.polls}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def _start(
    poller: ScriptedPoller, **kw: Any
) -> tuple[Discover, asyncio.Task[None], MemorySink, CollectorRegistry]:
    logger, sink = memory_logger()
    registry = CollectorRegistry()
    discover = Discover(poller, logger=logger, registry=registry, **kw)
    task = asyncio.create_task(discover.run())
    return discover, task, sink, registry


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_publishes_dedupes_and_keeps_last_good_set() -> None:
    poller = ScriptedPoller(PollResult(doc(1), 10))
    discover, task, sink, registry = await _start(poller)
    assert discover.snapshot.version == 0 and discover.snapshot.state == "waiting"
    first = await asyncio.wait_for(discover.changed(0), 5)
    assert first.version == 1 and first.state == "ok" and first.index == 10
    assert first.services[0].capacity("resize") == 1

    # Same bytes again (a timed-out wait, another index): nothing published.
    poller.push(PollResult(doc(1), 10), PollResult(doc(1), 11))
    await eventually(lambda: poller.polls >= 4)
    assert discover.snapshot is first

    # Bad payloads: counted, logged once each (A, B, A again), last good set kept.
    bad_a, bad_b = b"[{", b'[{"uri": "http://x/", "capabilities": [{"name": "n", "capacity": -1}]}]'
    poller.push(PollResult(bad_a, 12), PollResult(bad_b, 13), PollResult(bad_a, 14), PollResult(bad_a, 15))
    await eventually(lambda: poller.polls >= 8)
    assert discover.snapshot is first
    invalid = [line for line in log_lines(sink) if line["msg"].startswith("invalid services document")]
    assert len(invalid) == 2 and "stack" not in invalid[0]
    assert "not valid JSON" in invalid[0]["error"] and "capacity" in invalid[1]["error"]
    assert value(registry, "stator_discovery_errors_total", reason="invalid") == 3  # A, B, A (A again = dedupe)
    assert discover.monitor()["invalid_payloads"] == 3

    # Empty value: its own reason.
    poller.push(PollResult(b"", 16))
    await eventually(lambda: value(registry, "stator_discovery_errors_total", reason="empty") == 1)
    assert discover.snapshot is first

    # A good change after bad ones is published.
    poller.push(PollResult(doc(2), 17))
    second = await asyncio.wait_for(discover.changed(1), 5)
    assert second.version == 2 and second.services[0].capacity("resize") == 2
    assert value(registry, "stator_discovery_updates_total") == 2
    assert value(registry, "stator_discovery_services") == 1
    assert value(registry, "stator_discovery_last_update_timestamp_seconds") == second.updated_at
    await _stop(task)
    assert poller.closed == 1


async def test_missing_key_is_a_state_with_an_empty_set() -> None:
    poller = ScriptedPoller(PollResult(None, 5))
    discover, task, sink, registry = await _start(poller)
    snap = await asyncio.wait_for(discover.changed(0), 5)
    assert snap.state == "missing" and snap.services == () and snap.index == 5
    poller.push(PollResult(None, 6))  # still missing: not published again
    await eventually(lambda: poller.polls >= 3)
    assert discover.snapshot is snap
    poller.push(PollResult(doc(1), 7), PollResult(None, 8))
    gone = await asyncio.wait_for(discover.changed(2), 5)
    assert gone.version == 3 and gone.state == "missing" and gone.services == ()
    assert sum(line["msg"] == "no services published yet" for line in log_lines(sink)) == 2
    assert value(registry, "stator_discovery_errors_total", reason="transport") == 0
    await _stop(task)


async def test_snapshots_are_immutable_values() -> None:
    poller = ScriptedPoller(PollResult(doc(1), 1))
    discover, task, _, _ = await _start(poller)
    snap = await asyncio.wait_for(discover.changed(0), 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.version = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.services[0].uri = "x"  # type: ignore[misc]
    assert isinstance(snap.services, tuple) and isinstance(snap.services[0].capabilities, tuple)
    assert discover.services is snap.services  # reading is an attribute load, not a copy
    await _stop(task)


async def test_updates_iterator_and_drain_release() -> None:
    poller = ScriptedPoller()
    discover, task, _, _ = await _start(poller)
    seen: list[int] = []

    async def follow() -> None:
        async for snap in discover.updates():
            seen.append(snap.services[0].capacity("resize"))

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    for n in (1, 2, 3):
        poller.push(PollResult(doc(n), n))
        await eventually(lambda n=n: seen[-1:] == [n])  # type: ignore[misc]
    waiter = asyncio.create_task(discover.changed(discover.snapshot.version))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await discover.before_drain()  # shutdown: long-polls and followers return at once
    assert (await asyncio.wait_for(waiter, 1)).version == 3
    await asyncio.wait_for(follower, 1)
    assert seen == [1, 2, 3]
    await _stop(task)


async def test_failures_back_off_log_bounded_and_recover() -> None:
    failures = 40
    poller = ScriptedPoller(PollResult(doc(1), 1))
    poller.push(*[PollError("transport", "connection refused") for _ in range(failures)])
    poller.push(PollError("http", "unexpected status code 500 with body: boom"))
    poller.push(PollResult(doc(2), 2))
    discover, task, sink, registry = await _start(poller, retry_initial=0.001, retry_max=0.002)
    await asyncio.wait_for(discover.changed(1), 10)
    lines = log_lines(sink)
    failed = [line for line in lines if line["msg"] == "discovery poll failed"]
    # 1, 2, 4, 8, 16, 32 of the transport streak, then the reason change: 7 lines for 41 failures.
    assert [line["failures"] for line in failed] == [1, 2, 4, 8, 16, 32, 41]
    assert failed[0]["level"] == "warning" and "stack" not in failed[0]
    recovered = [line for line in lines if line["msg"] == "discovery recovered"]
    assert len(recovered) == 1 and recovered[0]["failures"] == failures + 1
    assert value(registry, "stator_discovery_errors_total", reason="transport") == failures
    assert value(registry, "stator_discovery_errors_total", reason="http") == 1
    mon = discover.monitor()
    assert mon["healthy"] and mon["consecutive_failures"] == 0 and "500" in mon["last_error"]
    assert discover.backoff.attempts == 0  # reset by the success
    await _stop(task)


async def test_backoff_grows_between_failures() -> None:
    poller = ScriptedPoller(*[PollError("timeout", "slow") for _ in range(5)])
    discover, task, _, _ = await _start(poller, retry_initial=0.05, retry_max=0.2)
    await asyncio.sleep(0.3)
    # 0.05·[0.5,1] + 0.1·[0.5,1] + 0.2·[0.5,1] ... : far fewer than 5 polls fit in 0.3 s without backoff skipping
    assert 2 <= poller.polls <= 5
    assert discover.monitor()["consecutive_failures"] >= 2 and not discover.monitor()["healthy"]
    await _stop(task)


async def test_a_poller_bug_is_logged_with_stack_and_retried() -> None:
    poller = ScriptedPoller(RuntimeError("bug"), PollResult(doc(1), 1))
    discover, task, sink, registry = await _start(poller, retry_initial=0.001, retry_max=0.001)
    await asyncio.wait_for(discover.changed(0), 5)
    failed = next(line for line in log_lines(sink) if line["msg"] == "discovery poll failed")
    assert failed["level"] == "error" and "RuntimeError" in failed["stack"]
    assert value(registry, "stator_discovery_errors_total", reason="internal") == 1
    await _stop(task)


async def test_monitor_and_zeroed_error_series() -> None:
    poller = ScriptedPoller(PollResult(doc(1), 42))
    discover, task, _, registry = await _start(poller)
    await asyncio.wait_for(discover.changed(0), 5)
    mon = discover.monitor()
    assert mon["source"] == "fake" and mon["key"] == "svc" and mon["state"] == "ok"
    assert mon["services"] == 1 and mon["index"] == 42 and mon["poller"] == {"polls": mon["poller"]["polls"]}
    for reason in ("transport", "timeout", "http", "protocol", "oversize", "io", "invalid", "empty", "internal"):
        assert registry.get_sample_value("stator_discovery_errors_total", {"reason": reason}) == 0
    await _stop(task)


async def test_token_bucket_burst_then_spacing() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    bucket = TokenBucket(3, 1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await bucket.acquire()
    assert slept == []
    await bucket.acquire()
    await bucket.acquire()
    assert slept == [1.0, 1.0] and bucket.delayed == 2 and bucket.delay_total == 2.0
    now[0] += 10  # idle: refills up to the burst, not beyond
    for _ in range(3):
        await bucket.acquire()
    assert len(slept) == 2
    await bucket.acquire()
    assert slept[-1] == 1.0


async def test_token_bucket_wait_is_cancellable() -> None:
    bucket = TokenBucket(1, 300.0)
    await bucket.acquire()
    task = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
