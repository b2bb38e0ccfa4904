"""Real processes: three reference-service backends registered with the dev registry (HTTP checks every second)
and a front instance forwarding POST /sum to them through ``service.upstream``, under steady load.

SIGKILL a backend: the clients of the front see no failed call, and the front stops sending to the dead
instance within one health-check interval. Start a fourth: it gets traffic within a second of registering."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServiceProcess
from tests.registry.conftest import FAST, RegistryThread

REFAPP = [sys.executable, "-m", "stator", "run"]
CHECK_INTERVAL = 1.0


@pytest.fixture
def registry() -> Iterator[RegistryThread]:
    reg = RegistryThread(**FAST).start()
    yield reg
    reg.stop()


def backend_env(registry: RegistryThread, n: int) -> dict[str, str]:
    return {
        "STATOR_SERVICE_NAME": "adder",
        "STATOR_SERVICE_ID": f"adder-{n}",
        "STATOR_SERVICE_ADDRESS": "127.0.0.1",
        "STATOR_REGISTRY": "consul",
        "STATOR_CONSUL_ADDR": registry.url,
        "STATOR_ROSTER_CHECK_INTERVAL": f"{CHECK_INTERVAL}s",
        "STATOR_ROSTER_CHECK_TIMEOUT": "500ms",
        "STATOR_HTTP_ACCESS_LOG": "false",
    }


def attempts_to(front: str, instance: str) -> float:
    text = httpx.get(f"{front}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "stator_upstream_requests":
            return sum(s.value for s in family.samples if s.labels.get("instance") == instance)
    return 0.0


class Clients:
    """Four client loops calling the front; every answer is recorded (time, status, X-Served-By)."""

    def __init__(self, front: str) -> None:
        self.front = front
        self.answers: list[tuple[float, int, str]] = []
        self.errors: list[str] = []
        self.tasks = [asyncio.create_task(self._loop(k)) for k in range(4)]

    async def _loop(self, k: int) -> None:
        async with httpx.AsyncClient(base_url=self.front, timeout=10) as client:
            while True:
                try:
                    r = await client.post("/sum", json={"a": k + 1, "b": 2})
                    self.answers.append((time.time(), r.status_code, r.headers.get("X-Served-By", "")))
                    if r.status_code != 200 or r.json() != {"v": k + 3}:
                        self.errors.append(f"{r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                await asyncio.sleep(0.01)

    def served(self, since: float) -> set[str]:
        return {by for at, _, by in self.answers if at >= since}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


async def test_sigkill_a_backend_under_load_and_add_one(registry: RegistryThread, spawn: Any) -> None:
    # (registry first: it is torn down after the processes, which deregister from it)
    backends: list[ServiceProcess] = [spawn(REFAPP, **backend_env(registry, n)) for n in range(3)]
    front: ServiceProcess = spawn(
        REFAPP,
        STATOR_SERVICE_NAME="front",
        STATOR_UPSTREAM_SERVICE="adder",
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_HTTP_ACCESS_LOG="false",
    )
    for b in backends:
        await asyncio.to_thread(b.wait_for, "registered")
    url = await asyncio.to_thread(lambda: front.base_url)
    clients = Clients(url)
    try:
        await until(lambda: clients.served(0) == {"adder-0", "adder-1", "adder-2"}, 10, "balancing over three")
        front_own = (await asyncio.to_thread(httpx.get, f"{url}/hello")).headers["X-Served-By"]
        assert front_own.startswith("front-")  # the front's own answers name the front

        backends[1].proc.send_signal(signal.SIGKILL)
        killed = time.time()
        await asyncio.sleep(CHECK_INTERVAL + 0.5)  # one health-check interval, and the held query's answer
        before = await asyncio.to_thread(attempts_to, url, "adder-1")
        await asyncio.sleep(1.0)
        after = await asyncio.to_thread(attempts_to, url, "adder-1")
        assert after == before  # no attempt goes to the dead instance any more
        assert clients.served(killed + 0.1) == {"adder-0", "adder-2"}
        removed = await asyncio.to_thread(front.wait_for, "upstream instances changed", 5.0, removed=["adder-1"])
        assert _ts(removed) - killed < CHECK_INTERVAL + 0.5

        backends.append(spawn(REFAPP, **backend_env(registry, 3)))
        registered = _ts(await asyncio.to_thread(backends[3].wait_for, "registered"))
        await until(lambda: "adder-3" in clients.served(0), 10, "the new backend gets traffic")
        first = min(at for at, _, by in clients.answers if by == "adder-3")
        assert first - registered < 1.0
        await asyncio.sleep(0.3)
    finally:
        await clients.stop()
    assert not clients.errors, clients.errors[:5]
    assert len(clients.answers) > 200
    monitor = (await asyncio.to_thread(httpx.get, f"{url}/monitor")).json()["upstreams"]["adder"]
    assert sorted(i["id"] for i in monitor["instances"]) == ["adder-0", "adder-2", "adder-3"]
    assert monitor["discovery"]["source"] == "consul"


def _ts(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00")).timestamp()
