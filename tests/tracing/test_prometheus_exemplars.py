"""Debian's Prometheus with exemplar storage scrapes a traced stator service and returns its exemplars, whose
trace ids are those of spans the service exported."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceProcess
from tests.externals import require_tool
from tests.prometheus import Prometheus
from tests.tracing.receiver import OTLPReceiver


@pytest.mark.external
def test_prometheus_stores_our_exemplars(spawn: Any, tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    with OTLPReceiver() as receiver:
        svc: ServiceProcess = spawn(STATOR_OTLP_ENDPOINT=receiver.endpoint, STATOR_OTLP_BATCH_DELAY="100ms")
        base = svc.base_url
        target = base.removeprefix("http://")
        config = f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: stator
    static_configs:
      - targets: ["{target}"]
"""
        prom = Prometheus(binary, config, tmp_path, ["--enable-feature=exemplar-storage"])
        try:
            prom.wait_ready()
            with httpx.Client() as client:
                for i in range(20):
                    client.get(f"{base}/items/{i}")
            deadline = time.monotonic() + 45
            found: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not found:
                now = time.time()
                data = prom.get(
                    "/api/v1/query_exemplars",
                    query='http_request_duration_seconds_bucket{job="stator"}',
                    start=str(now - 300),
                    end=str(now + 60),
                )
                found = [e for series in data for e in series["exemplars"]]
                if not found:
                    time.sleep(0.5)
            assert found, prom.log.read_text()[-3000:]
        finally:
            prom.stop()
        exported = {span.trace_id.hex() for _, span in receiver.snapshot()}
        svc.signal(signal.SIGTERM)
        assert svc.wait(30) == 0
        exported |= {span.trace_id.hex() for _, span in receiver.snapshot()}
    stored = {e["labels"]["trace_id"] for e in found}
    assert stored
    assert stored <= exported  # every stored exemplar points at a trace the collector received
