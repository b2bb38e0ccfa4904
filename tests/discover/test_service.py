"""Discovery inside ``stator run``, as operators run it: the dev registry's KV key watched, /services, /monitor,
/metrics, and a clean shutdown while a 5-minute blocking query is pending."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from stator.config import load_settings
from stator.discover import Discover, setup_discovery
from stator.service import Service
from tests.conftest import ServiceProcess
from tests.discover.conftest import DOC_A, DOC_B, DevRegistry


def _wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_stator_run_watches_the_dev_registry(spawn: Any, registry: DevRegistry) -> None:
    key = "stator/e2e/services"
    registry.put(key, orjson.dumps(DOC_A))
    svc: ServiceProcess = spawn(
        STATOR_DISCOVER_SOURCE="consul",
        STATOR_DISCOVER_KEY=key,
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_SHUTDOWN_TIMEOUT="10s",
    )
    base = svc.base_url
    body = _wait_for(lambda: (b := httpx.get(f"{base}/services").json())["version"] >= 1 and b)
    assert body["services"] == DOC_A and body["source"] == "consul" and body["index"] >= 1

    held = httpx.Client(timeout=30)
    registry.put(key, orjson.dumps(DOC_B))
    changed = held.get(f"{base}/services", params={"after": body["version"], "wait": "10s"}).json()
    assert changed["services"] == DOC_B
    held.close()

    monitor = httpx.get(f"{base}/monitor").json()
    assert monitor["discovery"]["source"] == "consul" and monitor["discovery"]["state"] == "ok"
    assert monitor["discovery"]["poller"]["index"] >= changed["index"]
    assert any(w["name"] == "discovery" for w in monitor["workers"])
    metrics = httpx.get(f"{base}/metrics").text
    for name in (
        "stator_discovery_updates_total 2.0",
        'stator_discovery_errors_total{reason="transport"} 0.0',
        "stator_discovery_last_update_timestamp_seconds",
        "stator_discovery_services 2.0",
    ):
        assert name in metrics, name

    time.sleep(0.2)  # the watcher is parked in a 5-minute blocking query
    began = time.monotonic()
    svc.signal(signal.SIGTERM)
    assert svc.wait(15) == 0
    assert time.monotonic() - began < 5
    msgs = svc.messages()
    assert "updating services" in msgs and msgs[-1] == "stopped"
    assert "worker did not stop in time" not in msgs


def test_stator_run_with_a_file_source(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_bytes(orjson.dumps(DOC_A))
    svc: ServiceProcess = spawn(
        STATOR_DISCOVER_SOURCE="file", STATOR_DISCOVER_KEY=str(path), STATOR_DISCOVER_FILE_INTERVAL="20ms"
    )
    base = svc.base_url
    _wait_for(lambda: httpx.get(f"{base}/services").json()["services"] == DOC_A)
    tmp = tmp_path / "services.tmp"
    tmp.write_bytes(orjson.dumps(DOC_B))
    os.replace(tmp, path)
    _wait_for(lambda: httpx.get(f"{base}/services").json()["services"] == DOC_B)


def test_without_a_source_services_is_empty(spawn: Any) -> None:
    svc: ServiceProcess = spawn()
    body = httpx.get(f"{svc.base_url}/services").json()
    assert body["services"] == [] and body["source"] == "none"
    assert "discovery" not in httpx.get(f"{svc.base_url}/monitor").json()


def test_source_without_key_is_a_config_error(spawn: Any) -> None:
    svc: ServiceProcess = spawn([sys.executable, "-m", "stator", "run"], STATOR_DISCOVER_SOURCE="etcd")
    assert svc.wait(20) == 2
    assert b"STATOR_DISCOVER_KEY" in svc.stderr and b"required when STATOR_DISCOVER_SOURCE=etcd" in svc.stderr


def test_setup_discovery_wires_worker_monitor_and_metrics(tmp_path: Path) -> None:
    env = {"STATOR_DISCOVER_SOURCE": "file", "STATOR_DISCOVER_KEY": str(tmp_path / "s.json")}
    service = Service(load_settings(env))  # the Service wires discovery itself, wherever it is served
    discover = service.discovery
    assert isinstance(discover, Discover)
    assert discover in [w for w, _ in service._workers]
    assert service.services.discover is discover  # /-/services follows it
    assert service.monitor()["discovery"]["state"] == "waiting"
    assert service.metrics.get_sample_value("stator_discovery_services") == 0
    assert Service(load_settings({})).discovery is None
    assert setup_discovery(Service(load_settings({}))) is None
