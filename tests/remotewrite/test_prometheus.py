"""Debian's Prometheus scrapes one stator service and remote-writes to another with the receiver on: the
receiver ends up holding exactly the series Prometheus has, with the same latest values, and Prometheus counts no
failed sample."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stator.app.reference import create_app
from tests.prometheus import Prometheus
from tests.remotewrite.conftest import serve_service

pytestmark = pytest.mark.external


def _prom_metric(prom: Prometheus, name: str) -> float:
    text = httpx.get(prom.url + "/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                total += s.value
    return total


def _label_sets(data: list[dict[str, str]]) -> set[frozenset[tuple[str, str]]]:
    return {frozenset(d.items()) for d in data}


def test_receiver_holds_what_prometheus_scraped(start_prometheus: Callable[[str], Prometheus], tmp_path: Path) -> None:
    env = {"STATOR_REMOTE_WRITE": "true"}
    with serve_service(env) as receiver, serve_service({}, remote_write=False, app=create_app()) as target:
        config = f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: stator
    static_configs:
      - targets: ['{target.url.removeprefix("http://")}']
remote_write:
  - url: {receiver.url}/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 500
      min_backoff: 10ms
      max_backoff: 100ms
"""
        prom = start_prometheus(config)
        for n in range(20):  # some traffic, so RED series exist
            httpx.get(f"{target.url}/items/{n}", timeout=5)
        match = '{job="stator"}'
        deadline = time.monotonic() + 30
        ours: set[frozenset[tuple[str, str]]] = set()
        theirs: set[frozenset[tuple[str, str]]] = {frozenset()}
        while time.monotonic() < deadline:
            theirs = _label_sets(prom.get("/api/v1/series", **{"match[]": match}))
            ours = _label_sets(receiver.series(match).json()["data"])
            if theirs and ours == theirs and any(dict(s).get("__name__") == "http_requests_total" for s in ours):
                break
            time.sleep(0.5)
        assert ours == theirs, f"only in Prometheus: {list(theirs - ours)[:5]}; only here: {list(ours - theirs)[:5]}"
        assert len(ours) > 100

        # Latest values agree for series that no longer change (counters of finished traffic, constant gauges).
        for query in ('http_requests_total{job="stator"}', 'up{job="stator"}', "stator_build_info"):
            deadline = time.monotonic() + 10
            while True:
                p = {
                    frozenset(r["metric"].items()): r["value"][1]
                    for r in prom.get("/api/v1/query", query=query)["result"]
                }
                o = {
                    frozenset(r["metric"].items()): r["value"][1]
                    for r in receiver.query(query).json()["data"]["result"]
                }
                if (p and p == o) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert p and p == o, (query, p, o)
        assert _prom_metric(prom, "prometheus_remote_storage_samples_failed_total") == 0
        assert _prom_metric(prom, "prometheus_remote_storage_samples_total") > 0
        metrics = httpx.get(receiver.url + "/metrics", timeout=5).text
        assert "stator_remote_write_samples_received_total" in metrics
        rejected = [
            s
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.name == "stator_remote_write_rejected_total" and s.value
        ]
        assert rejected == []
