"""``stator run`` with ``STATOR_REGISTRY=etcd`` against a real etcd: down at start, restarted empty, misbehaving,
SIGTERM - checked from etcd's side as well as in the service's logs."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ServiceProcess

from .chaos import ChaosProxy
from .conftest import Etcd, count, restart_etcd_empty, wait_count

pytestmark = pytest.mark.external

RETRY_MAX = 1.0
INTERVAL = 3.0
SHUTDOWN = 6.0
SLACK = 10.0  # what a loaded 2-core machine may add to any "within X"
FAST = {
    "STATOR_ROSTER_INTERVAL": f"{INTERVAL}s",
    "STATOR_ROSTER_RETRY_INITIAL": "200ms",
    "STATOR_ROSTER_RETRY_MAX": f"{RETRY_MAX}s",
    "STATOR_ROSTER_DEREGISTER_TIMEOUT": "1s",
    "STATOR_SHUTDOWN_TIMEOUT": f"{SHUTDOWN}s",
    "STATOR_ETCD_PREFIX": "/demo/services",
}
ROSTER_MSGS = {"registered", "registration lost", "registry unreachable", "registry reachable again"}


def instance_key(svc: ServiceProcess) -> str:
    return f"/demo/services/stator/stator-{svc.wait_for('starting up')['run_id']}"


def etcd_value(server: Etcd, key: str) -> dict[str, Any] | None:
    body = {"key": base64.b64encode(key.encode()).decode()}
    kvs = httpx.post(f"{server.url}/v3/kv/range", json=body, timeout=5).json().get("kvs") or []
    return orjson.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def test_down_at_start_restarted_empty_and_sigterm(spawn: Any, etcd_server: Etcd) -> None:
    etcd_server.stop()  # known ports, nothing listening
    # A long TTL: after SIGTERM the key can only be gone at once if the lease was revoked, not left to expire.
    svc = spawn(STATOR_REGISTRY="etcd", STATOR_ETCD_ADDR=etcd_server.url, STATOR_ETCD_TTL="30s", **FAST)
    key = instance_key(svc)

    svc.wait_for("registry unreachable", operation="register")
    assert httpx.get(svc.base_url + "/hello", timeout=5).status_code == 200

    etcd_server.start()
    registered = svc.wait_for("registered", timeout=RETRY_MAX + SLACK)
    assert registered["after_failures"] >= 1
    doc = etcd_value(etcd_server, key)
    assert doc is not None and doc["port"] == int(svc.base_url.rsplit(":", 1)[1]) and doc["status"] == "passing"
    assert doc["meta"]["metrics_path"] == "/metrics"

    restart_etcd_empty(etcd_server)
    assert etcd_value(etcd_server, key) is None
    wait_count(svc, "registered", 2, timeout=INTERVAL + SLACK)
    assert etcd_value(etcd_server, key) is not None

    monitor = httpx.get(svc.base_url + "/monitor", timeout=5).json()["registration"]
    assert monitor["registry"] == "etcd" and monitor["state"] == "registered" and monitor["lost"] == 1

    svc.signal()
    assert svc.wait(SHUTDOWN + SLACK) == 0
    msgs = svc.messages()
    assert msgs.index("shutting down") < msgs.index("deregistered") < msgs.index("shutting down http service")
    assert etcd_value(etcd_server, key) is None  # revoked before exit, not expiring 30 s later
    roster_lines = [m for m in msgs if m in ROSTER_MSGS]
    assert roster_lines[:2] == ["registry unreachable", "registered"]
    assert roster_lines[-2:] == ["registration lost", "registered"]
    assert len(roster_lines) <= 5


def test_misbehaving_etcd_is_retried_with_backoff_and_shutdown_keeps_its_deadline(
    spawn: Any, etcd_server: Etcd, proxy: Callable[[int], ChaosProxy]
) -> None:
    chaos = proxy(etcd_server.client_port)
    # TTL 3 s: a keepalive every second (timeout 1 s), and the lease lapses during the outage below.
    svc = spawn(STATOR_REGISTRY="etcd", STATOR_ETCD_ADDR=f"http://{chaos.address}", STATOR_ETCD_TTL="3s", **FAST)
    key = instance_key(svc)
    svc.wait_for("registered")
    assert etcd_value(etcd_server, key) is not None
    base = svc.base_url
    lines_before = len(svc.lines)

    window = 2.0
    for mode in ("500", "garbage", "garbage200", "hang"):
        chaos.set_mode(mode)  # type: ignore[arg-type]
        began = time.monotonic()
        chaos.wait_requests(mode, 1, timeout=SLACK)
        answer = httpx.get(base + "/hello", timeout=5)
        assert answer.status_code == 200
        time.sleep(max(0.0, began + window - time.monotonic()))
        assert chaos.count(mode) <= 12, (mode, chaos.count(mode))

    # Not flooded: the whole outage is one line. Besides it only our four access-log lines (and, on a machine
    # loaded enough, a line from another part of the service - never one per failed call).
    during = [line.get("msg") for line in svc.lines[lines_before:]]
    assert [m for m in during if m in ROSTER_MSGS or "regist" in str(m)] == ["registry unreachable"]
    assert len([m for m in during if m not in ("request", "slow request")]) <= 3, during
    assert etcd_value(etcd_server, key) is None  # 8 s without keepalives: etcd let the 3 s lease lapse

    # etcd answers again: the lease is gone, so the roster takes a new one and puts the key again.
    chaos.set_mode("forward")
    wait_count(svc, "registered", 2, timeout=RETRY_MAX + SLACK)
    assert "registration lost" in svc.messages()
    assert etcd_value(etcd_server, key) is not None

    chaos.set_mode("hang")
    began = time.monotonic()
    svc.signal()
    assert svc.wait(SHUTDOWN + SLACK) == 0
    assert time.monotonic() - began < SHUTDOWN + 3.0
    msgs = svc.messages()
    assert msgs.index("deregistration timed out") < msgs.index("shutting down http service") < msgs.index("stopped")
    assert count(svc, "deregistered") == 0
