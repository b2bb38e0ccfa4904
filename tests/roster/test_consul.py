"""The Consul registrar against the dev registry (Consul agent API), plus what only a fake can show: the token
on the wire and never in a log, garbage answers refused, the advertised address, wiring from settings."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient, UnexpectedStatus, consul_client
from stator.config import load_settings
from stator.roster import ConsulRegistrar, Instance, Registrar, Roster, describe_instance, setup_registration
from stator.roster import address as address_mod
from stator.roster.address import advertised_address, detect_address
from stator.service import Service
from tests.registry.conftest import RegistryThread, Target

from .conftest import INSTANCE, eventually, memory_logger, messages


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture
async def consul(registry: RegistryThread) -> AsyncIterator[Callable[..., ConsulRegistrar]]:
    made: list[ConsulRegistrar] = []

    def make(**options: Any) -> ConsulRegistrar:
        registrar = ConsulRegistrar(HTTPClient(registry.url, timeout=5), **options)
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        await registrar.aclose()


def agent_get(registry: RegistryThread, path: str, **params: str) -> Any:
    response = httpx.get(registry.url + path, params=params, timeout=5)
    return response.json() if response.status_code == 200 else response.status_code


def deregister_behind_our_back(registry: RegistryThread, service_id: str) -> None:
    # Blocking is fine here: the registry serves from its own thread and loop.
    httpx.put(f"{registry.url}/v1/agent/service/deregister/{service_id}", timeout=5).raise_for_status()


def test_consul_registrar_satisfies_the_protocol() -> None:
    assert isinstance(ConsulRegistrar(HTTPClient("http://127.0.0.1:1")), Registrar)


async def test_http_check_registration_round_trip(
    registry: RegistryThread, consul: Callable[..., ConsulRegistrar], target: Target
) -> None:
    registrar = consul(check="http", check_interval=1.0, check_timeout=2.0, deregister_critical_after=90.0)
    instance = Instance(
        id="svc-1", name="svc", address="127.0.0.1", port=target.port, tags=("metrics", "blue"),
        meta={"version": "1.2.3", "run_id": "abc1234", "metrics_path": "/metrics"},
        health_url=f"{target.url}/status/200",
    )  # fmt: skip
    assert not await registrar.present(instance)
    await registrar.register(instance)
    assert await registrar.present(instance)

    svc = agent_get(registry, "/v1/agent/service/svc-1")
    assert svc["Service"] == "svc" and svc["Address"] == "127.0.0.1" and svc["Port"] == target.port
    assert svc["Tags"] == ["metrics", "blue"]
    assert svc["Meta"] == {"version": "1.2.3", "run_id": "abc1234", "metrics_path": "/metrics"}
    check = agent_get(registry, "/v1/agent/checks")["service:svc-1"]
    assert check["Type"] == "http" and check["Name"] == "svc readiness"
    assert check["Interval"] == "1s" and check["Timeout"] == "2s"
    # Registered only after readiness passed, so it starts passing: visible to ?passing at once.
    passing = agent_get(registry, "/v1/health/service/svc", passing="")
    assert [e["Service"]["ID"] for e in passing] == ["svc-1"]
    # Consul probes the health URL itself.
    await eventually(lambda: any(r["path"] == "/status/200" for r in target.requests), timeout=10)

    await registrar.deregister(instance)
    assert agent_get(registry, "/v1/agent/service/svc-1") == 404
    assert not await registrar.present(instance)
    await registrar.deregister(instance)  # 404 "Unknown service ID": already gone counts as done


async def test_ttl_check_is_heartbeated_from_readiness(
    registry: RegistryThread, consul: Callable[..., ConsulRegistrar]
) -> None:
    registrar = consul(check="ttl", ttl=30.0)
    assert registrar.heartbeat_interval == 10.0
    await registrar.register(INSTANCE)
    check = agent_get(registry, "/v1/agent/checks")["service:svc-abc1234"]
    assert check["Type"] == "ttl" and check["Status"] == "passing"

    assert await registrar.heartbeat(INSTANCE, False, "shutting down; db: timed out")
    check = agent_get(registry, "/v1/agent/checks")["service:svc-abc1234"]
    assert check["Status"] == "critical" and check["Output"] == "shutting down; db: timed out"
    assert await registrar.heartbeat(INSTANCE, True, "ready")
    assert agent_get(registry, "/v1/agent/checks")["service:svc-abc1234"]["Status"] == "passing"

    # The agent lost us (restart, reap): the TTL update answers 404 and the heartbeat says so.
    deregister_behind_our_back(registry, "svc-abc1234")
    assert not await registrar.heartbeat(INSTANCE, True, "ready")


async def test_roster_with_ttl_check_reregisters_on_404(
    registry: RegistryThread, consul: Callable[..., ConsulRegistrar]
) -> None:
    """Spring Cloud Consul's reregister-service-on-failure: a TTL update answered 404 re-registers at once."""
    registrar = consul(check="ttl", ttl=0.3)  # heartbeat every 0.1 s
    logger, sink = memory_logger()
    roster = Roster(registrar, lambda: INSTANCE, _ready, logger, CollectorRegistry(), interval=60.0, retry_initial=0.05)
    task = asyncio.create_task(roster.run())
    try:
        await eventually(lambda: roster.state == "registered")
        deregister_behind_our_back(registry, "svc-abc1234")
        await eventually(lambda: roster.registrations == 2)
        assert agent_get(registry, "/v1/agent/service/svc-abc1234") != 404
        assert messages(sink) == ["registered", "registration lost", "registered"]
        await roster.before_drain()
        assert agent_get(registry, "/v1/agent/service/svc-abc1234") == 404
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _ready() -> tuple[bool, str]:
    return True, "ready"


def test_payload_durations_are_go_strings() -> None:
    registrar = ConsulRegistrar(
        HTTPClient("http://x"), check="http", check_interval=1.5, check_timeout=0.25, deregister_critical_after=0
    )
    check = registrar.payload(INSTANCE)["Check"]
    assert check["Interval"] == "1.5s" and check["Timeout"] == "250ms"
    assert "DeregisterCriticalServiceAfter" not in check  # 0 = never
    assert check["HTTP"] == "http://127.0.0.1:8087/-/ready" and check["CheckID"] == "service:svc-abc1234"
    ttl = ConsulRegistrar(HTTPClient("http://x"), check="ttl", ttl=90, deregister_critical_after=600)
    check = ttl.payload(INSTANCE)["Check"]
    assert check["TTL"] == "1m30s" and check["DeregisterCriticalServiceAfter"] == "10m0s"
    assert "HTTP" not in check and "Interval" not in check


async def test_token_is_sent_and_never_logged() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    settings = load_settings({"STATOR_CONSUL_ADDR": "consul.internal:8500", "STATOR_CONSUL_TOKEN": "s3cr3t-t0ken"})
    logger, sink = memory_logger("debug")
    registrar = ConsulRegistrar(consul_client(settings.consul, logger, transport=httpx.MockTransport(answer)))
    await registrar.register(INSTANCE)
    await registrar.deregister(INSTANCE)
    assert [r.headers["X-Consul-Token"] for r in seen] == ["s3cr3t-t0ken", "s3cr3t-t0ken"]
    assert str(seen[0].url) == "http://consul.internal:8500/v1/agent/service/register"
    assert seen[0].method == "PUT" and orjson.loads(seen[0].content)["ID"] == "svc-abc1234"
    text = sink.text()
    assert "sending request" in text  # the exchange is logged at debug ...
    assert "s3cr3t-t0ken" not in text  # ... without the token
    assert "--redacted--" in text


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b"<html>proxy page</html>", ValueError),
        (200, b'{"ID": "someone-else"}', ValueError),
        (500, b"rpc error: No cluster leader", UnexpectedStatus),
        (403, b"ACL not found", UnexpectedStatus),
    ],
)
async def test_presence_refuses_answers_that_are_not_presence(status: int, body: bytes, error: type) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    registrar = ConsulRegistrar(HTTPClient("http://consul", transport=transport))
    with pytest.raises(error):
        await registrar.present(INSTANCE)


async def test_ttl_update_on_a_check_that_lost_its_ttl_reregisters() -> None:
    # Someone re-registered the ID with an HTTP check: Consul answers 500 "does not have associated TTL".
    body = b'CheckID "service:svc-abc1234" does not have associated TTL'
    transport = httpx.MockTransport(lambda request: httpx.Response(500, content=body))
    registrar = ConsulRegistrar(HTTPClient("http://consul", transport=transport), check="ttl")
    assert not await registrar.heartbeat(INSTANCE, True, "ready")
    other = httpx.MockTransport(lambda request: httpx.Response(500, content=b"rpc error"))
    registrar = ConsulRegistrar(HTTPClient("http://consul", transport=other), check="ttl")
    with pytest.raises(UnexpectedStatus):
        await registrar.heartbeat(INSTANCE, True, "ready")


async def test_register_failure_carries_status_and_body() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(400, content=b"Invalid service address"))
    registrar = ConsulRegistrar(HTTPClient("http://consul", transport=transport))
    with pytest.raises(UnexpectedStatus) as info:
        await registrar.register(INSTANCE)
    assert info.value.status == 400 and "Invalid service address" in str(info.value)


# -- the advertised address ------------------------------------------------------------------------------


def test_advertised_address_precedence() -> None:
    assert advertised_address("10.1.2.3", "127.0.0.1") == "10.1.2.3"  # configured wins
    assert advertised_address("", "127.0.0.1") == "127.0.0.1"  # a specific bind is the only reachable one
    assert advertised_address("", "192.168.7.9") == "192.168.7.9"
    assert advertised_address("", "::1") == "::1"
    assert advertised_address("", "myhost.example") == "myhost.example"
    detected = advertised_address("", "0.0.0.0")
    assert detected == detect_address() and detected != "0.0.0.0"
    assert advertised_address("", "::") == detected


def test_detection_contacts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("address detection must not send or connect anywhere")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "sendto", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    address = detect_address()
    assert address and address != "0.0.0.0"


def test_detection_prefers_private_and_falls_back_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(address_mod, "interface_addresses", lambda: ["127.0.0.1", "169.254.1.1", "8.8.4.4", "10.0.0.5"])
    assert detect_address() == "10.0.0.5"
    monkeypatch.setattr(address_mod, "interface_addresses", lambda: ["127.0.0.1", "8.8.4.4"])
    assert detect_address() == "8.8.4.4"  # a public address beats loopback when it is all there is
    monkeypatch.setattr(address_mod, "interface_addresses", lambda: ["127.0.0.1"])
    monkeypatch.setattr(address_mod, "hostname_addresses", lambda: ["127.0.1.1"])
    assert detect_address() == "127.0.0.1"
    monkeypatch.setattr(address_mod, "interface_addresses", list)
    monkeypatch.setattr(address_mod, "hostname_addresses", lambda: ["172.16.3.4"])
    assert detect_address() == "172.16.3.4"


# -- wiring from settings ----------------------------------------------------------------------------------


def _service(**env: str) -> Service:
    return Service(load_settings({"STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": "0", **env}))


async def test_setup_registration_follows_stator_registry() -> None:
    assert setup_registration(_service()) is None
    service = _service(STATOR_REGISTRY="consul", STATOR_ROSTER_CHECK="ttl", STATOR_ROSTER_TTL="9s")
    roster = service.roster  # the Service wires registration itself, wherever it is served
    assert roster is not None
    assert isinstance(roster.registrar, ConsulRegistrar)
    assert roster.registrar.check == "ttl" and roster.registrar.heartbeat_interval == 3.0
    assert any(worker is roster for worker, _ in service._workers)
    assert service.monitor()["registration"]["registry"] == "consul"
    assert service.monitor()["registration"]["state"] == "waiting"
    await roster.registrar.aclose()


async def test_describe_instance_from_the_service() -> None:
    service = _service(STATOR_SERVICE_NAME="pay", STATOR_SERVICE_TAGS="metrics,eu", STATOR_REGISTRY="consul")
    service.serving = True
    assert describe_instance(service) is None  # not listening yet
    service.address = ("127.0.0.1", 4321)
    instance = describe_instance(service)
    assert instance is not None
    assert instance.id == service.instance_id == f"pay-{service.run_id}"
    assert (instance.name, instance.address, instance.port) == ("pay", "127.0.0.1", 4321)
    assert instance.tags == ("metrics", "eu")
    assert instance.meta == {"version": service.version, "run_id": service.run_id, "metrics_path": "/metrics"}
    assert instance.health_url == "http://127.0.0.1:4321/-/ready"

    ops = _service(STATOR_OPS_PORT="0", STATOR_SERVICE_ID="pay-7", STATOR_SERVICE_ADDRESS="10.9.8.7")
    ops.serving = True
    ops.address = ("0.0.0.0", 4321)
    assert describe_instance(ops) is None  # the ops listener is not up yet
    ops.ops_address = ("0.0.0.0", 4322)
    instance = describe_instance(ops)
    assert instance is not None and instance.id == "pay-7" and instance.address == "10.9.8.7"
    assert instance.meta["metrics_port"] == "4322"
    assert instance.health_url == "http://10.9.8.7:4322/-/ready"


def test_registry_selector_and_help() -> None:
    from stator.config import ConfigError, format_help

    assert load_settings({"STATOR_REGISTRY": "etcd"}).roster.registry == "etcd"
    with pytest.raises(ConfigError, match="STATOR_REGISTRY='zookeeper'"):
        load_settings({"STATOR_REGISTRY": "zookeeper"})
    text = format_help()
    for name in ("STATOR_REGISTRY ", "STATOR_ROSTER_INTERVAL", "STATOR_ROSTER_CHECK ", "STATOR_ROSTER_TTL"):
        assert name in text
