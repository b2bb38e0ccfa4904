"""``PUT /v1/catalog/register`` and ``/v1/catalog/deregister`` over HTTP: other nodes in the catalog (the
"external services" pattern), index bumps and blocking queries, the agent's own node kept by anti-entropy, and
Consul's status codes and texts for bad input (decode errors 400, refusals of ``Catalog.Register`` 500)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import consul
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stator.registry.state import RegisterRequest, State
from stator.registry.state.records import Node

from .conftest import RegistryThread, wait_for

EXT_ID = "40e4a748-2192-161a-0510-9bf59fe950b5"


def _index(resp: httpx.Response) -> int:
    return int(resp.headers["x-consul-index"])


def _redis(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Node": "ext-db",
        "ID": EXT_ID,
        "Address": "10.0.0.5",
        "TaggedAddresses": {"lan": "10.0.0.5", "wan": "198.51.100.5"},
        "NodeMeta": {"external-node": "true"},
        "Service": {"ID": "redis1", "Service": "redis", "Tags": ["primary", "v1"], "Port": 6379},
        "Check": {
            "CheckID": "redis-tcp",
            "Name": "Redis TCP",
            "ServiceID": "redis1",
            "Definition": {"TCP": "10.0.0.5:6379", "Interval": "5s", "Timeout": 1_000_000_000},
        },
    }
    body.update(extra)
    return body


def _own_node(client: httpx.Client) -> dict[str, Any]:
    node: dict[str, Any] = client.get("/v1/agent/self").json()["Config"]
    return node


def test_register_node_service_and_check(client: httpx.Client) -> None:
    before = _index(client.get("/v1/catalog/nodes"))
    r = client.put("/v1/catalog/register", json=_redis())
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "true", "application/json")

    nodes = client.get("/v1/catalog/nodes")
    assert _index(nodes) > before
    by_name = {n["Node"]: n for n in nodes.json()}
    ext = by_name["ext-db"]
    assert (ext["ID"], ext["Address"], ext["Datacenter"]) == (EXT_ID, "10.0.0.5", "dc1")
    assert ext["TaggedAddresses"] == {"lan": "10.0.0.5", "wan": "198.51.100.5"}
    assert ext["Meta"] == {"external-node": "true"}
    assert ext["CreateIndex"] == ext["ModifyIndex"] > 0
    assert [n["Node"] for n in nodes.json()] == sorted(by_name, key=str.lower)  # by name

    assert client.get("/v1/catalog/services").json()["redis"] == ["primary", "v1"]
    (row,) = client.get("/v1/catalog/service/redis").json()
    assert (row["Node"], row["Address"], row["ID"], row["NodeMeta"]) == (
        "ext-db",
        "10.0.0.5",
        EXT_ID,
        {"external-node": "true"},
    )
    assert (row["ServiceID"], row["ServicePort"], row["ServiceWeights"]) == (
        "redis1",
        6379,
        {"Passing": 1, "Warning": 1},
    )

    (entry,) = client.get("/v1/health/service/redis").json()
    assert entry["Node"]["Node"] == "ext-db"
    # Only the node's own checks: an external node has no serfHealth.
    (check,) = entry["Checks"]
    assert check["Status"] == "critical"  # no Status given: critical, as Consul's state store defaults it
    assert (check["ServiceName"], check["ServiceTags"], check["Type"]) == ("redis", ["primary", "v1"], "tcp")
    assert check["Definition"] == {"TCP": "10.0.0.5:6379", "Interval": "5s", "Timeout": "1s"}
    assert check["Node"] == "ext-db"
    assert client.get("/v1/health/service/redis?passing").json() == []

    node = client.get("/v1/catalog/node/ext-db").json()
    assert node["Node"]["Node"] == "ext-db" and list(node["Services"]) == ["redis1"]
    assert {c["CheckID"] for c in client.get("/v1/health/node/ext-db").json()} == {"redis-tcp"}
    assert "redis-tcp" in {c["CheckID"] for c in client.get("/v1/health/state/critical").json()}
    assert [c["CheckID"] for c in client.get("/v1/health/checks/redis").json()] == ["redis-tcp"]


def test_idempotent_register_takes_no_index_and_status_change_does(client: httpx.Client) -> None:
    client.put("/v1/catalog/register", json=_redis())
    first = _index(client.get("/v1/health/service/redis"))
    nodes_first = _index(client.get("/v1/catalog/nodes"))
    assert client.put("/v1/catalog/register", json=_redis()).text == "true"
    assert _index(client.get("/v1/health/service/redis")) == first
    assert _index(client.get("/v1/catalog/nodes")) == nodes_first

    passing = _redis(Check={**_redis()["Check"], "Status": "passing", "Output": "ok"})
    client.put("/v1/catalog/register", json=passing)
    resp = client.get("/v1/health/service/redis?passing")
    assert _index(resp) > first
    (entry,) = resp.json()
    assert (entry["Checks"][0]["Status"], entry["Checks"][0]["Output"]) == ("passing", "ok")
    assert entry["Checks"][0]["CreateIndex"] < entry["Checks"][0]["ModifyIndex"]
    assert _index(client.get("/v1/catalog/nodes")) == nodes_first  # the node did not change


def test_node_level_check_decides_every_service_of_its_node_only(client: httpx.Client) -> None:
    client.put("/v1/agent/service/register", json={"Name": "local", "Check": {"TTL": "1m", "Status": "passing"}})
    client.put("/v1/catalog/register", json=_redis(Check={"Name": "redis", "ServiceID": "redis1", "Status": "passing"}))
    local_index = _index(client.get("/v1/health/service/local"))
    assert len(client.get("/v1/health/service/redis?passing").json()) == 1
    # A critical node-level check (no ServiceID; CheckID defaults to the Name) on the external node.
    client.put(
        "/v1/catalog/register", json={"Node": "ext-db", "Address": "10.0.0.5", "ID": EXT_ID, "Check": {"Name": "disk"}}
    )
    assert client.get("/v1/health/service/redis?passing").json() == []
    (entry,) = client.get("/v1/health/service/redis").json()
    assert [c["CheckID"] for c in entry["Checks"]] == ["disk", "redis"]  # node checks first
    assert len(client.get("/v1/health/service/local?passing").json()) == 1
    assert _index(client.get("/v1/health/service/local")) == local_index


def test_blocking_queries_wake_on_register_and_deregister(client: httpx.Client, registry: RegistryThread) -> None:
    url = f"http://127.0.0.1:{registry.port}"
    index = _index(client.get("/v1/health/service/redis"))
    nodes_index = _index(client.get("/v1/catalog/nodes"))
    results: dict[str, httpx.Response] = {}

    def watch(name: str, path: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            results[name] = c.get(path)

    threads = [
        threading.Thread(target=watch, args=("health", f"/v1/health/service/redis?index={index}&wait=20s")),
        threading.Thread(target=watch, args=("nodes", f"/v1/catalog/nodes?index={nodes_index}&wait=20s")),
    ]
    for t in threads:
        t.start()
    wait_for(lambda: registry.state.waiter_count() == 2)
    started = time.monotonic()
    client.put("/v1/catalog/register", json=_redis())
    for t in threads:
        t.join(25)
    assert time.monotonic() - started < 10
    assert _index(results["health"]) > index and results["health"].json()[0]["Service"]["ID"] == "redis1"
    assert _index(results["nodes"]) > nodes_index and "ext-db" in {n["Node"] for n in results["nodes"].json()}

    services_index = _index(client.get("/v1/catalog/services"))
    t = threading.Thread(target=watch, args=("services", f"/v1/catalog/services?index={services_index}&wait=20s"))
    t.start()
    wait_for(lambda: registry.state.waiter_count() == 1)
    r = client.put("/v1/catalog/deregister", json={"Node": "ext-db", "ServiceID": "redis1"})
    assert (r.status_code, r.text) == (200, "true")
    t.join(25)
    assert _index(results["services"]) > services_index and "redis" not in results["services"].json()
    # The service's checks went with it; the node stays.
    assert client.get("/v1/health/node/ext-db").json() == []
    assert client.get("/v1/catalog/node/ext-db").json()["Services"] == {}


def test_deregister_check_node_and_unknowns(client: httpx.Client) -> None:
    client.put("/v1/catalog/register", json=_redis())
    client.put(
        "/v1/catalog/register", json={"Node": "ext-db", "Address": "10.0.0.5", "ID": EXT_ID, "Check": {"Name": "disk"}}
    )
    before = _index(client.get("/v1/health/state/any"))
    assert client.put("/v1/catalog/deregister", json={"Node": "ext-db", "CheckID": "disk"}).text == "true"
    assert _index(client.get("/v1/health/state/any")) > before
    assert {c["CheckID"] for c in client.get("/v1/health/node/ext-db").json()} == {"redis-tcp"}
    # Removing what is not there is not an error, and takes no index.
    idle = _index(client.get("/v1/catalog/nodes"))
    for body in ({"Node": "ext-db", "CheckID": "nope"}, {"Node": "ext-db", "ServiceID": "nope"}, {"Node": "nope"}):
        r = client.put("/v1/catalog/deregister", json=body)
        assert (r.status_code, r.text) == (200, "true")
    assert _index(client.get("/v1/catalog/nodes")) == idle
    # The whole node, with its services and checks; lower-case keys as py-consul sends them.
    assert client.put("/v1/catalog/deregister", json={"node": "EXT-DB"}).text == "true"
    assert "ext-db" not in {n["Node"] for n in client.get("/v1/catalog/nodes").json()}
    assert client.get("/v1/catalog/service/redis").json() == []
    assert client.get("/v1/catalog/node/ext-db").json() is None
    assert _index(client.get("/v1/catalog/nodes")) > idle


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"", 400, "Request decode failed: EOF"),
        (b'{"Node": "x", "Address": "1.2.3.4", "Bogus": 1}', 400, 'Request decode failed: json: unknown field "Bogus"'),
        (
            b'{"Node": 5}',
            400,
            "Request decode failed: json: cannot unmarshal number into Go struct field RegisterRequest.Node of type "
            "string",
        ),
        # py-consul's way of sending a token: Consul's decoder has no such field (WriteRequest is embedded).
        (
            b'{"Node": "x", "Address": "1.2.3.4", "WriteRequest": {"Token": "t"}}',
            400,
            'Request decode failed: json: unknown field "WriteRequest"',
        ),
        (b'{"Address": "1.2.3.4"}', 500, "Must provide node"),
        (b'{"Node": "x", "Address": "1.2.3.4", "ID": "abc"}', 500, "Bad node ID: uuid string is wrong length"),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "ID": "40e4a748x2192-161a-0510-9bf59fe950b5"}',
            500,
            "Bad node ID: uuid is improperly formatted",
        ),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "ID": "40e4a748-2192-161a-0510-9bf59fe950bg"}',
            500,
            "Bad node ID: encoding/hex: invalid byte: U+0067 'g'",
        ),
        (b'{"Node": "x"}', 500, "Must provide address if SkipNodeUpdate is not set"),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "Service": {"ID": "s1"}}',
            500,
            "Must provide service name (Service.Service) when service ID is provided",
        ),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "Service": {"Service": "s", "Address": "0.0.0.0"}}',
            500,
            "Invalid service address",
        ),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "Check": {"Node": "y", "Name": "c"}}',
            500,
            "Node 'y' for check 'c' doesn't match register request node 'x'",
        ),
        (
            b'{"Node": "x", "Address": "1.2.3.4", "Checks": [{"Name": "c", "ServiceID": "nope"}]}',
            500,
            "Unknown service ID 'nope' for check ID 'c'",
        ),
        (b'{"Node": "x", "Address": "1.2.3.4", "Datacenter": "dc2"}', 500, "No path to datacenter"),
    ],
)
def test_register_refusals(client: httpx.Client, body: bytes, status: int, text: str) -> None:
    before = client.get("/v1/catalog/nodes").json()
    r = client.put("/v1/catalog/register", content=body)
    assert (r.status_code, r.text, r.headers["content-type"]) == (status, text, "text/plain; charset=utf-8")
    assert client.get("/v1/catalog/nodes").json() == before  # nothing written


def test_deregister_refusals_and_methods(client: httpx.Client) -> None:
    r = client.put("/v1/catalog/deregister", content=b"")
    assert (r.status_code, r.text) == (400, "Request decode failed: EOF")
    r = client.put("/v1/catalog/deregister", json={"ServiceID": "x"})
    assert (r.status_code, r.text) == (500, "Must provide node")
    r = client.put("/v1/catalog/deregister", json={"Node": "x", "Service": "x"})
    assert (r.status_code, r.text) == (400, 'Request decode failed: json: unknown field "Service"')
    for path in ("/v1/catalog/register", "/v1/catalog/deregister"):
        r = client.get(path)
        assert (r.status_code, r.text, r.headers["Allow"]) == (405, "method GET not allowed", "OPTIONS,PUT")
        r = client.put(f"{path}?ns=team", json={"Node": "x", "Address": "1.2.3.4"})
        assert r.status_code == 400 and "Namespaces are a Consul Enterprise feature" in r.text


def test_skip_node_update_and_rename_by_node_id(client: httpx.Client) -> None:
    client.put("/v1/catalog/register", json={"Node": "a", "ID": EXT_ID, "Address": "10.0.0.1"})
    node_index = _index(client.get("/v1/catalog/nodes"))
    body = {"Node": "a", "Address": "10.9.9.9", "SkipNodeUpdate": True, "Token": "ignored"}
    body["Service"] = {"Service": "web", "Port": 80}
    assert client.put("/v1/catalog/register", json=body).text == "true"
    node = client.get("/v1/catalog/node/a").json()
    assert node["Node"]["Address"] == "10.0.0.1" and list(node["Services"]) == ["web"]  # ID defaults to the name
    assert _index(client.get("/v1/catalog/nodes")) == node_index
    # SkipNodeUpdate on an unknown node still creates it (Consul's ChangesNode is true for a missing node).
    assert client.put("/v1/catalog/register", json={"Node": "b", "SkipNodeUpdate": True}).text == "true"
    assert client.get("/v1/catalog/node/b").json()["Node"]["Address"] == ""
    # The same node ID under a new name renames the node: the old name goes, with its services.
    assert client.put("/v1/catalog/register", json={"Node": "c", "ID": EXT_ID, "Address": "10.0.0.1"}).text == "true"
    names = {n["Node"] for n in client.get("/v1/catalog/nodes").json()}
    assert "c" in names and "a" not in names
    assert client.get("/v1/catalog/service/web").json() == []


def test_own_node_is_kept_by_anti_entropy(client: httpx.Client) -> None:
    own = _own_node(client)
    name, node_id = own["NodeName"], own["NodeID"]
    client.put("/v1/agent/service/register", json={"Name": "api", "Port": 1})
    # A service catalog-registered on the agent's own node is removed by anti-entropy (the agent does not know it).
    body = {"Node": name, "Address": "127.0.0.1", "Service": {"Service": "intruder"}}
    assert client.put("/v1/catalog/register", json=body).text == "true"
    assert client.get("/v1/catalog/service/intruder").json() == []
    # Deregistering the agent's service or the whole node through the catalog: the agent restores them.
    assert client.put("/v1/catalog/deregister", json={"Node": name, "ServiceID": "api"}).text == "true"
    assert len(client.get("/v1/catalog/service/api").json()) == 1
    session = client.put("/v1/session/create", json={}).json()["ID"]
    assert client.put("/v1/catalog/deregister", json={"Node": name}).text == "true"
    node = client.get(f"/v1/catalog/node/{name}").json()
    assert node["Node"]["ID"] == node_id and {"api", "consul"} <= set(node["Services"])
    assert "serfHealth" in {c["CheckID"] for c in client.get(f"/v1/health/node/{name}").json()}
    # ... but sessions of the node ended with it (its serfHealth check went away), as in Consul.
    assert client.get(f"/v1/session/info/{session}").json() == []
    # The node's name is reserved by its live serfHealth: another node ID cannot take it.
    other = "11111111-2222-3333-4444-555555555555"
    r = client.put("/v1/catalog/register", json={"Node": name, "ID": other, "Address": "10.0.0.9"})
    assert (r.status_code, r.text) == (
        500,
        f'failed inserting node: Error while renaming Node ID: "{other}": Node name {name} is reserved by node '
        f"{node_id} with name {name} (127.0.0.1)",
    )


def test_catalog_nodes_survive_a_snapshot() -> None:
    state = State(node_name="reg")
    ext = Node(name="ext", address="10.0.0.7", datacenter="dc1", meta={"k": "v"})
    service = {"ID": "db1", "Service": "db", "Tags": [], "Address": "", "Meta": {}, "Port": 5432}
    service |= {"Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False, "Proxy": {}, "Connect": {}}
    check = {"Node": "ext", "CheckID": "db", "Name": "db", "Status": "passing", "ServiceID": "db1"}
    check |= {"Notes": "", "Output": "", "ServiceName": "", "ServiceTags": [], "Type": "", "Interval": ""}
    state.catalog_register(RegisterRequest(node=ext, service=service, checks=[check]))
    restored = State(node_name="reg")
    restored.restore(state.snapshot())
    assert [n["Node"] for n in restored.store.catalog_nodes()[1]] == ["ext", "reg"]
    (entry,) = restored.health.health_service("db", passing=True)[1]
    assert (entry["Node"]["Meta"], entry["Service"]["Port"], entry["Checks"][0]["ServiceName"]) == (
        {"k": "v"},
        5432,
        "db",
    )
    assert restored.index >= state.index


def test_pyconsul_catalog_register(registry: RegistryThread) -> None:
    c = consul.Consul(host="127.0.0.1", port=registry.port)
    index, _ = c.catalog.service("redis")
    woke: list[Any] = []

    def block() -> None:
        woke.append(c.catalog.service("redis", index=index, wait="10s"))

    t = threading.Thread(target=block)
    t.start()
    wait_for(lambda: registry.state.waiter_count() == 1)
    service = {"Service": "redis", "ID": "redis1", "Tags": ["primary"], "Port": 8000}
    check = {"Node": "foobar", "CheckID": "service:redis1", "Name": "Redis health check", "Status": "passing"}
    check["ServiceID"] = "redis1"
    assert c.catalog.register("foobar", "192.168.10.10", service=service, check=check, node_meta={"a": "b"}) is True
    t.join(15)
    new_index, rows = woke[0]
    assert int(new_index) > int(index) and [r["ServiceID"] for r in rows] == ["redis1"]
    _, nodes = c.catalog.nodes()
    assert "foobar" in {n["Node"] for n in nodes}
    _, entries = c.health.service("redis", passing=True)
    assert [(e["Node"]["Address"], e["Service"]["Port"]) for e in entries] == [("192.168.10.10", 8000)]
    assert c.catalog.deregister("foobar", check_id="service:redis1") is True
    _, checks = c.health.checks("redis")
    assert checks == []
    assert c.catalog.deregister("foobar", service_id="redis1") is True
    assert c.catalog.service("redis")[1] == []
    assert c.catalog.deregister("foobar") is True
    assert "foobar" not in {n["Node"] for n in c.catalog.nodes()[1]}
    # A refusal is Consul's 500: py-consul raises it.
    with pytest.raises(consul.ConsulException, match="Invalid service address"):
        c.catalog.register("x", "10.0.0.1", service={"Service": "s", "Address": "0.0.0.0"})


# Catalog.Register / Deregister refusals (Consul answers them 500 with the RPC error text).
CATALOG_500 = re.compile(
    r"Must provide node|Bad node ID: .*|Must provide address if SkipNodeUpdate is not set"
    r"|Must provide service name \(Service\.Service\) when service ID is provided|Invalid service address"
    r"|Node '.*' for check '.*' doesn't match register request node '.*'|Unknown service ID '.*' for check ID '.*'"
    r"|failed inserting node: Error while renaming Node ID: .*|No path to datacenter",
    re.S,
)
_TEXT = st.one_of(
    st.sampled_from(["", "n1", "N1", "test-node", "0.0.0.0", "::", "s1", "web", EXT_ID, "dc1", "dc2"]),
    st.text(max_size=8),
)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False), _TEXT)
_CHECK = st.dictionaries(
    st.sampled_from(["Node", "CheckID", "Name", "Status", "ServiceID", "Output", "Definition", "Interval", "Bogus"]),
    st.one_of(_SCALAR, st.dictionaries(st.sampled_from(["HTTP", "TCP", "Interval", "TTL", "Header"]), _SCALAR)),
    max_size=5,
)
_SERVICE = st.dictionaries(
    st.sampled_from(["ID", "Service", "Tags", "Address", "Port", "Meta", "Weights", "TaggedAddresses", "Kind"]),
    st.one_of(_SCALAR, st.lists(_TEXT, max_size=3), st.dictionaries(_TEXT, _SCALAR, max_size=2)),
    max_size=5,
)
_REGISTER = st.fixed_dictionaries(
    {},
    optional={
        "Node": _TEXT,
        "ID": _TEXT,
        "Address": _TEXT,
        "Datacenter": _TEXT,
        "SkipNodeUpdate": st.booleans(),
        "NodeMeta": st.dictionaries(_TEXT, _TEXT, max_size=2),
        "TaggedAddresses": st.one_of(_SCALAR, st.dictionaries(_TEXT, _TEXT, max_size=2)),
        "Service": st.one_of(st.none(), _SERVICE),
        "Check": st.one_of(st.none(), _CHECK),
        "Checks": st.one_of(st.none(), st.lists(_CHECK, max_size=2)),
        "ServiceID": _TEXT,
        "CheckID": _TEXT,
    },
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/v1/catalog/register", "/v1/catalog/deregister"]), body=_REGISTER)
def test_random_catalog_writes(fuzz_catalog: httpx.Client, path: str, body: dict[str, Any]) -> None:
    r = fuzz_catalog.put(path, content=json.dumps(body).encode())
    assert r.status_code in (200, 400, 500), (r.status_code, r.text)
    if r.status_code == 200:
        assert r.text == "true"
    elif r.status_code == 500:
        assert CATALOG_500.fullmatch(r.text), r.text
    else:
        assert r.text.startswith("Request decode failed: "), r.text
    # Every view stays answerable whatever was written.
    for view in ("/v1/catalog/nodes", "/v1/catalog/services", "/v1/health/state/any", "/v1/catalog/node/n1"):
        assert fuzz_catalog.get(view).status_code == 200


@pytest.fixture(scope="module")
def fuzz_catalog() -> Iterator[httpx.Client]:
    reg = RegistryThread().start()
    try:
        with httpx.Client(base_url=reg.url, timeout=10) as c:
            yield c
        assert reg.unhandled() == []
    finally:
        reg.stop()
