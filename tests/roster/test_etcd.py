"""The etcd registrar against a real etcd (v3 JSON gateway): lease, keepalive, key layout, lost lease, revoke."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from stator.client import HTTPClient
from stator.roster import EtcdRegistrar, Registrar
from tests.externals import require_tool

from .conftest import INSTANCE, Etcd

pytestmark = pytest.mark.external

KEY = "/stator/services/svc/svc-abc1234"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_call(server: Etcd, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.url + path, json=body, timeout=5)
    response.raise_for_status()
    out: dict[str, Any] = response.json()
    return out


def etcd_get(server: Etcd, key: str) -> dict[str, Any] | None:
    """The key's entry (value decoded from JSON, lease as a string), or None."""
    kvs = etcd_call(server, "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
    if not kvs:
        return None
    entry = dict(kvs[0])
    entry["doc"] = orjson.loads(base64.b64decode(entry["value"]))
    return entry


def lease_ttl(server: Etcd, lease: str) -> int:
    return int(etcd_call(server, "/v3/lease/timetolive", {"ID": lease}).get("TTL", -1))


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for this module (starting one costs about a second); each test starts from an empty keyspace."""
    server = Etcd(require_tool("etcd"), tmp_path_factory.mktemp("etcd") / "data")
    yield server
    server.stop()


@pytest.fixture
async def etcd_registrar(etcd_server: Etcd) -> AsyncIterator[Callable[..., EtcdRegistrar]]:
    etcd_call(etcd_server, "/v3/kv/deleterange", {"key": b64("\0"), "range_end": b64("\0")})
    made: list[EtcdRegistrar] = []

    def make(**options: Any) -> EtcdRegistrar:
        registrar = EtcdRegistrar(HTTPClient(etcd_server.url, timeout=5), **options)
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        await registrar.aclose()


def test_etcd_registrar_satisfies_the_protocol() -> None:
    assert isinstance(EtcdRegistrar(HTTPClient("http://127.0.0.1:1")), Registrar)


async def test_register_puts_the_instance_under_a_lease(
    etcd_server: Etcd, etcd_registrar: Callable[..., EtcdRegistrar]
) -> None:
    registrar = etcd_registrar(prefix="/stator/services/", ttl=10.0)
    assert registrar.heartbeat_interval == pytest.approx(10 / 3)
    assert not await registrar.present(INSTANCE)
    await registrar.register(INSTANCE)
    assert await registrar.present(INSTANCE)
    entry = etcd_get(etcd_server, KEY)
    assert entry is not None and entry["lease"] == registrar.lease
    doc = entry["doc"]
    assert doc["id"] == "svc-abc1234" and doc["name"] == "svc"
    assert (doc["address"], doc["port"]) == ("127.0.0.1", 8087)
    assert doc["tags"] == ["metrics"] and doc["meta"]["metrics_path"] == "/metrics"
    assert doc["status"] == "passing"
    assert 0 < lease_ttl(etcd_server, str(registrar.lease)) <= 10


async def test_heartbeat_keeps_the_lease_and_publishes_readiness(
    etcd_server: Etcd, etcd_registrar: Callable[..., EtcdRegistrar]
) -> None:
    registrar = etcd_registrar(ttl=10.0)
    await registrar.register(INSTANCE)
    lease = str(registrar.lease)
    assert await registrar.heartbeat(INSTANCE, False, "db: down")
    entry = etcd_get(etcd_server, KEY)
    assert entry is not None and entry["doc"]["status"] == "critical" and entry["lease"] == lease
    revision = entry["mod_revision"]
    assert await registrar.heartbeat(INSTANCE, False, "db: down")  # unchanged readiness: no write
    entry = etcd_get(etcd_server, KEY)
    assert entry is not None and entry["mod_revision"] == revision
    assert await registrar.heartbeat(INSTANCE, True, "ready")
    entry = etcd_get(etcd_server, KEY)
    assert entry is not None and entry["doc"]["status"] == "passing"


async def test_lost_lease_means_new_lease_and_key_put_again(
    etcd_server: Etcd, etcd_registrar: Callable[..., EtcdRegistrar]
) -> None:
    registrar = etcd_registrar(ttl=10.0)
    await registrar.register(INSTANCE)
    old = str(registrar.lease)
    etcd_call(etcd_server, "/v3/lease/revoke", {"ID": old})  # e.g. expired while we were cut off
    assert etcd_get(etcd_server, KEY) is None
    assert not await registrar.heartbeat(INSTANCE, True, "ready")
    assert not await registrar.present(INSTANCE)
    await registrar.register(INSTANCE)
    entry = etcd_get(etcd_server, KEY)
    assert entry is not None and entry["lease"] == registrar.lease != old


async def test_missing_key_with_a_live_lease_reuses_the_lease(
    etcd_server: Etcd, etcd_registrar: Callable[..., EtcdRegistrar]
) -> None:
    registrar = etcd_registrar(ttl=10.0)
    await registrar.register(INSTANCE)
    lease = registrar.lease
    etcd_call(etcd_server, "/v3/kv/deleterange", {"key": b64(KEY)})
    assert not await registrar.present(INSTANCE)
    await registrar.register(INSTANCE)
    assert registrar.lease == lease  # no lease leaked per re-registration
    assert await registrar.present(INSTANCE)


async def test_deregister_revokes_the_lease(etcd_server: Etcd, etcd_registrar: Callable[..., EtcdRegistrar]) -> None:
    registrar = etcd_registrar(ttl=10.0)
    await registrar.register(INSTANCE)
    lease = str(registrar.lease)
    await registrar.deregister(INSTANCE)
    assert etcd_get(etcd_server, KEY) is None
    assert lease_ttl(etcd_server, lease) == -1  # revoked, not left to expire
    await registrar.deregister(INSTANCE)  # nothing left: still fine

    await registrar.register(INSTANCE)
    etcd_call(etcd_server, "/v3/lease/revoke", {"ID": str(registrar.lease)})
    await registrar.deregister(INSTANCE)  # lease already gone (404 / NOT_FOUND) counts as deregistered
    assert registrar.lease is None
