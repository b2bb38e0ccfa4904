"""Lifecycle over a real subprocess on loopback: graceful drain, shutdown order, forced exit, worker restarts."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import httpx

from tests.conftest import ServiceProcess


def _get_in_thread(url: str, results: list[Any]) -> threading.Thread:
    def go() -> None:
        try:
            results.append(httpx.get(url, timeout=30).status_code)
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_sigterm_drains_in_flight_requests_in_order(spawn: Any) -> None:
    svc: ServiceProcess = spawn(STATOR_SHUTDOWN_TIMEOUT="10s")
    base = svc.base_url
    assert httpx.get(f"{base}/-/ready").status_code == 200
    results: list[Any] = []
    threads = [_get_in_thread(f"{base}/sleep?seconds=1.5", results) for _ in range(3)]
    time.sleep(0.4)  # the requests are now in flight
    sent = time.monotonic()
    svc.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    code = svc.wait(30)
    elapsed = time.monotonic() - sent
    assert results == [200, 200, 200]
    assert code == 0
    assert elapsed < 10 + 3  # within the shutdown deadline (plus process exit)
    msgs = svc.messages()
    order = ["signal received", "shutting down", "shutting down http service", "http service stopped", "stopped"]
    positions = [msgs.index(m) for m in order]
    assert positions == sorted(positions), msgs
    assert msgs.index("worker stopped") > msgs.index("http service stopped")
    assert msgs[-1] == "stopped"
    for line in svc.raw:  # every line on stdout is one JSON object
        assert line.startswith(b"{") and line.endswith(b"}\n")


def test_readiness_flips_before_drain_and_new_connections_are_refused(spawn: Any) -> None:
    svc: ServiceProcess = spawn(STATOR_SHUTDOWN_TIMEOUT="10s")
    base = svc.base_url
    results: list[Any] = []
    thread = _get_in_thread(f"{base}/sleep?seconds=2", results)
    time.sleep(0.3)
    svc.signal(signal.SIGTERM)
    svc.wait_for("shutting down http service")
    try:
        status = httpx.get(f"{base}/-/ready", timeout=2).status_code
    except httpx.TransportError:
        status = None  # listener already closed: also "not accepting"
    assert status in (503, None)
    thread.join(30)
    assert results == [200]
    assert svc.wait(30) == 0


def test_second_signal_forces_exit(spawn: Any) -> None:
    svc: ServiceProcess = spawn(STATOR_SHUTDOWN_TIMEOUT="60s")
    base = svc.base_url
    results: list[Any] = []
    _get_in_thread(f"{base}/sleep?seconds=30", results)
    time.sleep(0.3)
    svc.signal(signal.SIGTERM)
    svc.wait_for("shutting down http service")
    sent = time.monotonic()
    svc.signal(signal.SIGTERM)
    code = svc.wait(10)
    assert code != 0
    assert time.monotonic() - sent < 5
    assert "second signal: forced exit" in svc.messages()


def test_crashing_worker_is_restarted_with_backoff(spawn: Any) -> None:
    svc: ServiceProcess = spawn([sys.executable, "-m", "tests.apps.crashy"])
    svc.wait_for("worker restarting", restarts=4, timeout=30)
    failures = [line for line in svc.lines if line.get("msg") == "worker failed"]
    assert len(failures) >= 4
    first = failures[0]
    assert first["error_type"] == "RuntimeError"
    assert "crash number 1" in first["error"]
    assert "Traceback" in first["stack"]
    assert first["worker_id"]
    assert all(f["worker_id"] == first["worker_id"] for f in failures)  # one worker, restarted
    delays = [f["restart_in"] for f in failures[:4]]
    # Jittered within [base/2, base] with base doubling from 50 ms and capped at 400 ms: never a tight loop.
    assert all(0.025 <= d <= 0.4 for d in delays)
    assert delays[3] > delays[0]
    monitor = httpx.get(f"{svc.base_url}/monitor").json()
    crashy = next(w for w in monitor["workers"] if w["name"] == "crashy")
    assert crashy["restarts"] >= 4
    assert "crash number" in crashy["last_error"]
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


def test_port_in_use_is_fatal(spawn: Any) -> None:
    first: ServiceProcess = spawn()
    port = first.base_url.rsplit(":", 1)[1]
    second: ServiceProcess = spawn(STATOR_HTTP_PORT=port)
    assert second.wait(20) == 1
    second.wait_for("http server failed to start")
