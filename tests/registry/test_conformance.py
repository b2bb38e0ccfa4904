"""The conformance checklist of consul_spec.md, one test (or group) per item, over real HTTP on loopback.

Items 37-38 (Prometheus) are in test_prometheus.py; items 39-41 are about the *client* (another issue).
"""

from __future__ import annotations

import base64
import random
import socket
import time
from typing import Any

import httpx
import pytest

from stator.registry.endpoints.common import query_timeout

from .conftest import RegistryThread, Target, wait_for

UNKNOWN_SERVICE = 'Unknown service ID "{}". Ensure that the service ID is passed, not the service name.'
UNKNOWN_CHECK = 'Unknown check ID "{}". Ensure that the check ID is passed, not the check name.'


def register(client: httpx.Client, body: dict[str, Any], **params: str) -> httpx.Response:
    return client.put("/v1/agent/service/register", json=body, params=params)


def agent_checks(client: httpx.Client) -> dict[str, Any]:
    result: dict[str, Any] = client.get("/v1/agent/checks").json()
    return result


def index_of(resp: httpx.Response) -> int:
    return int(resp.headers["X-Consul-Index"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- 1-11 agent


def test_01_register_minimal(client: httpx.Client) -> None:
    resp = register(client, {"name": "x", "port": 1})
    assert resp.status_code == 200
    assert resp.content == b""
    svc = client.get("/v1/agent/services").json()["x"]
    assert svc["ID"] == "x" and svc["Service"] == "x" and svc["Port"] == 1
    assert svc["Tags"] == []
    assert svc["Meta"] == {}
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    assert svc["Datacenter"] == "dc1"
    assert "TaggedAddresses" not in svc  # omitted when empty


def test_02_missing_name(client: httpx.Client) -> None:
    resp = register(client, {"port": 1})
    assert (resp.status_code, resp.text) == (400, "Missing service name")
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"Name":"x","Foo":1}', 'Request decode failed: json: unknown field "Foo"'),
        (b'{"Name":"x","Check":{"TTL":"10s","Bogus":true}}', 'Request decode failed: json: unknown field "Bogus"'),
        (b"", "Request decode failed: EOF"),
        (b"   \n", "Request decode failed: EOF"),
        (b'{"Name":"x","Check":{"TTL":"10"}}', 'Request decode failed: time: missing unit in duration "10"'),
        (b'{"Name":"x","Check":{"TTL":"abc"}}', 'Request decode failed: time: invalid duration "abc"'),
        (b'{"Name":"x","Check":{"TTL":"10x"}}', 'Request decode failed: time: unknown unit "x" in duration "10x"'),
        (b'{"Name":"x"', "Request decode failed: unexpected EOF"),
        (b"[1]", "Request decode failed: json: cannot unmarshal array into Go value of type structs.ServiceDefinition"),
    ],
)
def test_03_strict_decoding_errors(client: httpx.Client, body: bytes, text: str) -> None:
    resp = client.put("/v1/agent/service/register", content=body)
    assert (resp.status_code, resp.text) == (400, text)


def test_03_null_check_and_case_insensitive_keys(client: httpx.Client) -> None:
    # The Go client always sends "Check":null,"Checks":null.
    assert register(client, {"Name": "a", "Check": None, "Checks": None}).status_code == 200
    # Keys match case-insensitively; snake_case aliases are accepted.
    body = {
        "NAME": "b",
        "id": "b1",
        "tags": ["t"],
        "enable_tag_override": True,
        "check": {"ttl": "30s", "deregister_critical_service_after": "90s", "Status": "passing"},
    }
    assert register(client, body).status_code == 200
    svc = client.get("/v1/agent/services").json()["b1"]
    assert svc["Service"] == "b" and svc["Tags"] == ["t"] and svc["EnableTagOverride"] is True
    check = agent_checks(client)["service:b1"]
    assert check["Type"] == "ttl" and check["Status"] == "passing"
    # Durations may also be JSON numbers (nanoseconds).
    assert register(client, {"Name": "c", "Check": {"TTL": 30_000_000_000}}).status_code == 200
    assert agent_checks(client)["service:c"]["Type"] == "ttl"


def test_04_interval_rules(client: httpx.Client) -> None:
    resp = register(client, {"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}})
    assert resp.status_code == 400
    assert resp.text == "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    resp = register(client, {"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "10s", "TTL": "5s"}})
    assert (resp.status_code, resp.text) == (400, "Invalid check: Interval and TTL cannot both be specified")
    resp = register(client, {"Name": "x", "Check": {"Name": "only a name"}})
    assert (resp.status_code, resp.text) == (400, "Invalid check: TTL must be > 0 for TTL checks")
    # An empty check object is no check at all.
    assert register(client, {"Name": "x", "Check": {}}).status_code == 200
    assert agent_checks(client) == {}


def test_05_bad_status_and_any_address(client: httpx.Client) -> None:
    resp = register(client, {"Name": "x", "Check": {"TTL": "10s", "Status": "bogus"}})
    assert (resp.status_code, resp.text) == (400, "Status for checks must 'passing', 'warning', 'critical'")
    for address in ("0.0.0.0", "::"):
        resp = register(client, {"Name": "x", "Address": address})
        assert (resp.status_code, resp.text) == (400, "Invalid service address")
    resp = register(client, {"Name": "x", "Weights": {"Passing": 0, "Warning": 1}})
    assert (resp.status_code, resp.text) == (400, "Invalid Weights: Passing must be greater than 0")
    resp = register(client, {"Name": "x", "Meta": {"bad key": "v"}})
    assert resp.status_code == 400
    assert (
        resp.text
        == "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters"
    )
    assert client.get("/v1/agent/services").json() == {}


def test_06_default_check_ids_and_names(client: httpx.Client) -> None:
    assert register(client, {"Name": "one", "ID": "one-1", "Check": {"TTL": "10s"}}).status_code == 200
    body = {"Name": "two", "ID": "two-1", "Check": {"TTL": "10s"}, "Checks": [{"TTL": "20s"}]}
    assert register(client, body).status_code == 200
    checks = agent_checks(client)
    assert set(checks) == {"service:one-1", "service:two-1:1", "service:two-1:2"}
    assert checks["service:one-1"]["Name"] == "Service 'one' check"
    # "Check" comes first, then "Checks".
    assert checks["service:two-1:1"]["Interval"] == "" and checks["service:two-1:2"]["Name"] == "Service 'two' check"
    assert checks["service:two-1:2"]["ServiceID"] == "two-1"


def test_07_initial_status(client: httpx.Client) -> None:
    register(client, {"Name": "a", "Check": {"TTL": "30s"}})
    register(client, {"Name": "b", "Check": {"TTL": "30s", "Status": "passing"}})
    checks = agent_checks(client)
    assert checks["service:a"]["Status"] == "critical"
    assert checks["service:b"]["Status"] == "passing"
    health = client.get("/v1/health/service/a").json()
    assert health[0]["Checks"][1]["Status"] == "critical"


def test_08_reregister_keeps_status_and_old_checks(client: httpx.Client) -> None:
    body: dict[str, Any] = {"Name": "x", "Checks": [{"CheckID": "a", "TTL": "30s"}]}
    assert register(client, body).status_code == 200
    assert client.put("/v1/agent/check/pass/a", params={"note": "fine"}).status_code == 200
    # Same ID again: a body Status loses to the status the check already has.
    again = {"Name": "x", "Tags": ["new"], "Checks": [{"CheckID": "a", "TTL": "30s", "Status": "critical"}]}
    assert register(client, again).status_code == 200
    check = agent_checks(client)["a"]
    assert (check["Status"], check["Output"]) == ("passing", "fine")
    assert check["ServiceTags"] == ["new"]
    # Re-registering with a different check keeps the old one (no replace-existing-checks).
    assert register(client, {"Name": "x", "Checks": [{"CheckID": "b", "TTL": "30s"}]}).status_code == 200
    assert set(agent_checks(client)) == {"a", "b"}
    assert client.get("/v1/agent/services").json()["x"]["Tags"] == []


def test_09_replace_existing_checks(client: httpx.Client) -> None:
    register(client, {"Name": "x", "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]})
    # "=1" is not "true": ignored.
    register(client, {"Name": "x", "Checks": [{"CheckID": "a", "TTL": "30s"}]}, **{"replace-existing-checks": "1"})
    assert set(agent_checks(client)) == {"a", "b"}
    register(client, {"Name": "x", "Checks": [{"CheckID": "a", "TTL": "30s"}]}, **{"replace-existing-checks": "true"})
    assert set(agent_checks(client)) == {"a"}
    health = client.get("/v1/health/service/x").json()
    assert [c["CheckID"] for c in health[0]["Checks"]] == ["serfHealth", "a"]
    # Presence alone (empty value) also counts.
    register(client, {"Name": "x"}, **{"replace-existing-checks": ""})
    assert agent_checks(client) == {}


def test_10_deregister_removes_everywhere(client: httpx.Client) -> None:
    register(client, {"Name": "web", "ID": "web-1", "Tags": ["t"], "Check": {"TTL": "30s"}})
    assert client.get("/v1/health/service/web").json() != []
    resp = client.put("/v1/agent/service/deregister/web-1")
    assert (resp.status_code, resp.content) == (200, b"")
    assert client.get("/v1/agent/services").json() == {}
    assert agent_checks(client) == {}
    assert client.get("/v1/catalog/service/web").json() == []
    assert client.get("/v1/health/service/web").json() == []
    assert "web" not in client.get("/v1/catalog/services").json()


def test_11_deregister_unknown_and_wrong_method(client: httpx.Client) -> None:
    resp = client.put("/v1/agent/service/deregister/nope")
    assert (resp.status_code, resp.text) == (404, UNKNOWN_SERVICE.format("nope"))
    resp = client.get("/v1/agent/service/deregister/nope")
    assert (resp.status_code, resp.text) == (405, "method GET not allowed")
    assert resp.headers["Allow"] == "OPTIONS,PUT"
    resp = client.put("/v1/kv/")
    assert (resp.status_code, resp.text) == (400, "Missing key name")
    resp = client.post("/v1/kv/a")
    assert (resp.status_code, resp.headers["Allow"]) == (405, "OPTIONS,GET,PUT,DELETE")
    assert client.options("/v1/agent/service/register").status_code == 200
    resp = client.get("/v1/nonsense")
    assert (resp.status_code, resp.text) == (404, "Invalid URL path: not a recognized HTTP API endpoint")


# ---------------------------------------------------------------------------------------------- 12-18 checks


def test_12_pass_warn_fail_with_note(client: httpx.Client) -> None:
    register(client, {"Name": "x", "Check": {"CheckID": "t", "TTL": "30s"}})
    for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        resp = client.put(f"/v1/agent/check/{verb}/t", params={"note": f"note {verb}"})
        assert (resp.status_code, resp.content) == (200, b"")
        check = agent_checks(client)["t"]
        assert (check["Status"], check["Output"]) == (status, f"note {verb}")
    # update takes a JSON body
    resp = client.put("/v1/agent/check/update/t", json={"Status": "passing", "Output": "via update"})
    assert resp.status_code == 200
    assert agent_checks(client)["t"]["Output"] == "via update"
    # writes need PUT
    assert client.get("/v1/agent/check/pass/t").status_code == 405


def test_13_update_invalid_status(client: httpx.Client) -> None:
    register(client, {"Name": "x", "Check": {"CheckID": "t", "TTL": "30s"}})
    resp = client.put("/v1/agent/check/update/t", json={"Status": "nope"})
    assert (resp.status_code, resp.text) == (400, "Invalid check status: 'nope'")


def test_14_ttl_update_unknown_and_non_ttl(client: httpx.Client, target: Target) -> None:
    resp = client.put("/v1/agent/check/pass/ghost")
    assert (resp.status_code, resp.text) == (404, UNKNOWN_CHECK.format("ghost"))
    resp = client.put("/v1/agent/check/update/ghost", json={"Status": "passing"})
    assert (resp.status_code, resp.text) == (404, UNKNOWN_CHECK.format("ghost"))
    register(client, {"Name": "x", "Check": {"CheckID": "h", "HTTP": target.url, "Interval": "10s"}})
    resp = client.put("/v1/agent/check/pass/h")
    assert (resp.status_code, resp.text) == (500, 'CheckID "h" does not have associated TTL')


def test_15_missed_ttl_goes_critical(client: httpx.Client) -> None:
    register(client, {"Name": "x", "Checks": [{"CheckID": "quiet", "TTL": "500ms", "Status": "passing"}]})
    register(client, {"Name": "y", "Checks": [{"CheckID": "talker", "TTL": "500ms"}]})
    client.put("/v1/agent/check/pass/talker", params={"note": "last words"})
    wait_for(lambda: agent_checks(client)["quiet"]["Status"] == "critical", timeout=5)
    assert agent_checks(client)["quiet"]["Output"] == "TTL expired"
    wait_for(lambda: agent_checks(client)["talker"]["Status"] == "critical", timeout=5)
    assert agent_checks(client)["talker"]["Output"] == "TTL expired (last output before timeout follows): last words"
    # The status change reached the catalog too.
    checks = client.get("/v1/health/service/x").json()[0]["Checks"]
    assert checks[1]["Status"] == "critical" and checks[1]["Output"].startswith("TTL expired")


def test_16_output_truncation(client: httpx.Client) -> None:
    register(client, {"Name": "x", "Check": {"CheckID": "t", "TTL": "30s"}})
    resp = client.put("/v1/agent/check/update/t", json={"Status": "passing", "Output": "a" * 5000})
    assert resp.status_code == 200
    assert agent_checks(client)["t"]["Output"] == "a" * 4096 + " ... (captured 4096 of 5000 bytes)"
    client.put("/v1/agent/check/warn/t", params={"note": "b" * 5000})
    assert agent_checks(client)["t"]["Output"] == "b" * 4096 + " ... (captured 4096 of 5000 bytes)"


def test_17_http_check_statuses(client: httpx.Client, target: Target) -> None:
    refused = f"http://127.0.0.1:{free_port()}/"
    cases = {
        "ok": (f"{target.url}/status/200", "passing"),
        "nocontent": (f"{target.url}/status/204", "passing"),
        "slowdown": (f"{target.url}/status/429", "warning"),
        "broken": (f"{target.url}/status/500", "critical"),
        "refused": (refused, "critical"),
    }
    for cid, (url, _) in cases.items():
        # An initial "warning" proves each status below was set by a probe, not left over.
        body = {"Name": f"svc-{cid}", "Check": {"CheckID": cid, "HTTP": url, "Interval": "1s", "Status": "warning"}}
        assert register(client, body).status_code == 200

    def settled() -> bool:
        checks = agent_checks(client)
        return all(checks[cid]["Output"] != "" for cid in cases)

    wait_for(settled, timeout=10)
    checks = agent_checks(client)
    for cid, (_, status) in cases.items():
        assert checks[cid]["Status"] == status, (cid, checks[cid])
    assert checks["ok"]["Output"] == f"HTTP GET {target.url}/status/200: 200 OK Output: answer 200"
    assert checks["nocontent"]["Output"] == f"HTTP GET {target.url}/status/204: 204 No Content Output: "
    assert checks["slowdown"]["Output"] == f"HTTP GET {target.url}/status/429: 429 Too Many Requests Output: answer 429"
    assert checks["broken"]["Output"].startswith(f"HTTP GET {target.url}/status/500: 500 Internal Server Error")
    port = refused.rsplit(":", 1)[1].strip("/")
    assert checks["refused"]["Output"] == f'Get "{refused}": dial tcp 127.0.0.1:{port}: connect: connection refused'
    assert checks["ok"]["Type"] == "http" and checks["ok"]["Interval"] == "1s"
    probe = target.requests[0]["headers"]
    assert probe["User-Agent"] == "Consul Health Check"
    assert probe["Accept"] == "text/plain, text/*, */*"


def test_17_http_check_method_header_body(client: httpx.Client, target: Target) -> None:
    check = {
        "CheckID": "post",
        "HTTP": f"{target.url}/status/200",
        "Method": "POST",
        "Header": {"X-Probe": ["yes"]},
        "Body": "{}",
        "Interval": "1s",
    }
    register(client, {"Name": "x", "Check": check})
    wait_for(lambda: agent_checks(client)["post"]["Status"] == "passing")
    sent = next(r for r in target.requests if r["method"] == "POST")
    assert sent["headers"]["X-Probe"] == "yes"
    assert agent_checks(client)["post"]["Output"].startswith(f"HTTP POST {target.url}/status/200: 200 OK")


def test_17_tcp_check(client: httpx.Client, target: Target) -> None:
    register(client, {"Name": "x", "Check": {"CheckID": "tcp", "TCP": f"127.0.0.1:{target.port}", "Interval": "1s"}})
    wait_for(lambda: agent_checks(client)["tcp"]["Status"] == "passing")
    assert agent_checks(client)["tcp"]["Output"] == f"TCP connect 127.0.0.1:{target.port}: Success"


def test_18_deregister_critical_service_after(registry: RegistryThread, client: httpx.Client) -> None:
    """Scaled: the test registry floors DCSA at 2 s (Consul: 1 min) and reaps every 0.2 s (Consul: 30 s).
    A "500ms" DCSA behaves as the floor; the clock starts when the TTL first expires, not at registration."""
    check = {"TTL": "500ms", "DeregisterCriticalServiceAfter": "500ms"}
    start = time.monotonic()
    register(client, {"Name": "doomed", "Check": check})
    register(client, {"Name": "healthy", "Check": {**check, "CheckID": "kept"}})
    # Keep "healthy" passing throughout.
    while time.monotonic() - start < 1.8:
        client.put("/v1/agent/check/pass/kept")
        time.sleep(0.1)
    # TTL expired at ~0.5 s; with a 2 s floor the service is still there at 1.8 s...
    assert "doomed" in client.get("/v1/agent/services").json()
    deadline = time.monotonic() + 5
    while "doomed" in client.get("/v1/agent/services").json():
        client.put("/v1/agent/check/pass/kept")
        assert time.monotonic() < deadline, "doomed service was never reaped"
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    # ...and gone after expiry (0.5 s) + floor (2 s) + at most one reap period, never restored.
    assert 2.5 <= elapsed <= 4.5
    assert client.get("/v1/health/service/doomed").json() == []
    assert "healthy" in client.get("/v1/agent/services").json()
    assert "deregistered service" in registry.sink.text()


def test_18_dcsa_floor_and_clock_logic() -> None:
    """The same rules at Consul's real values, on the state directly (no 90 s wait)."""
    from stator.registry.model import CheckDef, ServiceDef
    from stator.registry.state import State

    now = [1000.0]
    state = State(clock=lambda: now[0])  # default floor: 60 s
    assert state.catalog.dcsa_min == 60.0
    assert state.catalog.effective_reap_after(10 * 10**9) == 60.0  # "10s" behaves as 1m
    assert state.catalog.effective_reap_after(60 * 10**9) == 60.0
    assert state.catalog.effective_reap_after(90 * 10**9) == 90.0
    assert state.catalog.effective_reap_after(0) is None
    state.catalog.register_service(ServiceDef(id="s", name="s"), [CheckDef(ttl_ns=5 * 10**9, dcsa_ns=60 * 10**9)])
    # Critical by its initial status, but no critical result recorded yet: the clock has not started.
    now[0] += 500
    assert state.catalog.reap_candidates() == []
    state.catalog.set_check_status("service:s", "critical", "TTL expired")  # TTL expiry at t=5s
    now[0] += 60
    assert state.catalog.reap_candidates() == []  # exactly 60 s: not yet "longer than"
    now[0] += 0.5
    assert state.catalog.reap_candidates() == ["s"]
    # A non-critical result resets the clock.
    state.catalog.set_check_status("service:s", "passing", "")
    state.catalog.set_check_status("service:s", "critical", "again")
    now[0] += 30
    assert state.catalog.reap_candidates() == []


# ---------------------------------------------------------------------------------------------- 19-25 KV


def test_19_kv_put_get(client: httpx.Client) -> None:
    resp = client.put("/v1/kv/app/config", content=b"hello")
    assert (resp.status_code, resp.json()) == (200, True)
    resp = client.get("/v1/kv/app/config")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    [entry] = resp.json()
    assert entry["Key"] == "app/config"
    assert base64.b64decode(entry["Value"]) == b"hello"
    assert (entry["Flags"], entry["LockIndex"]) == (0, 0)
    assert entry["CreateIndex"] == entry["ModifyIndex"] >= 1
    assert "Session" not in entry
    assert index_of(resp) == entry["ModifyIndex"]


def test_20_kv_missing(client: httpx.Client) -> None:
    resp = client.get("/v1/kv/nothing/here")
    assert resp.status_code == 404
    assert resp.content == b""
    assert index_of(resp) >= 1
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    resp = client.get("/v1/kv/")
    assert (resp.status_code, resp.text) == (400, "Missing key name")


def test_21_raw_recurse_keys(client: httpx.Client) -> None:
    for key in ("dir/b", "dir/a", "dir/sub/x", "dir/sub/y", "other"):
        client.put(f"/v1/kv/{key}", content=key.encode())
    resp = client.get("/v1/kv/dir/a", params={"raw": ""})
    assert resp.content == b"dir/a"
    assert resp.headers["content-type"] == "text/plain"
    assert resp.headers["x-content-type-options"] == "nosniff"
    resp = client.get("/v1/kv/dir/?recurse")
    assert [e["Key"] for e in resp.json()] == ["dir/a", "dir/b", "dir/sub/x", "dir/sub/y"]
    # Presence is what counts: recurse=false still recurses.
    assert len(client.get("/v1/kv/dir/", params={"recurse": "false"}).json()) == 4
    assert client.get("/v1/kv/dir/?keys&separator=/").json() == ["dir/a", "dir/b", "dir/sub/"]
    assert client.get("/v1/kv/dir/?keys").json() == ["dir/a", "dir/b", "dir/sub/x", "dir/sub/y"]
    assert client.get("/v1/kv/?keys&separator=/").json() == ["dir/", "other"]
    assert client.get("/v1/kv/none/?keys").status_code == 404
    assert client.get("/v1/kv/none/?recurse").status_code == 404


def test_21_keys_on_empty_root(client: httpx.Client) -> None:
    resp = client.get("/v1/kv/?keys")
    assert (resp.status_code, resp.json()) == (200, [])


def test_22_cas(client: httpx.Client) -> None:
    assert client.put("/v1/kv/c?cas=0", content=b"1").json() is True  # create-only on a missing key
    assert client.put("/v1/kv/c?cas=0", content=b"2").json() is False  # exists already
    modify = client.get("/v1/kv/c").json()[0]["ModifyIndex"]
    assert client.put(f"/v1/kv/c?cas={modify + 1}", content=b"3").json() is False
    assert client.put(f"/v1/kv/c?cas={modify}", content=b"4").json() is True
    entry = client.get("/v1/kv/c").json()[0]
    assert entry["ModifyIndex"] > modify and base64.b64decode(entry["Value"]) == b"4"
    assert client.put("/v1/kv/missing?cas=50", content=b"x").json() is False
    resp = client.put("/v1/kv/c?cas=abc", content=b"x")
    assert (resp.status_code, resp.text) == (500, 'strconv.ParseUint: parsing "abc": invalid syntax')
    resp = client.put("/v1/kv/c?cas=1&acquire=s", content=b"x")
    assert resp.status_code == 400 and resp.text == "Conflicting flags: acquire=s&cas=1"


def test_23_flags_and_empty_value(client: httpx.Client) -> None:
    client.put("/v1/kv/f?flags=42", content=b"v")
    assert client.get("/v1/kv/f").json()[0]["Flags"] == 42
    client.put("/v1/kv/empty", content=b"")
    assert client.get("/v1/kv/empty").json()[0]["Value"] is None
    assert client.get("/v1/kv/empty?raw").content == b""
    resp = client.put("/v1/kv/f?flags=-1", content=b"v")
    assert (resp.status_code, resp.text) == (500, 'strconv.ParseUint: parsing "-1": invalid syntax')


def test_24_value_size_limit(client: httpx.Client) -> None:
    resp = client.put("/v1/kv/big", content=b"x" * 524289)
    assert resp.status_code == 413
    assert resp.text.startswith("Request body(524289 bytes) too large, max size: 524288 bytes. See ")
    assert client.get("/v1/kv/big").status_code == 404
    resp = client.put("/v1/kv/big", content=b"x" * 524288)
    assert (resp.status_code, resp.json()) == (200, True)
    assert len(client.get("/v1/kv/big?raw").content) == 524288


def test_24_chunked_body_over_limit(client: httpx.Client) -> None:
    def chunks() -> Any:
        for _ in range(9):
            yield b"x" * 65536

    resp = client.put("/v1/kv/chunked", content=chunks())
    assert resp.status_code == 413


def test_25_delete(client: httpx.Client) -> None:
    client.put("/v1/kv/del/a", content=b"1")
    client.put("/v1/kv/del/b", content=b"1")
    client.put("/v1/kv/keep", content=b"1")
    assert client.delete("/v1/kv/del/a").json() is True
    assert client.get("/v1/kv/del/a").status_code == 404
    assert client.delete("/v1/kv/never-existed").json() is True
    assert client.delete("/v1/kv/del/?recurse").json() is True
    assert client.get("/v1/kv/del/?recurse").status_code == 404
    assert client.get("/v1/kv/keep").status_code == 200
    # DELETE with cas: the CAS result; cas=0 never deletes an existing key.
    client.put("/v1/kv/d", content=b"1")
    assert client.delete("/v1/kv/d?cas=0").json() is False
    modify = client.get("/v1/kv/d").json()[0]["ModifyIndex"]
    assert client.delete(f"/v1/kv/d?cas={modify}").json() is True
    resp = client.delete("/v1/kv/d?cas=1&recurse")
    assert resp.status_code == 400 and resp.text.startswith("Conflicting flags: ")


# ---------------------------------------------------------------------------------------------- 26-31 blocking


READS = [
    "/v1/catalog/services",
    "/v1/catalog/service/web",
    "/v1/catalog/service/absent",
    "/v1/health/service/web",
    "/v1/health/service/absent",
    "/v1/kv/k",
    "/v1/kv/absent",
    "/v1/kv/?recurse",
    "/v1/kv/?keys",
    "/v1/kv/k?raw",
]


@pytest.mark.parametrize("path", READS)
def test_26_meta_headers_on_every_read(client: httpx.Client, path: str) -> None:
    register(client, {"Name": "web"})
    client.put("/v1/kv/k", content=b"v")
    resp = client.get(path)
    assert resp.status_code in (200, 404)
    assert int(resp.headers["X-Consul-Index"]) >= 1
    assert resp.headers["X-Consul-KnownLeader"] in ("true", "false")
    assert resp.headers["X-Consul-LastContact"].isdigit()


def test_26_index_never_zero_on_fresh_registry(client: httpx.Client) -> None:
    for path in ("/v1/kv/x", "/v1/kv/?recurse", "/v1/kv/?keys", "/v1/health/service/x", "/v1/catalog/services"):
        assert index_of(client.get(path)) >= 1


def test_27_idle_blocking_returns_after_wait(client: httpx.Client) -> None:
    client.put("/v1/kv/idle", content=b"v")
    index = index_of(client.get("/v1/kv/idle"))
    started = time.monotonic()
    resp = client.get("/v1/kv/idle", params={"index": index, "wait": "1s"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 200 and index_of(resp) == index
    assert 1.0 <= elapsed <= 1.0 * 17 / 16 + 0.5


def test_28_write_wakes_blocked_queries(registry: RegistryThread, client: httpx.Client) -> None:
    import concurrent.futures

    client.put("/v1/kv/w", content=b"1")
    register(client, {"Name": "web", "Check": {"CheckID": "c", "TTL": "30s"}})
    kv_index = index_of(client.get("/v1/kv/w"))
    health_index = index_of(client.get("/v1/health/service/web"))
    services_index = index_of(client.get("/v1/catalog/services"))

    def blocked(path: str, index: int) -> tuple[float, httpx.Response]:
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            t0 = time.monotonic()
            resp = c.get(path, params={"index": index, "wait": "20s"})
            return time.monotonic() - t0, resp

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(blocked, "/v1/kv/w", kv_index),
            pool.submit(blocked, "/v1/health/service/web", health_index),
            pool.submit(blocked, "/v1/catalog/services", services_index),
        ]
        wait_for(lambda: registry.state.waiter_count() == 3)
        client.put("/v1/kv/w", content=b"2")
        client.put("/v1/agent/check/pass/c")
        register(client, {"Name": "api"})
        results = [f.result(10) for f in futures]
    for (elapsed, resp), old in zip(results, (kv_index, health_index, services_index), strict=True):
        assert resp.status_code == 200
        assert elapsed < 1.0 + 1.0  # woken, not timed out (generous slack for a loaded CI box)
        assert index_of(resp) > old
    assert "api" in results[2][1].json()


def test_29_missing_key_wakes_on_creation(registry: RegistryThread, client: httpx.Client) -> None:
    import concurrent.futures

    resp = client.get("/v1/kv/later")
    assert resp.status_code == 404
    index = index_of(resp)

    def blocked() -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            return c.get("/v1/kv/later", params={"index": index, "wait": "20s"})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(blocked)
        wait_for(lambda: registry.state.waiter_count() == 1)
        client.put("/v1/kv/later", content=b"here")
        resp = fut.result(5)
    assert resp.status_code == 200 and index_of(resp) > index
    assert base64.b64decode(resp.json()[0]["Value"]) == b"here"


def test_30_wait_and_index_parsing(client: httpx.Client) -> None:
    client.put("/v1/kv/p", content=b"v")
    # No index: immediate, whatever the wait.
    started = time.monotonic()
    assert client.get("/v1/kv/p", params={"wait": "20m"}).status_code == 200
    assert time.monotonic() - started < 1.0
    resp = client.get("/v1/kv/p", params={"index": "1", "wait": "abc"})
    assert (resp.status_code, resp.text) == (400, "Invalid wait time")
    resp = client.get("/v1/kv/p", params={"index": "-1"})
    assert (resp.status_code, resp.text) == (400, "Invalid index")
    resp = client.get("/v1/health/service/x", params={"index": "x1"})
    assert (resp.status_code, resp.text) == (400, "Invalid index")


def test_30_wait_is_capped_at_ten_minutes() -> None:
    rng = random.Random(1)
    for _ in range(200):
        capped = query_timeout(20 * 60 * 10**9, 600.0, 300.0, rng)
        assert 600.0 <= capped <= 600.0 * 17 / 16
        default = query_timeout(0, 600.0, 300.0, rng)  # unset wait: 5 minutes
        assert 300.0 <= default <= 300.0 * 17 / 16
        short = query_timeout(2 * 10**9, 600.0, 300.0, rng)
        assert 2.0 <= short <= 2.0 * 17 / 16


def test_31_consistency_flags(client: httpx.Client) -> None:
    for query in ("stale", "stale=false", "consistent", "consistent=whatever", "stale=&dc=dc1"):
        assert client.get(f"/v1/catalog/services?{query}").status_code == 200
        assert client.get(f"/v1/kv/x?{query}").status_code == 404
    resp = client.get("/v1/health/service/x?stale&consistent")
    assert (resp.status_code, resp.text) == (400, "Cannot specify ?stale with ?consistent, conflicting semantics.")


# ---------------------------------------------------------------------------------------------- 32-36 catalog


def test_32_catalog_services(client: httpx.Client) -> None:
    register(client, {"Name": "web", "ID": "web-1", "Tags": ["a", "b"]})
    register(client, {"Name": "web", "ID": "web-2", "Tags": ["b", "c"]})
    register(client, {"Name": "db"})
    services = client.get("/v1/catalog/services").json()
    assert services["consul"] == []
    assert services["db"] == []
    assert sorted(services["web"]) == ["a", "b", "c"]
    matched = client.get("/v1/catalog/services", params={"node-meta": "consul-network-segment:"}).json()
    assert set(matched) == {"consul", "web", "db"}
    assert client.get("/v1/catalog/services", params={"node-meta": "rack:r1"}).json() == {}
    rows = client.get("/v1/catalog/service/web").json()
    assert [r["ServiceID"] for r in rows] == ["web-1", "web-2"]
    assert rows[0]["ServiceTags"] == ["a", "b"] and rows[0]["Node"] == "test-node"
    assert rows[0]["ModifyIndex"] >= rows[0]["CreateIndex"] >= 1


def test_33_health_service_shape(client: httpx.Client) -> None:
    register(client, {"Name": "web", "Address": "10.1.2.3", "Port": 8080})
    [entry] = client.get("/v1/health/service/web").json()
    assert set(entry) == {"Node", "Service", "Checks"}
    assert entry["Node"]["Node"] == "test-node" and entry["Node"]["Address"] == "127.0.0.1"
    assert entry["Node"]["TaggedAddresses"]["lan_ipv4"] == "127.0.0.1"
    assert entry["Service"]["Tags"] == [] and entry["Service"]["Meta"] == {}
    assert entry["Service"]["Address"] == "10.1.2.3" and entry["Service"]["Port"] == 8080
    assert entry["Service"]["TaggedAddresses"]["lan_ipv4"] == {"Address": "10.1.2.3", "Port": 8080}
    [serf] = entry["Checks"]
    assert (serf["CheckID"], serf["Name"], serf["Status"]) == ("serfHealth", "Serf Health Status", "passing")
    assert serf["ServiceTags"] == []
    resp = client.get("/v1/health/service/unknown")
    assert (resp.status_code, resp.json()) == (200, [])


def test_34_passing_filter(client: httpx.Client) -> None:
    for sid, status in (("ok", "passing"), ("meh", "warning"), ("bad", "critical")):
        register(client, {"Name": "web", "ID": sid, "Check": {"TTL": "30s", "Status": status}})
    ids = lambda q: sorted(e["Service"]["ID"] for e in client.get(f"/v1/health/service/web{q}").json())  # noqa: E731
    assert ids("") == ["bad", "meh", "ok"]
    assert ids("?passing") == ["ok"]
    assert ids("?passing=1") == ["ok"]
    assert ids("?passing=true") == ["ok"]
    assert ids("?passing=false") == ["bad", "meh", "ok"]
    resp = client.get("/v1/health/service/web?passing=maybe")
    assert (resp.status_code, resp.text) == (400, "Invalid value for ?passing")


def test_35_tags_and_case_insensitive(client: httpx.Client) -> None:
    register(client, {"Name": "Web", "ID": "w1", "Tags": ["Metrics", "blue"]})
    register(client, {"Name": "web", "ID": "w2", "Tags": ["metrics"]})
    ids = lambda q: sorted(e["Service"]["ID"] for e in client.get(f"/v1/health/service/{q}").json())  # noqa: E731
    assert ids("web") == ["w1", "w2"]
    assert ids("WEB?tag=metrics") == ["w1", "w2"]
    assert ids("web?tag=METRICS&tag=Blue") == ["w1"]
    assert ids("web?tag=metrics&tag=green") == []
    rows = client.get("/v1/catalog/service/web?tag=BLUE").json()
    assert [r["ServiceID"] for r in rows] == ["w1"]


def test_36_agent_self(client: httpx.Client) -> None:
    body = client.get("/v1/agent/self").json()
    assert isinstance(body["Config"]["Datacenter"], str) and body["Config"]["Datacenter"] == "dc1"
    assert body and all(isinstance(v, dict) for v in body.values())
    assert all(isinstance(v, dict) for v in body["Stats"].values())
