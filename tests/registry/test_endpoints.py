"""Conformance of the endpoints added for client libraries: agent checks and maintenance, members, catalog
nodes, health checks/state/node, sessions with locks and lock-delay, transactions. Status codes and texts are
Consul's."""

from __future__ import annotations

import asyncio
import base64
import threading

import httpx
import pytest

from stator.registry.state import State

from .conftest import RegistryThread, wait_for


def _index(resp: httpx.Response) -> int:
    return int(resp.headers["x-consul-index"])


def test_check_register_errors_and_lifecycle(client: httpx.Client) -> None:
    put = client.put
    assert put("/v1/agent/check/register", json={"TTL": "10s"}).text == "Missing check name"
    r = put("/v1/agent/check/register", json={"Name": "x", "TTL": "10s", "Status": "bogus"})
    assert (r.status_code, r.text) == (400, "Bad check status")
    r = put("/v1/agent/check/register", json={"Name": "x", "HTTP": "http://x"})
    assert r.status_code == 400 and r.text.startswith("Invalid check: Interval must be > 0")
    r = put("/v1/agent/check/register", json={"Name": "x", "TTL": "10s", "ServiceID": "nope"})
    assert (r.status_code, r.text) == (400, 'ServiceID "nope" does not exist')
    r = put("/v1/agent/check/register", json={"Name": "x", "TTL": "10s", "Bogus": 1})
    assert (r.status_code, r.text) == (400, 'Request decode failed: json: unknown field "Bogus"')
    assert put("/v1/agent/check/register", json={"name": "mem", "ttl": "10s"}).status_code == 200
    check = client.get("/v1/agent/checks").json()["mem"]  # ID defaults to the name
    assert (check["Status"], check["Type"], check["ServiceID"]) == ("critical", "ttl", "")
    assert put("/v1/agent/check/pass/mem?note=fine").status_code == 200
    assert client.get("/v1/agent/checks").json()["mem"]["Output"] == "fine"
    assert put("/v1/agent/check/deregister/mem").status_code == 200
    r = put("/v1/agent/check/deregister/mem")
    assert (r.status_code, r.text) == (
        404,
        'Unknown check ID "mem". Ensure that the check ID is passed, not the check name.',
    )
    assert client.get("/v1/agent/check/deregister/mem").status_code == 405


def test_node_check_counts_for_every_service(client: httpx.Client) -> None:
    client.put("/v1/agent/service/register", json={"Name": "api", "Check": {"TTL": "1m", "Status": "passing"}})
    assert len(client.get("/v1/health/service/api?passing").json()) == 1
    before = _index(client.get("/v1/health/service/api"))
    client.put("/v1/agent/check/register", json={"Name": "node-disk", "TTL": "1m"})  # critical node-level check
    resp = client.get("/v1/health/service/api")
    assert _index(resp) > before
    assert "node-disk" in {c["CheckID"] for c in resp.json()[0]["Checks"]}
    assert client.get("/v1/health/service/api?passing").json() == []


def test_service_and_node_maintenance(client: httpx.Client) -> None:
    client.put("/v1/agent/service/register", json={"Name": "web", "ID": "web-1"})
    r = client.put("/v1/agent/service/maintenance/web-1")
    assert (r.status_code, r.text) == (400, "Missing value for enable")
    r = client.put("/v1/agent/service/maintenance/web-1?enable=maybe")
    assert (r.status_code, r.text) == (400, 'Invalid value for enable: "maybe"')
    r = client.put("/v1/agent/service/maintenance/nope?enable=true")
    assert (r.status_code, r.text) == (404, 'No service registered with ID "nope"')
    assert client.put("/v1/agent/service/maintenance/web-1?enable=true").status_code == 200
    check = client.get("/v1/agent/checks").json()["_service_maintenance:web-1"]
    assert check["Status"] == "critical" and check["Type"] == "maintenance"
    assert check["Name"] == "Service Maintenance Mode" and check["Notes"].startswith("Maintenance mode is enabled")
    assert client.put("/v1/agent/service/maintenance/web-1?enable=false").status_code == 200
    assert "_service_maintenance:web-1" not in client.get("/v1/agent/checks").json()
    assert client.put("/v1/agent/maintenance?enable=true&reason=patching").status_code == 200
    node = client.get("/v1/health/node/test-node").json()
    assert [c["Notes"] for c in node if c["CheckID"] == "_node_maintenance"] == ["patching"]
    assert client.put("/v1/agent/maintenance?enable=false").status_code == 200
    assert client.get("/v1/agent/maintenance").status_code == 405


def test_members_nodes_and_node(client: httpx.Client) -> None:
    members = client.get("/v1/agent/members").json()
    assert members[0]["Name"] == "test-node" and members[0]["Port"] == 8301
    assert client.get("/v1/agent/members?wan=1").json()[0]["Name"] == "test-node.dc1"
    resp = client.get("/v1/catalog/nodes")
    assert _index(resp) >= 1 and [n["Node"] for n in resp.json()] == ["test-node"]
    resp = client.get("/v1/catalog/node/test-node")
    assert resp.json()["Node"]["Node"] == "test-node" and "consul" in resp.json()["Services"]
    resp = client.get("/v1/catalog/node/other")
    assert resp.status_code == 200 and resp.json() is None and _index(resp) >= 1


def test_health_state_and_checks(client: httpx.Client) -> None:
    r = client.get("/v1/health/state/bogus")
    assert (r.status_code, r.text) == (400, "Invalid check state")
    client.put("/v1/agent/service/register", json={"Name": "db", "Check": {"TTL": "1m"}})
    crit = client.get("/v1/health/state/critical")
    assert "service:db" in {c["CheckID"] for c in crit.json()}
    assert {c["CheckID"] for c in client.get("/v1/health/state/passing").json()} == {"serfHealth"}
    assert len(client.get("/v1/health/state/any").json()) == 2
    checks = client.get("/v1/health/checks/db")
    assert [c["CheckID"] for c in checks.json()] == ["service:db"] and _index(checks) >= 1
    assert client.get("/v1/health/checks/none").json() == []
    assert client.get("/v1/health/node/other").json() == []


def test_health_state_blocks_until_a_check_changes(registry: RegistryThread, client: httpx.Client) -> None:
    client.put("/v1/agent/service/register", json={"Name": "q", "Check": {"CheckID": "q", "TTL": "1m"}})
    index = _index(client.get("/v1/health/state/passing"))
    threading.Timer(0.3, lambda: httpx.put(f"{registry.url}/v1/agent/check/pass/q")).start()
    resp = client.get(f"/v1/health/state/passing?index={index}&wait=10s")
    assert _index(resp) > index and "q" in {c["CheckID"] for c in resp.json()}


def test_session_create_errors(client: httpx.Client) -> None:
    r = client.put("/v1/session/create", json={"TTL": "5s"})
    assert (r.status_code, r.text) == (500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
    r = client.put("/v1/session/create", json={"TTL": "5"})
    assert (r.status_code, r.text) == (500, "Session TTL '5' invalid: time: missing unit in duration \"5\"")
    r = client.put("/v1/session/create", json={"Behavior": "explode"})
    assert (r.status_code, r.text) == (500, "Invalid Behavior setting 'explode'")
    r = client.put("/v1/session/create", json={"Node": "elsewhere"})
    assert (r.status_code, r.text) == (500, "Missing node registration")
    r = client.put("/v1/session/create", json={"Checks": ["nope"]})
    assert (r.status_code, r.text) == (500, "Missing check 'nope' registration")
    client.put("/v1/agent/check/register", json={"Name": "down", "TTL": "1m"})
    r = client.put("/v1/session/create", json={"Checks": ["serfHealth", "down"]})
    assert (r.status_code, r.text) == (500, "Check 'down' is in critical state")
    r = client.put("/v1/session/create", json={"LockDelay": "1x"})
    assert r.status_code == 400 and r.text.startswith("Request decode failed: time: unknown unit")
    r = client.put("/v1/session/renew/nope")
    assert (r.status_code, r.text) == (404, "Session id 'nope' not found")
    assert client.put("/v1/session/destroy/nope").json() is True


def test_session_fields_and_reads(client: httpx.Client) -> None:
    sid = client.put("/v1/session/create", json={"Name": "n", "LockDelay": 5, "TTL": "15s"}).json()["ID"]
    info = client.get(f"/v1/session/info/{sid}")
    (s,) = info.json()
    assert s["LockDelay"] == 5 * 10**9  # small numbers are seconds
    assert (s["Name"], s["Behavior"], s["TTL"], s["NodeChecks"], s["Node"]) == (
        "n",
        "release",
        "15s",
        ["serfHealth"],
        "test-node",
    )
    assert _index(info) == s["CreateIndex"]
    assert client.get("/v1/session/info/unknown").json() == []
    assert [x["ID"] for x in client.get("/v1/session/node/test-node").json()] == [sid]
    assert client.get("/v1/session/node/other").json() == []
    empty = client.put("/v1/session/create", json={"Checks": []}).json()["ID"]
    assert client.get(f"/v1/session/info/{empty}").json()[0]["NodeChecks"] == []


def test_locks_lock_delay_and_check_invalidation(client: httpx.Client) -> None:
    client.put("/v1/agent/check/register", json={"Name": "alive", "TTL": "1m", "Status": "passing"})
    body = {"LockDelay": "300ms", "Checks": ["serfHealth", "alive"], "Behavior": "delete"}
    sid = client.put("/v1/session/create", json=body).json()["ID"]
    r = client.put("/v1/kv/l?acquire=nope", content=b"v")
    assert (r.status_code, r.text) == (500, 'invalid session "nope"')
    r = client.put(f"/v1/kv/l?acquire={sid}&cas=0", content=b"v")
    assert r.status_code == 400 and r.text.startswith("Conflicting flags: ")
    assert client.put(f"/v1/kv/l?acquire={sid}", content=b"v").json() is True
    assert client.put(f"/v1/kv/l?acquire={sid}", content=b"v2").json() is True  # re-acquire: same LockIndex
    entry = client.get("/v1/kv/l").json()[0]
    assert (entry["Session"], entry["LockIndex"], base64.b64decode(entry["Value"])) == (sid, 1, b"v2")
    other = client.put("/v1/session/create", json={"LockDelay": "0s"}).json()["ID"]
    assert client.put(f"/v1/kv/l?release={other}").json() is False
    # The check turns critical: the session ends, its key is deleted (Behavior delete) and lock-delayed.
    client.put("/v1/agent/check/fail/alive")
    assert client.get("/v1/kv/l").status_code == 404
    assert client.get(f"/v1/session/info/{sid}").json() == []
    assert client.put(f"/v1/kv/l?acquire={other}", content=b"o").json() is False  # within the lock-delay
    wait_for(lambda: client.put(f"/v1/kv/l?acquire={other}", content=b"o").json() is True, timeout=5)
    assert client.put(f"/v1/kv/l?release={other}", content=b"done").json() is True
    entry = client.get("/v1/kv/l").json()[0]
    assert "Session" not in entry and entry["LockIndex"] == 1


def test_txn(client: httpx.Client) -> None:
    def op(verb: str, key: str, value: bytes | None = None, **extra: object) -> dict[str, object]:
        kv: dict[str, object] = {"Verb": verb, "Key": key, **extra}
        if value is not None:
            kv["Value"] = base64.b64encode(value).decode()
        return {"KV": kv}

    r = client.put("/v1/txn", json=[op("set", "a", b"1"), op("cas", "b", b"2", Index=0), op("get", "a")])
    body = r.json()
    assert r.status_code == 200 and body["Errors"] is None
    assert body["Results"][0]["KV"]["Value"] is None and base64.b64decode(body["Results"][2]["KV"]["Value"]) == b"1"
    ia, ib = body["Results"][0]["KV"]["ModifyIndex"], body["Results"][1]["KV"]["ModifyIndex"]
    assert ia == ib  # one transaction, one index
    r = client.put("/v1/txn", json=[op("delete", "a"), op("cas", "b", b"x", Index=1), op("get", "zz")])
    assert r.status_code == 409
    assert r.json() == {
        "Results": None,
        "Errors": [
            {"OpIndex": 1, "What": 'failed to set key "b", index is stale'},
            {"OpIndex": 2, "What": 'key "zz" doesn\'t exist'},
        ],
    }
    assert client.get("/v1/kv/a?raw").content == b"1"  # nothing applied
    r = client.put("/v1/txn", json=[op("get", "a")] * 65)
    assert (r.status_code, r.text) == (413, "Transaction contains too many operations (65 > 64)")
    r = client.put("/v1/txn", content=b"{")
    assert (r.status_code, r.text) == (400, "Failed to parse body: unexpected EOF")
    r = client.put("/v1/txn", json=[{"KV": {"Verb": "frob", "Key": "a"}}])
    assert r.json()["Errors"] == [{"OpIndex": 0, "What": 'unknown KV verb "frob"'}]
    r = client.put("/v1/txn", json=[op("delete-tree", ""), op("check-not-exists", "a")])
    assert r.status_code == 200 and client.get("/v1/kv/a").status_code == 404


@pytest.mark.parametrize("ttl", ["10s", "1m"])
def test_session_ttl_rules_at_consul_values(ttl: str) -> None:
    """TTL x 2 (Consul's SessionTTLMultiplier), renewal restarts it; checked on the state, not by waiting."""
    from stator.registry.state.sessions import SessionRequest

    async def run() -> None:
        state = State(node_name="n")
        state.sessions.start_timers()
        sid = state.sessions.create(SessionRequest(ttl=ttl))
        session = state.sessions.get(sid)
        assert session is not None and session.timer is not None
        loop = asyncio.get_running_loop()
        expected = session.ttl_ns / 1e9 * 2
        assert abs(session.timer.when() - loop.time() - expected) < 0.5
        first = session.timer.when()
        await asyncio.sleep(0.05)
        state.sessions.renew(sid)
        assert session.timer.when() > first
        state.sessions.stop_timers()

    asyncio.run(run())
