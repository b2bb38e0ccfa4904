"""Instances discovered for real: the dev registry's health endpoint with blocking queries (a new instance gets
traffic within a second, no polling delay), a registry killed and brought back, an answer that is garbage, and
real etcd with the roster's key layout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from stator.upstream import Upstream
from tests.discover.conftest import FakeRequest, RawFake, http_response
from tests.externals import require_tool
from tests.processes import DevRegistry, Etcd, free_port
from tests.registry.conftest import FAST, RegistryThread
from tests.roster.conftest import restart_empty

from .conftest import Backend, backends, caller, eventually

FAST_RETRY = {"STATOR_UPSTREAM_RETRY_INITIAL": "100ms", "STATOR_UPSTREAM_RETRY_MAX": "300ms"}


def register(registry_url: str, backend: Backend) -> None:
    port = int(backend.address.rsplit(":", 1)[1])
    body = {"ID": backend.name, "Name": "be", "Address": "127.0.0.1", "Port": port}
    httpx.put(f"{registry_url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()


def deregister(registry_url: str, backend: Backend) -> None:
    httpx.put(f"{registry_url}/v1/agent/service/deregister/{backend.name}", timeout=5).raise_for_status()


@pytest.fixture
def registry() -> Iterator[RegistryThread]:
    reg = RegistryThread(**FAST).start()
    yield reg
    reg.stop()


class Load:
    """Calls in a loop from a background task; records who answered and any failure."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.served: list[tuple[float, str]] = []
        self.failures: list[BaseException] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                response = await self.up.get("/work")
                assert response.status_code == 200, response.text
                self.served.append((time.monotonic(), response.json()["by"]))
            except Exception as exc:
                self.failures.append(exc)
            await asyncio.sleep(0.005)

    def since(self, t: float) -> set[str]:
        return {by for at, by in self.served if at >= t}

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_consul_blocking_query_brings_a_new_instance_within_a_second(registry: RegistryThread) -> None:
    async with backends("a", "b", "c") as (a, b, c), caller({"STATOR_CONSUL_ADDR": registry.url}) as cl:
        register(registry.url, a)
        register(registry.url, b)
        up = cl.hub.get("be", discovery="consul")
        load = Load(up)
        try:
            await eventually(lambda: load.since(0) == {"a", "b"}, timeout=5)
            registered = time.monotonic()
            await asyncio.to_thread(register, registry.url, c)
            await eventually(lambda: "c" in load.since(registered), timeout=5)
            first = min(at for at, by in load.served if by == "c")
            assert first - registered < 1.0  # the held query answered at once: no polling interval
            await asyncio.to_thread(deregister, registry.url, b)
            gone = time.monotonic()
            await eventually(lambda: cl.logs("upstream instances changed")[-1]["removed"] == ["b"], timeout=5)
            await asyncio.sleep(0.2)
            assert "b" not in load.since(time.monotonic() - 0.1)
            assert time.monotonic() - gone < 2
            assert not load.failures
        finally:
            await load.stop()
        changes = cl.logs("upstream instances changed")
        assert [(x["added"], x["removed"]) for x in changes] == [(["a", "b"], []), (["c"], []), ([], ["b"])]
        poller = cl.service.monitor()["upstreams"]["be"]["discovery"]["poller"]
        assert poller["index"] > 1  # blocking queries, not polling


async def test_registry_killed_calls_continue_and_the_set_refreshes_when_it_is_back(tmp_path: Path) -> None:
    reg = DevRegistry(tmp_path / "registry", free_port())
    try:
        async with backends("a", "b", "c") as (a, b, c):
            env = {"STATOR_CONSUL_ADDR": reg.url, **FAST_RETRY}
            async with caller(env) as cl:
                register(reg.url, a)
                register(reg.url, b)
                up = cl.hub.get("be", discovery="consul")
                load = Load(up)
                try:
                    await eventually(lambda: load.since(0) == {"a", "b"}, timeout=5)
                    reg.kill()
                    killed = time.monotonic()
                    await eventually(lambda: cl.logs("upstream discovery failed"), timeout=5)
                    await asyncio.sleep(1.0)
                    assert load.since(killed) == {"a", "b"}  # the last known instances keep serving
                    failed_lines = len(cl.logs("upstream discovery failed"))
                    assert failed_lines <= 4  # bounded: 1st, 2nd, 4th ... failure, not one per poll

                    await asyncio.to_thread(restart_empty, reg)  # back, having lost everything
                    await asyncio.to_thread(register, reg.url, c)
                    back = time.monotonic()
                    await eventually(lambda: load.since(back + 0.5) == {"c"}, timeout=8)
                    assert not load.failures
                finally:
                    await load.stop()
                assert cl.logs("upstream discovery recovered")
    finally:
        reg.stop()


async def test_an_unusable_answer_keeps_the_last_good_set_and_is_logged_once() -> None:
    async with backends("a") as (a,):
        port = int(a.address.rsplit(":", 1)[1])
        good = orjson.dumps([{"Node": {"Address": "127.0.0.1"}, "Service": {"ID": "a", "Port": port}}])
        answers = [(good, 5), (b"<html>proxy error</html>", 6), (b'{"not": "a list"}', 7), (b"<html>proxy error", 8)]

        async def handler(request: FakeRequest) -> bytes:
            if answers:
                body, index = answers.pop(0)
                return http_response(200, body, {"X-Consul-Index": str(index)})
            await asyncio.sleep(30)  # then a long blocking query
            return http_response(200, good, {"X-Consul-Index": "9"})

        fake = await RawFake(handler).start()
        try:
            async with caller({"STATOR_CONSUL_ADDR": fake.url}) as cl:
                up = cl.hub.get("be", discovery="consul")
                assert (await up.get("/work")).json() == {"by": "a"}
                await eventually(lambda: not answers, timeout=5)
                await asyncio.sleep(0.1)
                assert (await up.get("/work")).status_code == 200
                unusable = cl.logs("upstream discovery answer unusable")
                assert len(unusable) == 3 and all(line["kept_instances"] == 1 for line in unusable)
                assert fake.requests[0].query == {"passing": "1"}
                assert fake.requests[1].query["index"] == "5"
        finally:
            await fake.close()


async def test_etcd_prefix_watch_over_the_roster_keys(tmp_path: Path) -> None:
    server = Etcd(require_tool("etcd"), tmp_path / "etcd")
    try:
        async with backends("a", "b", "c") as group:
            by_name = {x.name: x for x in group}

            def put(name: str, status: str = "passing") -> None:
                port = int(by_name[name].address.rsplit(":", 1)[1])
                doc = {"id": name, "name": "be", "address": "127.0.0.1", "port": port, "status": status}
                server.put(f"/stator/services/be/{name}", orjson.dumps(doc))

            put("a")
            put("b")
            server.put("/stator/services/bee/x", b"not ours: another service's prefix")
            async with caller({"STATOR_ETCD_ADDR": server.url, **FAST_RETRY}) as cl:
                up = cl.hub.get("be", discovery="etcd")
                load = Load(up)
                try:
                    await eventually(lambda: load.since(0) == {"a", "b"}, timeout=5)
                    added = time.monotonic()
                    await asyncio.to_thread(put, "c")
                    await eventually(lambda: "c" in load.since(added), timeout=5)
                    assert min(at for at, by in load.served if by == "c") - added < 1.0
                    await asyncio.to_thread(server.delete, "/stator/services/be/b")
                    await asyncio.to_thread(put, "a", "critical")  # not ready: out of the set
                    settled = time.monotonic()
                    await eventually(lambda: load.since(settled + 0.3) == {"c"}, timeout=5)
                    assert not load.failures
                finally:
                    await load.stop()
    finally:
        server.stop()
