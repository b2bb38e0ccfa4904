"""Random methods, paths, parameters and bodies against every endpoint: never a crash, never a 5xx other than the
documented ones (Consul's own 500s: bad flags/cas numbers, TTL update on a non-TTL check, unknown session,
another datacenter, script checks)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import FAST, RegistryThread

DOCUMENTED_500 = re.compile(
    r'(strconv\.ParseUint: parsing ".*": (invalid syntax|value out of range)'
    r'|CheckID ".*" does not have associated TTL'
    r'|invalid session ".*"'
    r"|No path to datacenter"
    r"|Scripts are disabled on this agent from remote calls; .*)",
    re.S,
)

METHODS = st.sampled_from(["GET", "PUT", "DELETE", "POST", "HEAD", "OPTIONS", "PATCH"])
SEGMENT = st.one_of(
    st.sampled_from(["web", "web-1", "service:web", "a/b", "", "x/", "..", "%2F", "c"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="?#"), max_size=12),
)
TEMPLATES = [
    "/v1/agent/self",
    "/v1/agent/services",
    "/v1/agent/checks",
    "/v1/agent/service/register",
    "/v1/agent/service/{}",
    "/v1/agent/service/deregister/{}",
    "/v1/agent/check/pass/{}",
    "/v1/agent/check/warn/{}",
    "/v1/agent/check/fail/{}",
    "/v1/agent/check/update/{}",
    "/v1/catalog/services",
    "/v1/catalog/service/{}",
    "/v1/catalog/datacenters",
    "/v1/health/service/{}",
    "/v1/kv/{}",
    "/v1/kv{}",
    "/v1/status/leader",
    "/v1/{}",
    "/{}",
]
PARAM_KEYS = [
    "index", "wait", "stale", "consistent", "recurse", "keys", "separator", "seperator", "raw", "cas", "flags",
    "acquire", "release", "passing", "tag", "node-meta", "dc", "filter", "note", "hash", "pretty", "ns",
    "replace-existing-checks", "token",
]  # fmt: skip
PARAM_VALUES = st.one_of(
    st.sampled_from(
        ["", "0", "1", "-1", "true", "false", "10ms", "1s", "abc", "dc1", "dc2", "k:v", "5m", "18446744073709551616"]
    ),
    st.integers(min_value=-5, max_value=10**20).map(str),
    st.text(max_size=10),
)
PARAMS = st.lists(st.tuples(st.one_of(st.sampled_from(PARAM_KEYS), st.text(max_size=6)), PARAM_VALUES), max_size=5)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["10s", "1m", "0", "-1s", "http://127.0.0.1:1/", "passing", "critical", "bogus", "0.0.0.0"]),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "Name", "name", "NAME", "ID", "Tags", "Port", "Address", "Meta", "Weights", "Check", "Checks",
            "TaggedAddresses", "tagged_addresses", "enable_tag_override", "EnableTagOverride", "Kind", "Proxy",
            "Connect", "CheckID", "TTL", "ttl", "HTTP", "http", "Interval", "Timeout", "Status", "Output", "Header",
            "Method", "Body", "TCP", "Args", "args", "DeregisterCriticalServiceAfter",
            "deregister_critical_service_after", "OutputMaxSize", "SuccessBeforePassing", "FailuresBeforeCritical",
            "Passing", "Warning", "GRPC", "AliasService", "Notes",
        ]
    ),
    st.text(max_size=8),
)  # fmt: skip


def _dumps(value: Any) -> bytes:
    # stdlib json: big integers and lone surrogates (as \udXXX escapes) are part of what is being tested.
    return json.dumps(value).encode()


JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=20,
)
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    JSON_VALUES.map(_dumps),
    st.dictionaries(KEYS, JSON_VALUES, max_size=8).map(_dumps),
)


@pytest.fixture(scope="module")
def fuzz_registry() -> Iterator[RegistryThread]:
    # Blocking queries time out after ~50 ms here so random index/wait pairs cannot stall the run.
    reg = RegistryThread(**FAST, max_query_time=0.05, default_query_time=0.05).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_registry: RegistryThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_registry.url, timeout=10) as c:
        yield c


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 500:
        assert resp.status_code == 500 and DOCUMENTED_500.fullmatch(resp.text), (resp.status_code, resp.text)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=METHODS, template=st.sampled_from(TEMPLATES), segment=SEGMENT, params=PARAMS, body=BODIES)
def test_random_requests(
    fuzz_client: httpx.Client, method: str, template: str, segment: str, params: list[Any], body: bytes
) -> None:
    path = template.format(segment)
    try:
        request = fuzz_client.build_request(method, path, params=params, content=body)
    except (httpx.InvalidURL, UnicodeEncodeError):
        return  # not expressible as an HTTP request at all
    _check(fuzz_client.send(request))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, params=PARAMS)
def test_random_registrations(fuzz_client: httpx.Client, body: bytes, params: list[Any]) -> None:
    _check(fuzz_client.put("/v1/agent/service/register", params=params, content=body))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    service=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    check=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    update=BODIES,
    verb=st.sampled_from(["pass", "warn", "fail", "update"]),
)
def test_random_checks(
    fuzz_client: httpx.Client, service: dict[str, Any], check: dict[str, Any], update: bytes, verb: str
) -> None:
    body = {**service, "Name": "fuzz", "ID": "fuzz-1", "Check": {**check, "CheckID": "fz"}}
    _check(fuzz_client.put("/v1/agent/service/register", content=_dumps(body)))
    _check(fuzz_client.put(f"/v1/agent/check/{verb}/fz", content=update))
    for path in ("/v1/agent/checks", "/v1/health/service/fuzz", "/v1/catalog/service/fuzz", "/v1/agent/services"):
        resp = fuzz_client.get(path)
        assert resp.status_code == 200, (path, resp.text)


def test_survived(fuzz_registry: RegistryThread, fuzz_client: httpx.Client) -> None:
    """Runs after the fuzzers (file order): the process is alive, answering, and logged no unhandled error."""
    assert fuzz_client.get("/v1/agent/self").status_code == 200
    assert fuzz_registry.thread.is_alive()
    assert fuzz_registry.unhandled() == []
