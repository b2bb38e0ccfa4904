"""Checklist items 37-38 against real Prometheus 2.42: targets discovered through the dev registry, scraped
(``up == 1``), and dropped after deregistration.

Debian's prometheus 2.42 binary is built without Consul SD (its changelog: "Disable Consul SD until its Debian
package is back in shape"), so ``consul_sd_configs`` is rejected at config load. Two tests therefore:

* ``test_37_38_consul_sd_real`` uses ``consul_sd_configs`` directly; it runs wherever the Prometheus binary has
  Consul SD and is skipped (with that reason) where it has not.
* ``test_37_38_consul_sd_port_real_scrape`` runs the discovery half with :mod:`promsd` (Prometheus 2.42's
  consul_sd loop ported request for request) and hands its target groups to the real Prometheus via file_sd,
  which does the scraping, relabelling and target bookkeeping asserted here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.externals import require_tool
from tests.prometheus import GLOBAL, RELABEL, Prometheus, consul_target, has_consul_sd, wait_prom

from .conftest import RegistryThread, Target
from .promsd import ConsulSD, file_sd_writer


def _register_discover_deregister(client: httpx.Client, prom: Prometheus, target: Target) -> None:
    body = {
        "Name": "demo",
        "ID": "demo-1",
        "Address": "127.0.0.1",
        "Port": target.port,
        "Tags": ["metrics", "blue"],
        "Meta": {"version": "1.2.3"},
        "Check": {"HTTP": f"{target.url}/metrics", "Interval": "1s"},
    }
    assert client.put("/v1/agent/service/register", json=body).status_code == 200

    # 37: the target appears with the right __meta_consul_* labels, healthy, and is scraped (up == 1).
    def healthy_target() -> dict[str, Any] | None:
        t = consul_target(prom, "demo-1")
        if t and t["discoveredLabels"]["__meta_consul_health"] == "passing" and t["health"] == "up":
            return t
        return None

    found = wait_prom(healthy_target, 60, prom, "healthy demo-1 target")
    labels = found["discoveredLabels"]
    assert labels["__meta_consul_service"] == "demo"
    assert labels["__meta_consul_service_id"] == "demo-1"
    assert labels["__meta_consul_tags"] == ",metrics,blue,"
    assert labels["__meta_consul_health"] == "passing"
    assert labels["__address__"] == f"127.0.0.1:{target.port}"
    assert labels["__meta_consul_service_address"] == "127.0.0.1"
    assert labels["__meta_consul_service_port"] == str(target.port)
    assert labels["__meta_consul_dc"] == "dc1"
    assert labels["__meta_consul_node"] == "test-node"
    assert labels["__meta_consul_address"] == "127.0.0.1"
    assert labels["__meta_consul_service_metadata_version"] == "1.2.3"
    assert labels["__meta_consul_tagged_address_lan"] == "127.0.0.1"
    assert found["labels"]["service"] == "demo"

    def up() -> bool:
        result = prom.get("/api/v1/query", query='up{job="consul-services",service="demo"}')["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_prom(up, 60, prom, "up == 1")
    scrapes = [r for r in target.requests if r["path"] == "/metrics"]
    assert any(r["headers"].get("User-Agent", "").startswith("Prometheus") for r in scrapes)

    # 38: deregistration drops the target (refresh + blocking wait + Prometheus' 5 s update throttle).
    assert client.put("/v1/agent/service/deregister/demo-1").status_code == 200
    wait_prom(lambda: consul_target(prom, "demo-1") is None, 60, prom, "demo-1 target removal")


@pytest.mark.external
def test_37_38_consul_sd_real(
    registry: RegistryThread,
    client: httpx.Client,
    target: Target,
    start_prometheus: Callable[[str], Prometheus],
    tmp_path: Path,
) -> None:
    require_tool("prometheus")
    if not has_consul_sd(tmp_path):
        pytest.skip(
            "this prometheus build has no consul_sd_configs (Debian's 2.42 package disables Consul SD); "
            "see test_37_38_consul_sd_port_real_scrape"
        )
    config = (
        GLOBAL + f"    consul_sd_configs:\n      - server: 127.0.0.1:{registry.port}\n        refresh_interval: 1s\n"
    )
    prom = start_prometheus(config + RELABEL)
    _register_discover_deregister(client, prom, target)


@pytest.mark.external
def test_37_38_consul_sd_port_real_scrape(
    registry: RegistryThread,
    client: httpx.Client,
    target: Target,
    start_prometheus: Callable[[str], Prometheus],
    tmp_path: Path,
) -> None:
    sd_file = tmp_path / "consul-targets.json"
    sd_file.write_text("[]")
    config = GLOBAL + f"    file_sd_configs:\n      - files: [{sd_file}]\n        refresh_interval: 1s\n"
    prom = start_prometheus(config + RELABEL)
    sd = ConsulSD(f"127.0.0.1:{registry.port}", file_sd_writer(sd_file), refresh_interval=1.0)
    sd.start()
    try:
        _register_discover_deregister(client, prom, target)
    finally:
        sd.stop()
    # The requests are Prometheus 2.42's: agent/self first, then sorted query keys, stale + 2-minute waits, and
    # an index from the second catalog call on (the registry never answers index 0).
    assert sd.requests[0] == f"http://127.0.0.1:{registry.port}/v1/agent/self"
    catalog = [r for r in sd.requests if "/v1/catalog/services" in r]
    assert catalog[0].endswith("/v1/catalog/services?stale=&wait=120000ms")
    assert "?index=" in catalog[1] and catalog[1].endswith("&stale=&wait=120000ms")
    health = [r for r in sd.requests if "/v1/health/service/demo?" in r]
    assert health[0].endswith("/v1/health/service/demo?stale=&wait=120000ms")
    assert all("?index=" in r for r in health[1:])
