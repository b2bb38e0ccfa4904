"""Index semantics, anti-entropy details and wire rules beyond the numbered checklist."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest

from .conftest import RegistryThread, wait_for
from .test_conformance import agent_checks, index_of, register


def test_per_service_index_ignores_other_services(client: httpx.Client) -> None:
    register(client, {"Name": "web", "Check": {"CheckID": "w", "TTL": "30s"}})
    register(client, {"Name": "db", "Check": {"CheckID": "d", "TTL": "30s"}})
    web = index_of(client.get("/v1/health/service/web"))
    client.put("/v1/agent/check/pass/d")
    register(client, {"Name": "db", "Tags": ["changed"], "Check": {"CheckID": "d", "TTL": "30s"}})
    assert index_of(client.get("/v1/health/service/web")) == web
    assert index_of(client.get("/v1/catalog/service/web")) == web
    client.put("/v1/agent/check/pass/w")
    assert index_of(client.get("/v1/health/service/web")) > web


def test_catalog_services_index_ignores_check_changes(client: httpx.Client) -> None:
    register(client, {"Name": "web", "Check": {"CheckID": "w", "TTL": "30s"}})
    before = index_of(client.get("/v1/catalog/services"))
    client.put("/v1/agent/check/pass/w")
    assert index_of(client.get("/v1/catalog/services")) == before
    register(client, {"Name": "web", "Tags": ["x"], "Check": {"CheckID": "w", "TTL": "30s"}})
    assert index_of(client.get("/v1/catalog/services")) > before


def test_identical_reregistration_writes_nothing(client: httpx.Client) -> None:
    body = {"Name": "web", "Port": 80, "Tags": ["a"], "Check": {"CheckID": "w", "TTL": "30s"}}
    register(client, body)
    health = index_of(client.get("/v1/health/service/web"))
    services = index_of(client.get("/v1/catalog/services"))
    for _ in range(3):
        register(client, body)
    assert index_of(client.get("/v1/health/service/web")) == health
    assert index_of(client.get("/v1/catalog/services")) == services


def test_missing_service_answers_catalog_max_and_wakes_on_creation(
    registry: RegistryThread, client: httpx.Client
) -> None:
    register(client, {"Name": "other"})
    resp = client.get("/v1/health/service/later")
    assert resp.json() == []
    index = index_of(resp)
    assert index == registry.call(registry.state.catalog.catalog_max_index)

    def blocked() -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            return c.get("/v1/health/service/later", params={"index": index, "wait": "20s"})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(blocked)
        wait_for(lambda: registry.state.waiter_count() == 1)
        register(client, {"Name": "later"})
        resp = fut.result(5)
    assert [e["Service"]["Service"] for e in resp.json()] == ["later"]
    assert index_of(resp) > index


def test_deregistration_moves_index_forward(client: httpx.Client) -> None:
    register(client, {"Name": "gone"})
    before = index_of(client.get("/v1/health/service/gone"))
    client.put("/v1/agent/service/deregister/gone")
    resp = client.get("/v1/health/service/gone")
    assert resp.json() == [] and index_of(resp) > before


def test_output_only_changes_are_deferred(registry_factory: Any) -> None:
    """Consul syncs a status change at once but an output-only change after check_update_interval, so a probe
    whose body varies does not wake every watcher on every interval."""
    reg: RegistryThread = registry_factory(check_update_interval=0.4)
    with httpx.Client(base_url=reg.url, timeout=10) as client:
        register(client, {"Name": "web", "Check": {"CheckID": "w", "TTL": "30s"}})
        client.put("/v1/agent/check/pass/w", params={"note": "one"})
        index = index_of(client.get("/v1/health/service/web"))
        client.put("/v1/agent/check/pass/w", params={"note": "two"})
        # The agent sees the new output now; the catalog keeps the old one (and its index) for now.
        assert agent_checks(client)["w"]["Output"] == "two"
        resp = client.get("/v1/health/service/web")
        assert index_of(resp) == index and resp.json()[0]["Checks"][1]["Output"] == "one"
        wait_for(lambda: client.get("/v1/health/service/web").json()[0]["Checks"][1]["Output"] == "two", timeout=3)
        assert index_of(client.get("/v1/health/service/web")) > index


def test_recurse_index_moves_on_delete(client: httpx.Client) -> None:
    client.put("/v1/kv/p/a", content=b"1")
    client.put("/v1/kv/p/b", content=b"1")
    index = index_of(client.get("/v1/kv/p/?recurse"))
    client.delete("/v1/kv/p/b")  # the key holding the max index
    resp = client.get("/v1/kv/p/?recurse")
    # The tombstone keeps the prefix index moving forward, so a watcher on the prefix wakes up.
    assert index_of(resp) > index and [e["Key"] for e in resp.json()] == ["p/a"]


def test_recurse_blocking_wakes_on_delete(registry: RegistryThread, client: httpx.Client) -> None:
    client.put("/v1/kv/q/a", content=b"1")
    index = index_of(client.get("/v1/kv/q/?recurse"))

    def blocked() -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            return c.get("/v1/kv/q/", params={"recurse": "", "index": index, "wait": "20s"})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(blocked)
        wait_for(lambda: registry.state.waiter_count() == 1)
        client.put("/v1/kv/unrelated", content=b"1")
        time.sleep(0.2)
        assert not fut.done()  # a write elsewhere does not answer it
        client.delete("/v1/kv/q/a")
        resp = fut.result(5)
    assert resp.status_code == 404 and index_of(resp) > index


def test_agent_service_and_hash_blocking(registry: RegistryThread, client: httpx.Client) -> None:
    register(client, {"Name": "web", "ID": "web-1", "Port": 80})
    resp = client.get("/v1/agent/service/web-1")
    assert resp.status_code == 200
    digest = resp.headers["X-Consul-ContentHash"]
    assert resp.json()["ContentHash"] == digest and resp.json()["Service"] == "web"
    resp = client.get("/v1/agent/service/nope")
    assert (resp.status_code, resp.text) == (404, "unknown service ID: nope")

    def blocked() -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            return c.get("/v1/agent/service/web-1", params={"hash": digest, "wait": "20s"})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(blocked)
        wait_for(lambda: registry.state.waiter_count() == 1)
        register(client, {"Name": "web", "ID": "web-1", "Port": 81})
        resp = fut.result(5)
    assert resp.json()["Port"] == 81 and resp.headers["X-Consul-ContentHash"] != digest


def test_unclean_paths_redirect(client: httpx.Client) -> None:
    resp = client.get("/v1/kv//a", follow_redirects=False)
    assert (resp.status_code, resp.headers["Location"]) == (301, "/v1/kv/a")
    resp = client.get("/v1/kv?recurse", follow_redirects=False)
    assert (resp.status_code, resp.headers["Location"]) == (301, "/v1/kv/?recurse")
    assert client.get("/other").status_code == 404
    assert client.get("/").status_code == 200


def test_enterprise_parameters_rejected(client: httpx.Client) -> None:
    resp = client.get("/v1/health/service/web", params={"ns": "team"})
    assert resp.status_code == 400
    assert resp.text == 'Bad request: Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'
    assert client.get("/v1/health/service/web", params={"ns": ""}).status_code == 200


def test_other_datacenter(client: httpx.Client) -> None:
    assert client.get("/v1/catalog/services", params={"dc": "dc1"}).status_code == 200
    resp = client.get("/v1/catalog/services", params={"dc": "dc2"})
    assert (resp.status_code, resp.text) == (500, "No path to datacenter")


@pytest.mark.parametrize(
    ("path", "expr", "expected"),
    [
        ("/v1/agent/services", 'Service == "web"', {"w1", "w2"}),
        ("/v1/agent/services", '"blue" in Tags', {"w1"}),
        ("/v1/agent/services", "Meta.env == prod and Port != 81", {"w1"}),
        ("/v1/agent/services", "Meta is empty", {"d1"}),
        ("/v1/agent/services", 'not (Service == "web")', {"d1"}),
        ("/v1/agent/services", 'Service matches "^w"', {"w1", "w2"}),
        ("/v1/health/service/web", 'Service.Meta["env"] == "prod"', {"w1"}),
        ("/v1/health/service/web", '"critical" in Checks.Status', {"w2"}),
        ("/v1/catalog/service/web", "ServicePort == 81", {"w2"}),
    ],
)
def test_filter(client: httpx.Client, path: str, expr: str, expected: set[str]) -> None:
    register(client, {"Name": "web", "ID": "w1", "Port": 80, "Tags": ["blue"], "Meta": {"env": "prod"}})
    body = {"Name": "web", "ID": "w2", "Port": 81, "Meta": {"env": "dev"}, "Check": {"TTL": "30s"}}
    register(client, body)
    register(client, {"Name": "db", "ID": "d1"})
    result = client.get(path, params={"filter": expr}).json()
    if isinstance(result, dict):
        ids = set(result)
    else:
        ids = {r["Service"]["ID"] if "Service" in r else r["ServiceID"] for r in result}
    assert ids == expected


def test_filter_errors_and_catalog_services(client: httpx.Client) -> None:
    register(client, {"Name": "web", "Tags": ["blue"]})
    register(client, {"Name": "db"})
    services = client.get("/v1/catalog/services", params={"filter": "ServiceName == web"}).json()
    assert services == {"web": ["blue"]}
    resp = client.get("/v1/agent/services", params={"filter": "Service =="})
    assert resp.status_code == 400
    assert resp.text.startswith("Failed to create boolean expression evaluator: ")


def test_status_endpoints(client: httpx.Client) -> None:
    assert client.get("/v1/status/leader").json().endswith(":8300")
    assert client.get("/v1/catalog/datacenters").json() == ["dc1"]


def test_unsupported_check_types_are_stored_not_run(client: httpx.Client) -> None:
    register(client, {"Name": "g", "Check": {"CheckID": "g", "GRPC": "127.0.0.1:1", "Interval": "10s"}})
    check = agent_checks(client)["g"]
    assert (check["Type"], check["Status"]) == ("grpc", "critical")
    resp = register(client, {"Name": "s", "Check": {"Args": ["/bin/true"], "Interval": "10s"}})
    assert resp.status_code == 500 and resp.text.startswith("Scripts are disabled on this agent")
