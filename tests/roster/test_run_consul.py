"""``stator run`` with ``STATOR_REGISTRY=consul`` against the dev registry, as users run it: registry down at
start, registry restarted empty, registry misbehaving (500s, garbage, hanging), SIGTERM - each checked from the
registry's side as well as in the service's own logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ServiceProcess
from tests.registry.conftest import RegistryThread

from .chaos import ChaosProxy
from .conftest import DevRegistry, count, free_port, restart_empty, wait_count

RETRY_MAX = 1.0
INTERVAL = 3.0
SHUTDOWN = 6.0
# What a loaded 2-core machine running other suites may add to any "within X": process start, scheduling.
SLACK = 10.0

FAST = {
    "STATOR_ROSTER_INTERVAL": f"{INTERVAL}s",
    "STATOR_ROSTER_RETRY_INITIAL": "200ms",
    "STATOR_ROSTER_RETRY_MAX": f"{RETRY_MAX}s",
    "STATOR_ROSTER_CHECK_INTERVAL": "1s",
    "STATOR_ROSTER_DEREGISTER_TIMEOUT": "1s",
    "STATOR_CONSUL_TIMEOUT": "1s",
    "STATOR_SHUTDOWN_TIMEOUT": f"{SHUTDOWN}s",
}
ROSTER_MSGS = {"registered", "registration lost", "registry unreachable", "registry reachable again"}


def service_id(svc: ServiceProcess) -> str:
    return f"stator-{svc.wait_for('starting up')['run_id']}"


def agent_service(url: str, sid: str) -> int:
    return httpx.get(f"{url}/v1/agent/service/{sid}", timeout=5).status_code


def passing_ids(url: str) -> list[str]:
    entries = httpx.get(f"{url}/v1/health/service/stator", params={"passing": ""}, timeout=5).json()
    return [e["Service"]["ID"] for e in entries]


def test_down_at_start_restarted_empty_and_sigterm(spawn: Any, dev_registry: Callable[[int], DevRegistry]) -> None:
    port = free_port()
    svc = spawn(STATOR_REGISTRY="consul", STATOR_CONSUL_ADDR=f"127.0.0.1:{port}", **FAST)
    sid = service_id(svc)

    # Registry down at start: one warning, and the service serves normally.
    svc.wait_for("registry unreachable", operation="register")
    assert httpx.get(svc.base_url + "/hello", timeout=5).status_code == 200
    assert httpx.get(svc.base_url + "/-/ready", timeout=5).status_code == 200

    # The registry comes up: registered within one (capped) backoff step.
    reg = dev_registry(port)
    registered = svc.wait_for("registered", timeout=RETRY_MAX + SLACK)
    assert registered["after_failures"] >= 1
    assert agent_service(reg.url, sid) == 200
    assert passing_ids(reg.url) == [sid]

    # The registry restarts with nothing (wiped data dir): registered again within one true-up interval.
    restart_empty(reg)
    assert agent_service(reg.url, sid) == 404
    wait_count(svc, "registered", 2, timeout=INTERVAL + SLACK)
    assert agent_service(reg.url, sid) == 200

    monitor = httpx.get(svc.base_url + "/monitor", timeout=5).json()["registration"]
    assert monitor["state"] == "registered" and monitor["registrations"] == 2 and monitor["lost"] == 1
    assert monitor["instance"]["id"] == sid and monitor["endpoint"] == f"http://127.0.0.1:{port}"
    metrics = httpx.get(svc.base_url + "/metrics", timeout=5).text
    assert 'stator_registration_up{registry="consul"} 1.0' in metrics
    assert 'stator_registration_registrations_total{registry="consul"} 2.0' in metrics
    assert 'stator_registration_lost_total{registry="consul"} 1.0' in metrics

    # SIGTERM: deregistered before the HTTP drain, and so before the process exits.
    svc.signal()
    assert svc.wait(SHUTDOWN + SLACK) == 0
    msgs = svc.messages()
    assert msgs.index("shutting down") < msgs.index("deregistered") < msgs.index("shutting down http service")
    assert agent_service(reg.url, sid) == 404
    # Few lines for all that: one per state change. (A true-up may fall into the restart's second of downtime,
    # adding "registry unreachable" once more before "registration lost".)
    roster_lines = [m for m in msgs if m in ROSTER_MSGS]
    assert roster_lines[:2] == ["registry unreachable", "registered"]
    assert roster_lines[-2:] == ["registration lost", "registered"]
    assert len(roster_lines) <= 5


def test_misbehaving_registry_is_retried_with_backoff_and_shutdown_keeps_its_deadline(
    spawn: Any, registry: RegistryThread, proxy: Callable[[int], ChaosProxy]
) -> None:
    chaos = proxy(registry.port)
    env = {**FAST, "STATOR_ROSTER_INTERVAL": "500ms"}  # true-ups every half second: plenty of calls to fail
    svc = spawn(STATOR_REGISTRY="consul", STATOR_CONSUL_ADDR=chaos.address, **env)
    sid = service_id(svc)
    svc.wait_for("registered")
    base = svc.base_url
    lines_before = len(svc.lines)

    window = 2.0
    for mode in ("500", "garbage", "garbage200", "hang"):
        chaos.set_mode(mode)  # type: ignore[arg-type]
        began = time.monotonic()
        chaos.wait_requests(mode, 1, timeout=SLACK)  # the roster keeps trying ...
        # ... while requests are served as usual.
        answer = httpx.get(base + "/hello", timeout=5)
        assert answer.status_code == 200 and answer.json() == {"hello": "world"}
        time.sleep(max(0.0, began + window - time.monotonic()))
        # Bounded: backoff from 200 ms to a 1 s cap allows a handful per window; a tight loop would make hundreds.
        assert chaos.count(mode) <= 12, (mode, chaos.count(mode))

    # Not flooded: the whole outage is one line. Besides it only our four access-log lines (and, on a machine
    # loaded enough, a line from another part of the service - never one per failed call).
    during = [line.get("msg") for line in svc.lines[lines_before:]]
    assert [m for m in during if m in ROSTER_MSGS or "regist" in str(m)] == ["registry unreachable"]
    assert len([m for m in during if m not in ("request", "slow request")]) <= 3, during
    assert agent_service(registry.url, sid) == 200  # it kept its registration all along

    chaos.set_mode("forward")
    svc.wait_for("registry reachable again", timeout=RETRY_MAX + SLACK)

    # SIGTERM while the registry hangs: deregistration gives up after its own timeout, the exit keeps the deadline.
    chaos.set_mode("hang")
    began = time.monotonic()
    svc.signal()
    assert svc.wait(SHUTDOWN + SLACK) == 0
    assert time.monotonic() - began < SHUTDOWN + 3.0  # the deadline, plus process teardown
    msgs = svc.messages()
    assert msgs.index("deregistration timed out") < msgs.index("shutting down http service") < msgs.index("stopped")
    assert count(svc, "deregistered") == 0
