"""End to end: a ``stator run`` instance registers itself with the dev registry, real Prometheus 2.42 discovers
it through the Consul API, scrapes it (``up == 1``), and drops it once SIGTERM deregistered it.

Debian's Prometheus is built without Consul SD; there the discovery half is the registry suite's port of
Prometheus 2.42's consul_sd loop (``tests/registry/promsd.py``) feeding the real Prometheus through file_sd. A
Prometheus with Consul SD uses ``consul_sd_configs`` directly (see ``tests/registry/test_prometheus.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.prometheus import GLOBAL, Prometheus, consul_target, has_consul_sd, wait_prom
from tests.registry.conftest import RegistryThread
from tests.registry.promsd import ConsulSD, file_sd_writer

RELABEL = """
    relabel_configs:
      - source_labels: [__meta_consul_tags]
        regex: .*,metrics,.*
        action: keep
      - source_labels: [__meta_consul_service]
        target_label: service
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        regex: (.+)
        target_label: __metrics_path__
"""


@pytest.fixture
def discovery(registry: RegistryThread, tmp_path: Path) -> Iterator[str]:
    """The discovery section of the scrape config: consul_sd if this Prometheus has it, else the port + file_sd."""
    if has_consul_sd(tmp_path):
        yield f"    consul_sd_configs:\n      - server: 127.0.0.1:{registry.port}\n        refresh_interval: 1s\n"
        return
    sd_file = tmp_path / "consul-targets.json"
    sd_file.write_text("[]")
    sd = ConsulSD(f"127.0.0.1:{registry.port}", file_sd_writer(sd_file), refresh_interval=1.0)
    sd.start()
    try:
        yield f"    file_sd_configs:\n      - files: [{sd_file}]\n        refresh_interval: 1s\n"
    finally:
        sd.stop()


@pytest.mark.external
def test_prometheus_scrapes_a_registered_instance_and_drops_it_after_sigterm(
    spawn: Any,
    registry: RegistryThread,
    discovery: str,
    start_prometheus: Callable[[str], Prometheus],
) -> None:
    svc = spawn(
        STATOR_REGISTRY="consul",
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_SERVICE_TAGS="metrics,blue",
        STATOR_ROSTER_CHECK_INTERVAL="1s",
    )
    sid = f"stator-{svc.wait_for('starting up')['run_id']}"
    port = svc.base_url.rsplit(":", 1)[1]
    svc.wait_for("registered")
    prom = start_prometheus(GLOBAL + discovery + RELABEL)

    def healthy() -> dict[str, Any] | None:
        t = consul_target(prom, sid)
        if t and t["discoveredLabels"]["__meta_consul_health"] == "passing" and t["health"] == "up":
            return t
        return None

    found = wait_prom(healthy, 60, prom, f"healthy {sid} target")
    labels = found["discoveredLabels"]
    assert labels["__meta_consul_service"] == "stator"
    assert labels["__meta_consul_service_id"] == sid
    assert labels["__meta_consul_tags"] == ",metrics,blue,"
    assert labels["__address__"] == f"127.0.0.1:{port}"
    assert labels["__meta_consul_service_address"] == "127.0.0.1"
    assert labels["__meta_consul_service_port"] == port
    assert labels["__meta_consul_service_metadata_version"] == svc.wait_for("starting up")["version"]
    assert labels["__meta_consul_service_metadata_run_id"] == sid.split("-", 1)[1]
    assert labels["__meta_consul_service_metadata_metrics_path"] == "/metrics"
    assert found["labels"]["service"] == "stator"
    assert found["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"

    def up() -> bool:
        result = prom.get("/api/v1/query", query='up{job="consul-services",service="stator"}')["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_prom(up, 60, prom, "up == 1")
    # And what it scraped is the instance's own registration state.
    query = 'stator_registration_up{job="consul-services",registry="consul"}'
    wait_prom(lambda: prom.get("/api/v1/query", query=query)["result"], 30, prom, "stator_registration_up scraped")

    svc.signal()
    assert svc.wait(30) == 0
    assert httpx.get(f"{registry.url}/v1/agent/service/{sid}", timeout=5).status_code == 404
    wait_prom(lambda: consul_target(prom, sid) is None, 60, prom, f"{sid} target removal")
