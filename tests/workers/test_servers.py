"""Several worker processes under the real servers users run: `stator run --workers N`, `gunicorn -w N` with
uvicorn-worker and `uvicorn --workers N`. Exactly K requests spread over the workers; every scrape, whichever
worker answers it, reports exactly K in `http_requests_total` and in the latency histogram's `_count`. Under
`stator run --workers 2` with a registry: one registration for the instance, gone after SIGTERM, exit 0."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceProcess, service_env
from tests.externals import require_tool
from tests.registry.conftest import RegistryThread

K = 60
COUNT_CLOSE = str(Path(__file__).resolve().parent.parent / "hardening" / "count_close.lua")
HELLO = re.compile(r'^http_requests_total\{method="GET",route="/hello",status="200"\} (\S+)$', re.M)
COUNT = re.compile(r'^http_request_duration_seconds_count\{method="GET",route="/hello"\} (\S+)$', re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _command(server: str, port: int, workers: int) -> list[str]:
    py, target, n, bind = sys.executable, "examples.starlette_app:app", str(workers), f"127.0.0.1:{port}"
    return {
        "stator": [py, "-m", "stator", "run", "--workers", n, target],
        "gunicorn": [py, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", n, "-b", bind, target],
        "uvicorn": [py, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--workers", n],
    }[server]  # fmt: skip


@pytest.fixture
def registry() -> Iterator[RegistryThread]:
    reg = RegistryThread().start()
    yield reg
    reg.stop()


def _wait_workers(base: str, workers: int, proc: ServiceProcess, timeout: float = 40.0) -> None:
    """Until every worker process serves (the group lists them all as running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.stderr.decode(errors="replace")[-3000:]
        try:
            group = httpx.get(f"{base}/-/monitor", timeout=2).json().get("worker_group") or {}
            if sum(1 for w in group.get("workers", ()) if w.get("state") == "running") == workers:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{workers} workers never all ran; stderr: {proc.stderr.decode(errors='replace')[-3000:]}")


@pytest.mark.parametrize(("server", "workers"), [("stator", 2), ("stator", 3), ("gunicorn", 2), ("uvicorn", 2)])
def test_every_scrape_counts_every_request_exactly(server: str, workers: int) -> None:
    port = _free_port()
    env = service_env(STATOR_HTTP_PORT=str(port), STATOR_SHUTDOWN_TIMEOUT="5s", STATOR_SERVICE_NAME="multi")
    proc = ServiceProcess(_command(server, port, workers), env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_workers(base, workers, proc)
        served_by: set[int] = set()
        for _ in range(K):  # a new connection each time, so the kernel spreads them over the workers
            response = httpx.get(f"{base}/hello", headers={"Connection": "close"}, timeout=5)
            assert response.status_code == 200
        for _ in range(3 * workers):
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
            hello, count = HELLO.search(text), COUNT.search(text)
            assert hello and count, text[:2000]
            assert float(hello.group(1)) == K and float(count.group(1)) == K
            monitor = httpx.get(f"{base}/-/monitor", headers={"Connection": "close"}, timeout=5).json()
            served_by |= {w["pid"] for w in monitor["worker_group"]["workers"] if w.get("requests")}
        assert len(served_by) >= 2, "the requests all went to one worker: nothing was merged"
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) in ((0, -signal.SIGTERM) if server == "uvicorn" else (0,))
    finally:
        proc.stop()


def test_one_registration_per_instance_and_ordered_stop(registry: RegistryThread) -> None:
    port = _free_port()
    env = service_env(
        STATOR_HTTP_PORT=str(port),
        STATOR_SERVICE_NAME="multi",
        STATOR_REGISTRY="consul",
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_ROSTER_CHECK="ttl",
        STATOR_SHUTDOWN_TIMEOUT="5s",
    )
    proc = ServiceProcess(_command("stator", port, 2), env)
    try:
        _wait_workers(f"http://127.0.0.1:{port}", 2, proc)

        def registered() -> list[dict[str, object]]:
            services = httpx.get(f"{registry.url}/v1/agent/services", timeout=5).json()
            return [s for s in services.values() if s["Service"] == "example-starlette"]

        deadline = time.monotonic() + 15
        while not registered() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # a second worker registering would show up by now (leadership is retried every second)
        entries = registered()
        assert len(entries) == 1 and entries[0]["Port"] == port, (
            entries,
            [(m.get("msg"), m.get("error"), m.get("worker")) for m in proc.lines][-40:],
        )
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not registered()
        assert len([line for line in proc.lines if line.get("msg") == "supervisor stopped"]) == 1
    finally:
        proc.stop()


def test_sigterm_to_the_group_under_keep_alive_load_loses_no_request(registry: RegistryThread) -> None:
    """wrk (one thread, 16 keep-alive connections) loads /hello of `stator run --workers 2`; SIGTERM reaches the
    master 1.5 s in; the load stops 1.5 s later, inside the 3 s lame duck (STATOR_SHUTDOWN_DELAY), as a client
    does once the registry no longer names the instance — which is what the lame duck waits for.

    A failed request is one wrk reports: a socket error — connect (refused: the listener went away while clients
    still had the address), read (EOF or reset with a request outstanding: an accepted request lost), write (reset
    while sending one), timeout (no answer within 4 s) — or a response other than 2xx/3xx (a 503 from a draining
    worker). wrk prints those lines only when a count is not 0: neither may appear. Responses that say
    `Connection: close` are successes (the lame duck asks clients to reconnect; wrk does so). Then: the dev
    registry saw exactly one deregistration, and the master exited 0 before STATOR_SHUTDOWN_TIMEOUT + 2 s (the
    supervisor's own deadline) counting from the signal."""
    wrk = require_tool("wrk")
    port = _free_port()
    env = service_env(
        STATOR_HTTP_PORT=str(port),
        STATOR_SERVICE_NAME="multi",
        STATOR_REGISTRY="consul",
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_ROSTER_CHECK="ttl",
        STATOR_SHUTDOWN_TIMEOUT="8s",
        STATOR_SHUTDOWN_DELAY="3s",
        STATOR_HTTP_ACCESS_LOG="false",
    )
    proc = ServiceProcess(_command("stator", port, 2), env)
    load: subprocess.Popen[str] | None = None
    try:
        _wait_workers(f"http://127.0.0.1:{port}", 2, proc)
        deadline = time.monotonic() + 15
        while not _registered(registry) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_registered(registry)) == 1
        cmd = [wrk, "-t1", "-c16", "-d3s", "--timeout", "4s", "-s", COUNT_CLOSE, f"http://127.0.0.1:{port}/hello"]
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.signal(signal.SIGTERM)
        out, _ = load.communicate(timeout=20)
        assert time.monotonic() - signalled < 3.0, "the load must end within the lame duck"
        code = proc.wait(20)
        stopped_in = time.monotonic() - signalled
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        proc.stop()
    assert code == 0, proc.messages()[-40:]
    assert stopped_in < 8 + 2, stopped_in
    assert re.search(r"Socket errors", out) is None, out
    assert re.search(r"Non-2xx or 3xx responses", out) is None, out
    counts = re.search(r"STATOR responses=(\d+) closes=(\d+)", out)
    assert counts is not None, out
    responses, closes = int(counts.group(1)), int(counts.group(2))
    assert responses > 300, out  # the load really ran, before and during the lame duck
    assert closes >= 16, out  # every connection was served in the lame duck and told to reconnect
    deregistered = [line for line in registry.sink.text().splitlines() if '"service deregistered"' in line]
    assert len(deregistered) == 1, deregistered
    assert not _registered(registry)
    messages = proc.messages()
    assert messages.count("deregistered") == 1 and "deregistration failed, retrying" not in messages  # one try
    assert messages.count("supervisor stopped") == 1
    assert messages.count("lame duck: still serving, responses say Connection: close") == 2  # every worker


def _registered(registry: RegistryThread) -> list[dict[str, object]]:
    services = httpx.get(f"{registry.url}/v1/agent/services", timeout=5).json()
    return [s for s in services.values() if s["Service"] == "example-starlette"]
