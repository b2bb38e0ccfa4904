"""py-consul (PyPI), a client library nobody here wrote, driving the registry the way its users do.

Sessions use Consul's real minimum TTL (10 s, which py-consul itself enforces); the registry runs with the
dev-only ``session_ttl_multiplier`` at 0.1 instead of Consul's 2, so a session that is not renewed ends after
1 s instead of 20 s. The TTL rule itself (x 2, 10 s minimum) is checked at Consul's values in
test_endpoints.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import consul
import pytest

from .conftest import RegistryThread


@pytest.fixture
def reg(registry_factory: Callable[..., RegistryThread]) -> RegistryThread:
    return registry_factory(session_ttl_multiplier=0.1)


@pytest.fixture
def c(reg: RegistryThread) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=reg.port)


def test_services_checks_ttl_and_maintenance(c: consul.Consul) -> None:
    assert c.agent.service.register("web", service_id="web-1", port=8080, tags=["a"], check=consul.Check.ttl("10s"))
    assert c.agent.check.ttl_pass("service:web-1", notes="ok")
    _, nodes = c.health.service("web", passing=True)
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]
    assert c.agent.check.register("disk", check=consul.Check.ttl("30s"), check_id="disk", service_id="web-1")
    assert c.agent.check.ttl_warn("disk", notes="80%")
    assert c.agent.checks()["disk"]["Status"] == "warning"
    _, checks = c.health.checks("web")
    assert {ch["CheckID"] for ch in checks} == {"service:web-1", "disk"}
    assert c.agent.service.maintenance("web-1", "true", "deploying")
    _, critical = c.health.state("critical")
    maint = [ch for ch in critical if ch["CheckID"] == "_service_maintenance:web-1"]
    assert maint and maint[0]["Notes"] == "deploying"
    assert c.health.service("web", passing=True)[1] == []
    assert c.agent.service.maintenance("web-1", "false")
    assert c.agent.check.deregister("disk")
    assert c.agent.check.deregister("disk") is False  # the 404, as py-consul reports it
    assert c.agent.maintenance("true", "node work")
    _, node_checks = c.health.node(c.agent.self()["Config"]["NodeName"])
    assert "_node_maintenance" in {ch["CheckID"] for ch in node_checks}
    assert c.agent.maintenance("false")
    members = c.agent.members()
    assert members and members[0]["Status"] == 1
    assert c.agent.service.deregister("web-1")


def test_catalog_and_health_views_block_on_index(c: consul.Consul) -> None:
    _, nodes = c.catalog.nodes()
    name = nodes[0]["Node"]
    _, node = c.catalog.node(name)
    assert "consul" in node["Services"]
    index, services = c.catalog.services()
    assert "consul" in services

    def register_later() -> None:
        time.sleep(0.3)
        c.agent.service.register("late", port=1)

    t = threading.Thread(target=register_later)
    t.start()
    started = time.monotonic()
    new_index, services = c.catalog.services(index=index, wait="10s")
    t.join()
    assert "late" in services and int(new_index) > int(index)
    assert time.monotonic() - started < 5
    i2, _ = c.health.state("any")
    _, rows = c.health.checks("late", index=i2, wait="100ms")  # nothing changed for it: times out, same data
    assert rows == [] or all(r["ServiceName"] == "late" for r in rows)


def test_kv_cas_and_recurse(c: consul.Consul) -> None:
    assert c.kv.put("app/a", "1")
    assert c.kv.put("app/b", "2", flags=7)
    _, entry = c.kv.get("app/a")
    assert entry["Value"] == b"1"
    assert c.kv.put("app/a", "x", cas=entry["ModifyIndex"] + 100) is False
    assert c.kv.put("app/a", "3", cas=entry["ModifyIndex"])
    _, entries = c.kv.get("app/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [("app/a", b"3"), ("app/b", b"2")]
    assert c.kv.delete("app/", recurse=True)
    assert c.kv.get("app/a")[1] is None


def test_lock_released_on_session_destroy(c: consul.Consul) -> None:
    sid = c.session.create(name="locker", lock_delay=0, ttl=10)
    assert c.kv.put("locks/job", "owner-a", acquire=sid)
    _, entry = c.kv.get("locks/job")
    assert entry["Session"] == sid and entry["LockIndex"] == 1
    other = c.session.create(lock_delay=0)
    assert c.kv.put("locks/job", "owner-b", acquire=other) is False
    _, info = c.session.info(sid)
    assert info["Name"] == "locker" and info["TTL"] == "10s"
    assert c.session.renew(sid)["ID"] == sid
    assert sid in {s["ID"] for s in c.session.list()[1]}
    assert c.session.destroy(sid)
    _, entry = c.kv.get("locks/job")
    assert "Session" not in entry and entry["Value"] == b"owner-a"
    assert c.kv.put("locks/job", "owner-b", acquire=other)
    assert c.kv.get("locks/job")[1]["LockIndex"] == 2


def test_leader_election_hands_over_when_leader_dies(reg: RegistryThread) -> None:
    a = consul.Consul(host="127.0.0.1", port=reg.port)
    b = consul.Consul(host="127.0.0.1", port=reg.port)
    sa = a.session.create(name="a", ttl=10, lock_delay=0)
    sb = b.session.create(name="b", ttl=10, lock_delay=0)
    assert a.kv.put("service/leader", "a", acquire=sa)
    assert b.kv.put("service/leader", "b", acquire=sb) is False
    # b watches the key as election recipes do; a "dies" (stops renewing), so its session expires (TTL x 0.1 here).
    index, entry = b.kv.get("service/leader")
    assert entry["Session"] == sa
    deadline = time.monotonic() + 10
    while entry is not None and entry.get("Session") and time.monotonic() < deadline:
        assert b.session.renew(sb)["ID"] == sb  # b stays alive: it renews well within its TTL
        index, entry = b.kv.get("service/leader", index=index, wait="300ms")
    assert entry is not None and "Session" not in entry
    assert b.session.info(sa)[1] is None
    assert b.kv.put("service/leader", "b", acquire=sb)
    assert b.kv.get("service/leader")[1]["Value"] == b"b"
    with pytest.raises(consul.NotFound, match="not found"):  # a's lease is gone for good
        a.session.renew(sa)


def test_transaction(c: consul.Consul) -> None:
    import base64

    def op(verb: str, key: str, value: bytes | None = None, **extra: object) -> dict[str, object]:
        kv: dict[str, object] = {"Verb": verb, "Key": key, **extra}
        if value is not None:
            kv["Value"] = base64.b64encode(value).decode()
        return {"KV": kv}

    result = c.txn.put([op("set", "t/a", b"1"), op("set", "t/b", b"2"), op("get", "t/a")])
    assert result["Errors"] is None
    assert base64.b64decode(result["Results"][2]["KV"]["Value"]) == b"1"
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put([op("set", "t/c", b"3"), op("check-not-exists", "t/a")])
    assert c.kv.get("t/c")[1] is None  # all or nothing
