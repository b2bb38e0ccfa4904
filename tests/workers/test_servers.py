"""Several worker processes under the real servers users run: `stator run --workers N`, `gunicorn -w N` with
uvicorn-worker and `uvicorn --workers N`. Exactly K requests spread over the workers; every scrape, whichever
worker answers it, reports exactly K in `http_requests_total` and in the latency histogram's `_count`. Under
`stator run --workers 2` with a registry: one registration for the instance, gone after SIGTERM, exit 0."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServiceProcess, service_env
from tests.registry.conftest import RegistryThread

K = 60
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
