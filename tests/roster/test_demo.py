"""``stator demo``: the dev registry and three instances come up and register (passing), and SIGTERM stops all
of it cleanly, the instances deregistering first. Plus the pieces that feed Prometheus."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stator.demo import file_sd_targets, prometheus_config
from tests.conftest import ServiceProcess
from tests.externals import require_tool
from tests.registry.conftest import RegistryThread

from .conftest import free_port, wait_until


def wait_text(proc: ServiceProcess, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in list(proc.raw):
            line = raw.decode(errors="replace")
            if text in line:
                return line
        if proc.proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = b"".join(proc.raw[-30:]).decode(errors="replace")
    raise AssertionError(f"{text!r} not printed within {timeout}s:\n{tail}\nstderr: {proc.stderr[-2000:]!r}")


def test_demo_runs_registry_and_three_passing_instances_and_stops_on_sigterm(spawn: Any) -> None:
    port = free_port()
    args = ["--registry-port", str(port), "--base-port", "0"]
    prometheus = f"127.0.0.1:{free_port()}" if shutil.which("prometheus") else None
    args += ["--prometheus", prometheus] if prometheus else ["--no-prometheus"]
    demo = spawn([sys.executable, "-m", "stator", "demo", *args])
    wait_text(demo, "stator demo ready: 3 of 3 instances passing", timeout=60)

    registry = f"http://127.0.0.1:{port}"
    entries = httpx.get(f"{registry}/v1/health/service/stator", params={"passing": ""}, timeout=5).json()
    assert len(entries) == 3
    instances = [(e["Service"]["Address"], e["Service"]["Port"]) for e in entries]
    assert len({e["Service"]["ID"] for e in entries}) == 3 and len(set(instances)) == 3
    for address, instance_port in instances:
        assert httpx.get(f"http://{address}:{instance_port}/-/ready", timeout=5).status_code == 200
    assert all(e["Service"]["Tags"] == ["metrics"] for e in entries)
    # discovery: every instance serves the seeded example document, and a KV update reaches them
    from stator.demo import DISCOVER_KEY
    from stator.discover import EXAMPLE_DOCUMENT

    first = f"http://{instances[0][0]}:{instances[0][1]}"
    wait_until(
        lambda: (
            [s["uri"] for s in httpx.get(f"{first}/services", timeout=5).json()["services"]]
            == [s["uri"] for s in EXAMPLE_DOCUMENT]
        ),
        30,
        "the example services document on /services",
    )
    update = [{"uri": "http://updated.example/api", "capabilities": [{"name": "resize", "capacity": 1}]}]
    assert httpx.put(f"{registry}/v1/kv/{DISCOVER_KEY}", json=update, timeout=5).json() is True
    for address, instance_port in instances:
        wait_until(
            lambda a=address, p=instance_port: (
                [  # type: ignore[misc]
                    s["uri"] for s in httpx.get(f"http://{a}:{p}/services", timeout=5).json()["services"]
                ]
                == ["http://updated.example/api"]
            ),
            10,
            "the updated document on every instance",
        )
    if prometheus:  # Prometheus (via consul_sd, or file_sd fed by the demo) knows all three instances
        ids = {e["Service"]["ID"] for e in entries}
        wait_until(lambda: _prometheus_instance_ids(prometheus) == ids, 30, "3 Prometheus targets")

    demo.signal()
    assert demo.wait(60) == 0
    assert demo.messages().count("deregistered") == 3  # the instances' log lines share the demo's stdout
    assert any(b"stator demo: stopped" in raw for raw in demo.raw)
    for url in [registry, *(f"http://{a}:{p}" for a, p in instances)]:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


def _prometheus_instance_ids(address: str) -> set[str]:
    try:
        data = httpx.get(f"http://{address}/api/v1/targets", params={"state": "active"}, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return set()
    return {t["labels"].get("instance_id", "") for t in data["data"]["activeTargets"]}


def test_file_sd_targets_label_like_consul_sd(registry: RegistryThread) -> None:
    body = {
        "Name": "stator", "ID": "stator-1", "Address": "127.0.0.1", "Port": 8087, "Tags": ["metrics", "blue"],
        "Meta": {"metrics_path": "/metrics"}, "Check": {"TTL": "30s", "Status": "passing"},
    }  # fmt: skip
    httpx.put(f"{registry.url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()
    entries = httpx.get(f"{registry.url}/v1/health/service/stator", timeout=5).json()
    [group] = file_sd_targets(entries)
    assert group["targets"] == ["127.0.0.1:8087"]
    labels = group["labels"]
    assert labels["__meta_consul_service"] == "stator" and labels["__meta_consul_service_id"] == "stator-1"
    assert labels["__meta_consul_tags"] == ",metrics,blue,"
    assert labels["__meta_consul_health"] == "passing"
    assert labels["__meta_consul_service_metadata_metrics_path"] == "/metrics"
    assert labels["__meta_consul_node"] == "test-node" and labels["__meta_consul_dc"] == "dc1"


@pytest.mark.external
@pytest.mark.parametrize("file_sd", [False, True])
def test_demo_prometheus_config_is_valid(tmp_path: Path, file_sd: bool) -> None:
    promtool = require_tool("promtool")
    sd_file = tmp_path / "targets.json" if file_sd else None
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config("127.0.0.1:8500", "stator", sd_file))
    if sd_file is None:
        probe = tmp_path / "probe.yml"
        probe.write_text("scrape_configs:\n  - job_name: p\n    consul_sd_configs:\n      - server: 127.0.0.1:1\n")
        if subprocess.run([promtool, "check", "config", str(probe)], capture_output=True, check=False).returncode:
            pytest.skip("this prometheus build has no consul_sd_configs (Debian's 2.42)")
    else:
        sd_file.write_text("[]")
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
