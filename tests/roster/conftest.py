"""Fixtures for registration: a scriptable fake registrar, the dev registry (in-process and as a process), real
etcd, and a misbehaving proxy. The registry and etcd helpers are the registry's and discovery's own, reused."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stator.logs import Logger, MemorySink
from stator.roster import Instance
from tests.conftest import ServiceProcess
from tests.externals import require_tool
from tests.processes import DevRegistry, Etcd, free_port
from tests.registry.conftest import FAST, RegistryThread

from .chaos import ChaosProxy

__all__ = ["ChaosProxy", "DevRegistry", "Etcd", "free_port"]

INSTANCE = Instance(
    id="svc-abc1234",
    name="svc",
    address="127.0.0.1",
    port=8087,
    tags=("metrics",),
    meta={"version": "1.0.0", "run_id": "abc1234", "metrics_path": "/metrics"},
    health_url="http://127.0.0.1:8087/-/ready",
)


def memory_logger(level: Any = "info") -> tuple[Logger, MemorySink]:
    sink = MemorySink()
    return Logger(app_id="t", run_id="r", sink=sink, level=level), sink


def log_lines(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.lines]


def messages(sink: MemorySink) -> list[str]:
    return [str(line["msg"]) for line in log_lines(sink)]


async def eventually(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_until(check: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


class FakeRegistrar:
    """An in-memory registry behind the Registrar protocol; calls can be made to fail or hang."""

    kind = "fake"
    endpoint = "fake://registry"

    def __init__(self, heartbeat_interval: float | None = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.entries: set[str] = set()
        self.calls: list[tuple[str, float]] = []
        self.beats: list[bool] = []
        self.fail: Exception | None = None
        self.fail_ops: set[str] | None = None  # None: every operation fails while ``fail`` is set
        self.hang = False
        self.closed = False

    def ops(self, name: str) -> list[float]:
        return [at for op, at in self.calls if op == name]

    async def _enter(self, op: str) -> None:
        self.calls.append((op, time.monotonic()))
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None and (self.fail_ops is None or op in self.fail_ops):
            raise self.fail

    async def register(self, instance: Instance) -> None:
        await self._enter("register")
        self.entries.add(instance.id)

    async def deregister(self, instance: Instance) -> None:
        await self._enter("deregister")
        self.entries.discard(instance.id)

    async def present(self, instance: Instance) -> bool:
        await self._enter("present")
        return instance.id in self.entries

    async def heartbeat(self, instance: Instance, ready: bool, note: str) -> bool:
        await self._enter("heartbeat")
        self.beats.append(ready)
        return instance.id in self.entries

    async def aclose(self) -> None:
        self.closed = True


def count(proc: ServiceProcess, msg: str) -> int:
    return sum(1 for m in proc.messages() if m == msg)


def wait_count(proc: ServiceProcess, msg: str, n: int, timeout: float) -> None:
    """Wait until ``proc`` has logged ``msg`` at least ``n`` times."""
    deadline = time.monotonic() + timeout
    while count(proc, msg) < n:
        if time.monotonic() > deadline or proc.proc.poll() is not None:
            tail = "\n".join(r.decode(errors="replace").rstrip()[:400] for r in proc.raw[-30:])
            raise AssertionError(f"{msg!r} logged {count(proc, msg)} times, wanted {n} within {timeout}s:\n{tail}")
        time.sleep(0.05)


@pytest.fixture
def registry() -> Iterator[RegistryThread]:
    """The dev registry in-process (its own loop in a thread), with test timings."""
    reg = RegistryThread(**FAST).start()
    yield reg
    reg.stop()


@pytest.fixture
def dev_registry(tmp_path: Path) -> Iterator[Callable[[int], DevRegistry]]:
    """Start ``python -m stator.registry.cli`` on a given port (a real process, restartable)."""
    made: list[DevRegistry] = []

    def make(port: int) -> DevRegistry:
        reg = DevRegistry(tmp_path / f"registry{len(made)}", port)
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.stop()


def restart_empty(reg: DevRegistry) -> None:
    """Stop the registry, wipe its data dir, start it again on the same port: a registry that lost everything."""
    reg.stop()
    shutil.rmtree(reg.data_dir, ignore_errors=True)
    reg.start()


def restart_etcd_empty(server: Etcd) -> None:
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)
    server.start()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[Etcd]:
    """A real etcd on loopback random ports (per test: tests restart and wipe it)."""
    server = Etcd(require_tool("etcd"), tmp_path / "etcd-data")
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[Callable[[int], ChaosProxy]]:
    made: list[ChaosProxy] = []

    def make(upstream_port: int) -> ChaosProxy:
        p = ChaosProxy(upstream_port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
