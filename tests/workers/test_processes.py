"""A worker group as real processes on loopback: exact merged counts, a SIGKILLed worker, a real Prometheus."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.prometheus import Prometheus
from tests.workers.conftest import Group

UNIT = (("kind", "unit"),)


def totals(scrape: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> tuple[float, float, float]:
    return scrape["work_total"][UNIT], scrape["work_seconds_count"][UNIT], scrape["custom_events_total"][()]


@pytest.mark.parametrize("workers", [2, 3])
def test_every_scrape_reports_exactly_the_requests_of_all_workers(
    start_group: Callable[..., Group], workers: int
) -> None:
    group = start_group(workers)
    k = 48
    served = group.work(k)
    assert len(set(served)) >= 2, f"requests did not spread over the workers: {served}"
    for i in range(6):
        scrape = group.scrape(openmetrics=bool(i % 2))
        assert totals(scrape) == (k, k, k)
        assert scrape["work_seconds_bucket"][(("kind", "unit"), ("le", "+Inf"))] == k
        assert scrape["work_in_flight"][()] == 0  # policy sum
        assert scrape["work_slot_max"][()] == workers - 1  # policy max
        assert sorted(scrape["custom_level"]) == [(("worker", str(s)),) for s in range(workers)]  # default: worker
        assert scrape["stator_workers"][(("state", "live"),)] == workers
        assert len(scrape["target_info"]) == 1  # identity: one series
        assert set(scrape["process_resident_memory_bytes"]) == {(("worker", str(s)),) for s in range(workers)}
        assert scrape["stator_workers_resident_memory_bytes"][()] == pytest.approx(
            sum(scrape["process_resident_memory_bytes"].values())
        )
    roster = group.roster()
    records = roster["workers"]
    assert isinstance(records, list)
    assert sorted(r["slot"] for r in records) == list(range(workers))
    assert sum(r["requests"] for r in records) == k
    assert sum(1 for r in records if r["leader"]) == 1
    assert all(r["state"] == "running" for r in records)

    group.proc.signal(signal.SIGTERM)
    assert group.proc.wait(30) == 0
    assert len([m for m in group.proc.messages() if m == "worker left group"]) == workers


def test_sigkilled_worker_keeps_its_totals_and_prometheus_sees_no_reset(
    start_group: Callable[..., Group], start_prometheus: Callable[[str], Prometheus]
) -> None:
    group = start_group(2)
    host_port = group.url.removeprefix("http://")
    prom = start_prometheus(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        f"  - job_name: group\n    static_configs:\n      - targets: ['{host_port}']\n"
    )
    k1 = 30
    group.work(k1)
    assert totals(group.scrape()) == (k1, k1, k1)  # served: now in every worker's file
    victim = next(r for r in group.roster()["workers"] if r["slot"] == 1)
    seen: list[float] = []
    time.sleep(2.5)  # Prometheus has samples from before the kill
    os.kill(int(victim["pid"]), signal.SIGKILL)
    group.wait_lines("worker process exited", 1, worker=1)
    deadline = time.monotonic() + 20
    while len(group.wait_lines("worker serving", 3)) < 3 and time.monotonic() < deadline:
        seen.append(group.scrape()["work_total"][UNIT])
    for i in range(6):
        scrape = group.scrape(openmetrics=bool(i % 2))
        seen.append(scrape["work_total"][UNIT])
        assert totals(scrape) == (k1, k1, k1), "a dead worker's totals must stay in the sum"
    assert scrape["stator_workers_restarts_total"][()] == 1
    assert scrape["stator_workers"][(("state", "live"),)] == 2
    k2 = 12
    group.work(k2)
    for _ in range(4):
        seen.append(group.scrape()["work_total"][UNIT])
    assert seen[-1] == k1 + k2
    assert seen == sorted(seen), f"counter went backwards: {seen}"
    assert totals(group.scrape(openmetrics=True)) == (k1 + k2, k1 + k2, k1 + k2)
    deadline = time.monotonic() + 5  # the roster section is refreshed in the background at most once a second
    while True:
        restarted = next(r for r in group.roster()["workers"] if r["slot"] == 1)
        if restarted["pid"] != victim["pid"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert restarted["restarts"] == 1 and restarted["pid"] != victim["pid"]
    assert restarted["state"] == "running"

    def query(expr: str) -> float:
        result = prom.get("/api/v1/query", query=expr)["result"]
        assert result, f"{expr}: no result; log: {prom.log.read_text()[-2000:]}"
        return float(result[0]["value"][1])

    # A few more Prometheus scrapes after the restart (a loaded machine may scrape late: wait for them).
    def scrapes() -> float:
        result = prom.get("/api/v1/query", query='count_over_time(work_total{kind="unit"}[5m])')["result"]
        return float(result[0]["value"][1]) if result else 0.0

    deadline = time.monotonic() + 20
    while scrapes() < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert query('count_over_time(work_total{kind="unit"}[5m])') >= 5
    assert query('resets(work_total{kind="unit"}[5m])') == 0
    assert query('resets(work_seconds_count{kind="unit"}[5m])') == 0
    assert query('max_over_time(work_total{kind="unit"}[5m])') == k1 + k2
