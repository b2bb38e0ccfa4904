"""stator's push against the real Etsy StatsD daemon (Node + npm ``statsd``): what the daemon aggregated equals
what the service saw."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from stator.app.reference import create_app
from tests.remotewrite.conftest import serve_service
from tests.statsd.conftest import StatsdDaemon

pytestmark = pytest.mark.external
K = 12  # <= bridge.EXPLICIT, so the daemon's raw timer list (all the mgmt port shows) holds every observation


def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_daemon_aggregates_match_what_the_service_saw(statsd_daemon: StatsdDaemon) -> None:
    env = {
        "STATOR_STATSD_ADDR": f"127.0.0.1:{statsd_daemon.port}",
        "STATOR_STATSD_FLUSH": "200ms",
        "STATOR_STATSD_PREFIX": "stator",
    }
    app = create_app()
    with serve_service(env, remote_write=False, app=app) as svc:
        client = svc.service.statsd  # the Service sets the push up itself when STATOR_STATSD_ADDR is set
        assert client is not None
        for _ in range(K):
            assert httpx.get(svc.url + "/hello", timeout=5).status_code == 200

        def observe() -> None:  # the client is the event loop's, like the rest of the service
            for value in (3, 9, 7):
                client.gauge("queue_depth", value)
            client.gauge("temperature", -4.5)
            for n in range(5):
                client.timing("db_query", 10.0 + n, tags={"table": "items"})
                client.incr("jobs_done")

        svc.on_loop(observe)
        counter = "stator.http_requests_total.method.GET.route.-hello.status.200"
        counters = _wait(
            lambda: (c := statsd_daemon.read("counters")).get(counter) == K and "stator.jobs_done" in c and c
        )
        assert counters, sorted(statsd_daemon.read("counters").items())
        assert counters["stator.jobs_done"] == 5
        gauges = _wait(lambda: (g := statsd_daemon.read("gauges")).get("stator.temperature") == -4.5 and g)
        assert gauges["stator.queue_depth"] == 7
        assert gauges["stator.http_requests_in_flight"] >= 0  # a registry gauge too
        timers = statsd_daemon.read("timers")
        hello = timers["stator.http_request_duration_seconds.method.GET.route.-hello"]
        assert len(hello) == K and all(0 < v <= 10 for v in hello)
        assert sorted(timers["stator.db_query.table.items"]) == [10, 11, 12, 13, 14]
        time.sleep(0.5)  # further flushes add nothing: counters are deltas, not re-sent totals
        assert statsd_daemon.read("counters")[counter] == K
        monitor = httpx.get(svc.url + "/monitor", timeout=5).json()
        assert monitor["statsd"]["datagrams_sent"] > 0 and monitor["statsd"]["datagrams_dropped"] == 0
        assert statsd_daemon.read("counters").get("statsd.bad_lines_seen", 0) == 0


def test_agent_down_nothing_raises_drops_counted() -> None:
    from tests.statsd.conftest import free_udp_port

    env = {"STATOR_STATSD_ADDR": f"127.0.0.1:{free_udp_port()}", "STATOR_STATSD_FLUSH": "100ms"}
    with serve_service(env, remote_write=False) as svc:
        for _ in range(3):
            httpx.get(svc.url + "/-/healthy", timeout=5)

        def dropped() -> float:
            for line in httpx.get(svc.url + "/metrics", timeout=5).text.splitlines():
                if line.startswith('stator_statsd_datagrams_dropped_total{reason="refused"}'):
                    return float(line.split()[-1])
            return 0.0

        assert _wait(lambda: dropped() >= 2)
        monitor = httpx.get(svc.url + "/monitor", timeout=5).json()
        worker = next(w for w in monitor["workers"] if w["name"] == "statsd")
        assert worker["restarts"] == 0 and worker["last_error"] is None and worker["state"] == "running"
        assert monitor["statsd"]["datagrams_dropped"] >= 2
        warnings = [line for line in svc.logs() if line["msg"] == "statsd agent not reachable: dropping datagrams"]
        assert len(warnings) == 1  # logged on the change of state, not per flush
