"""The live endpoint of a real ``stator run`` on loopback: promtool lint, OpenMetrics parse, gzip, HEAD."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.conftest import ServiceProcess
from tests.externals import require_tool

DEFAULT_FAMILIES = {
    "process_cpu_seconds",
    "python_gc_collections",
    "python_gc_pause_seconds",
    "python_info",
    "python_asyncio_loop_lag_seconds",
    "python_asyncio_tasks",
    "disk_usage_used_ratio",
    "wave_sine",
    "stator_build",
    "target",
    "stator_collector_errors",
}


@pytest.mark.external
def test_promtool_lints_the_live_text_exposition(spawn: Any) -> None:
    promtool = require_tool("promtool")
    svc: ServiceProcess = spawn(STATOR_DISK_PATHS="/,/definitely/not/here")
    base = svc.base_url
    with httpx.Client(base_url=base, timeout=10) as client:
        client.get("/-/ready")  # some traffic first, so request metrics exist too
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=response.text, capture_output=True, text=True, timeout=60, check=False
    )
    assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", (
        f"promtool check metrics:\n{lint.stdout}\n{lint.stderr}"
    )
    assert 'disk_usage_size_bytes{path="/"}' in response.text
    assert "/definitely/not/here" not in response.text
    svc.wait_for("disk usage unavailable, path left out", path="/definitely/not/here")


def test_live_openmetrics_gzip_and_head(spawn: Any) -> None:
    svc: ServiceProcess = spawn()
    with httpx.Client(base_url=svc.base_url, timeout=10) as client:
        om = client.get(
            "/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
        )
        head = client.head("/metrics")
        get = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert om.status_code == 200
    assert om.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert om.headers["content-encoding"] == "gzip"  # httpx decoded it for us
    assert om.text.endswith("# EOF\n")
    families = {family.name: family for family in parse_openmetrics(om.text)}
    assert set(families) >= DEFAULT_FAMILIES
    assert families["process_cpu_seconds"].unit == "seconds"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) > 0
