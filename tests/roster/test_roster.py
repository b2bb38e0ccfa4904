"""The roster's behaviour against a scriptable in-memory registrar: when it registers, how it trues up, how it
backs off, what it logs (one line per state change), how it deregisters at shutdown, what it exports."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stator.roster import Instance, Registrar, Roster

from .conftest import INSTANCE, FakeRegistrar, eventually, log_lines, memory_logger, messages

ROSTER_MSGS = {"registered", "registration lost", "registry unreachable", "registry reachable again", "deregistered"}


class Harness:
    def __init__(self, registrar: FakeRegistrar, **options: Any) -> None:
        self.registrar = registrar
        self.logger, self.sink = memory_logger()
        self.metrics = CollectorRegistry()
        self.instance: Instance | None = INSTANCE
        self.ready = True
        self.readiness_calls = 0
        opts = {"interval": 0.05, "retry_initial": 0.01, "retry_max": 0.05, "deregister_timeout": 1.0}
        opts.update(options)
        self.roster = Roster(
            registrar, lambda: self.instance, self._readiness, self.logger, self.metrics, wait_poll=0.01, **opts
        )
        self.task: asyncio.Task[None] | None = None

    async def _readiness(self) -> tuple[bool, str]:
        self.readiness_calls += 1
        return self.ready, "ready" if self.ready else "db: down"

    def start(self) -> Harness:
        self.task = asyncio.create_task(self.roster.run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def msgs(self) -> list[str]:
        return [m for m in messages(self.sink) if m in ROSTER_MSGS]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.get_sample_value(name, {"registry": "fake", **labels})


@pytest.fixture
async def harness() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(registrar: FakeRegistrar | None = None, **options: Any) -> Harness:
        h = Harness(registrar or FakeRegistrar(), **options)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()


def test_fake_registrar_satisfies_the_protocol() -> None:
    assert isinstance(FakeRegistrar(), Registrar)


async def test_registers_only_once_listening_and_ready(harness: Callable[..., Harness]) -> None:
    h = harness()
    h.instance = None  # the HTTP server is not listening yet
    h.ready = False
    h.start()
    await asyncio.sleep(0.1)
    assert h.registrar.calls == []
    h.instance = INSTANCE  # listening, but not ready: still nothing
    await asyncio.sleep(0.1)
    assert h.registrar.calls == []
    assert h.roster.snapshot()["state"] == "waiting"
    h.ready = True
    await eventually(lambda: INSTANCE.id in h.registrar.entries)
    assert h.msgs() == ["registered"]
    line = next(line for line in log_lines(h.sink) if line["msg"] == "registered")
    assert line["registry"] == "fake" and line["id"] == INSTANCE.id and line["port"] == INSTANCE.port
    assert h.sample("stator_registration_up") == 1.0
    assert h.sample("stator_registration_registrations_total") == 1.0


async def test_trueup_reregisters_what_the_registry_lost(harness: Callable[..., Harness]) -> None:
    h = harness().start()
    await eventually(lambda: INSTANCE.id in h.registrar.entries)
    await eventually(lambda: len(h.registrar.ops("present")) >= 2)  # true-ups run every interval
    h.registrar.entries.clear()  # the registry restarted empty
    await eventually(lambda: INSTANCE.id in h.registrar.entries)
    assert h.msgs() == ["registered", "registration lost", "registered"]
    assert h.sample("stator_registration_lost_total") == 1.0
    assert h.sample("stator_registration_registrations_total") == 2.0
    # Presence checks are spaced by the interval, not a tight loop.
    presents = h.registrar.ops("present")
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(presents))


async def test_failures_back_off_and_log_once_per_state_change(harness: Callable[..., Harness]) -> None:
    registrar = FakeRegistrar()
    registrar.fail = ConnectionError("connection refused")
    h = harness(registrar, retry_initial=0.01, retry_max=0.08).start()
    await asyncio.sleep(0.6)
    attempts = registrar.ops("register")
    # Capped exponential backoff: 0.6 s allows a handful of attempts at 0.01, 0.02, 0.04, 0.08, 0.08, ... (with
    # jitter down to half); a tight loop would make thousands.
    assert 3 <= len(attempts) <= 30, len(attempts)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.004
    assert h.msgs() == ["registry unreachable"]  # one line for the whole outage
    assert h.sample("stator_registration_failures_total", operation="register") == len(attempts)
    assert h.sample("stator_registration_up") == 0.0
    snap = h.roster.snapshot()
    assert snap["state"] == "unreachable" and snap["consecutive_failures"] == len(attempts)
    assert snap["last_error"] == "ConnectionError: connection refused"

    registrar.fail = None  # the registry comes up
    await eventually(lambda: INSTANCE.id in registrar.entries)
    assert h.msgs() == ["registry unreachable", "registered"]
    registered = next(line for line in log_lines(h.sink) if line["msg"] == "registered")
    assert registered["after_failures"] == len(attempts)

    registrar.fail = TimeoutError()  # a registered instance loses its registry for a while ...
    await eventually(lambda: h.roster.state == "unreachable")
    await asyncio.sleep(0.3)
    registrar.fail = None  # ... which comes back with its state intact
    await eventually(lambda: h.roster.state == "registered")
    assert h.msgs() == ["registry unreachable", "registered", "registry unreachable", "registry reachable again"]
    assert h.sample("stator_registration_up") == 1.0
    assert h.sample("stator_registration_registrations_total") == 1.0  # no needless re-registration
    assert h.sample("stator_registration_last_success_timestamp_seconds") == pytest.approx(time.time(), abs=5)


async def test_failures_never_stop_the_worker(harness: Callable[..., Harness]) -> None:
    registrar = FakeRegistrar()
    registrar.fail = RuntimeError("boom")
    h = harness(registrar).start()
    await asyncio.sleep(0.2)
    assert h.task is not None and not h.task.done()


async def test_heartbeat_reports_readiness_and_reregisters_on_loss(harness: Callable[..., Harness]) -> None:
    registrar = FakeRegistrar(heartbeat_interval=0.02)
    h = harness(registrar, interval=10.0).start()  # true-up far away: only heartbeats run
    await eventually(lambda: len(registrar.beats) >= 2)
    assert registrar.beats[-1] is True
    h.ready = False
    await eventually(lambda: registrar.beats[-1] is False)
    h.ready = True
    registrar.entries.clear()  # e.g. the Consul agent answered 404 to a TTL update
    await eventually(lambda: h.sample("stator_registration_registrations_total") == 2.0)
    assert h.msgs() == ["registered", "registration lost", "registered"]
    assert registrar.ops("present") == []


async def test_before_drain_deregisters_and_stops_registering(harness: Callable[..., Harness]) -> None:
    h = harness().start()
    await eventually(lambda: INSTANCE.id in h.registrar.entries)
    await h.roster.before_drain()
    assert INSTANCE.id not in h.registrar.entries
    assert h.msgs()[-1] == "deregistered"
    assert h.sample("stator_registration_up") == 0.0
    calls = len(h.registrar.calls)
    await asyncio.sleep(0.2)  # several intervals: no true-up may re-register a deregistered instance
    assert len(h.registrar.calls) == calls
    await h.stop()
    assert h.registrar.closed
    assert h.roster.snapshot()["state"] == "deregistered"


async def test_before_drain_cancels_a_hanging_registration(harness: Callable[..., Harness]) -> None:
    registrar = FakeRegistrar()
    registrar.hang = True
    h = harness(registrar, deregister_timeout=0.3).start()
    await eventually(lambda: registrar.ops("register"))
    began = time.monotonic()
    await h.roster.before_drain()  # register hangs, deregister hangs too: bounded by the timeout
    assert time.monotonic() - began < 2.0
    assert registrar.ops("deregister")
    assert "deregistration timed out" in messages(h.sink)
    assert h.sample("stator_registration_failures_total", operation="deregister") == 1.0


async def test_deregistration_is_retried_within_its_timeout(harness: Callable[..., Harness]) -> None:
    registrar = FakeRegistrar()
    h = harness(registrar).start()
    await eventually(lambda: INSTANCE.id in registrar.entries)
    registrar.fail = ConnectionError("reset")
    registrar.fail_ops = {"deregister"}
    drain = asyncio.create_task(h.roster.before_drain())
    await eventually(lambda: len(registrar.ops("deregister")) >= 2)
    registrar.fail = None
    await drain
    assert INSTANCE.id not in registrar.entries
    text = messages(h.sink)
    assert text.count("deregistration failed, retrying") == 1
    line = next(line for line in log_lines(h.sink) if line["msg"] == "deregistered")
    assert line["attempts"] >= 3


async def test_nothing_to_deregister_before_the_first_attempt(harness: Callable[..., Harness]) -> None:
    h = harness()
    h.ready = False
    h.start()
    await asyncio.sleep(0.05)
    await h.roster.before_drain()
    h.ready = True
    await asyncio.sleep(0.1)
    assert h.registrar.calls == []  # neither a deregistration nor a late registration
    assert "deregistered" not in messages(h.sink)


async def test_snapshot_shows_the_registration(harness: Callable[..., Harness]) -> None:
    h = harness().start()
    await eventually(lambda: h.roster.state == "registered")
    snap = h.roster.snapshot()
    assert snap["registry"] == "fake"
    assert snap["endpoint"] == "fake://registry"
    assert snap["registered"] is True
    assert snap["instance"]["id"] == INSTANCE.id
    assert snap["registrations"] == 1
    assert snap["failures"] == 0
    assert snap["interval_seconds"] == 0.05
    assert snap["next_call_in_seconds"] is not None


async def test_no_call_starts_once_deregistration_began(harness: Callable[..., Harness]) -> None:
    """Shutdown may begin while a heartbeat waits for readiness: that heartbeat must not be sent afterwards."""
    registrar = FakeRegistrar(heartbeat_interval=0.02)
    h = harness(registrar, interval=10.0)
    gate = asyncio.Event()
    waiting = asyncio.Event()

    async def slow_readiness() -> tuple[bool, str]:
        if INSTANCE.id in registrar.entries:  # registered: the heartbeat's readiness evaluation hangs
            waiting.set()
            await gate.wait()
        return True, "ready"

    h.roster.readiness = slow_readiness
    h.start()
    await asyncio.wait_for(waiting.wait(), 5)
    await h.roster.before_drain()
    calls = list(registrar.calls)
    gate.set()
    await asyncio.sleep(0.1)
    assert registrar.calls == calls and calls[-1][0] == "deregister"
    assert registrar.beats == []
