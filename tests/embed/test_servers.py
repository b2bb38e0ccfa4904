"""Every example app under every server: `stator run`, uvicorn, gunicorn + uvicorn-worker, hypercorn and granian.

Each pair runs as a real subprocess on loopback, with the dev registry and an OTLP receiver in this process, and
is checked over real HTTP the way a user would check it: request id echoed; an unhandled exception is stator's
JSON 500 with the request id (and its stack logged once); the app's own `/config` route is the app's; route
templates in `http_requests_total`; the app's `logging` line in the JSON stream with the request id; no access
line of the server's own; registration in the registry and deregistration at SIGTERM; a span made with
`trace.get_tracer()` in the handler exported in the same trace as the server span, as its child.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceProcess, service_env
from tests.registry.conftest import RegistryThread
from tests.tracing.receiver import OTLPReceiver

EXAMPLES = {
    "fastapi": "examples.fastapi_app:app",
    "starlette": "examples.starlette_app:app",
    "litestar": "examples.litestar_app:app",
    "raw": "examples.raw_asgi_app:app",
}
NAMES = {
    "fastapi": "example-fastapi",
    "starlette": "example-starlette",
    "litestar": "example-litestar",
    "raw": "example-raw",
}


def _command(server: str, target: str, port: int) -> list[str]:
    py = sys.executable
    return {
        "stator": [py, "-m", "stator", "run", target],
        "uvicorn": [py, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)],
        "gunicorn": [
            py, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "10", target,
        ],
        "hypercorn": [py, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", target],
        "granian": [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), target],
    }[server]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryThread]:
    reg = RegistryThread().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as rec:
        yield rec


def _wait_http(url: str, proc: ServiceProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise AssertionError(f"{url} never answered; stdout:\n{b''.join(proc.raw[-30:]).decode(errors='replace')}\n"
                         f"stderr:\n{proc.stderr.decode(errors='replace')[-3000:]}")  # fmt: skip


def _registered(registry: RegistryThread, name: str) -> list[dict[str, Any]]:
    services = httpx.get(f"{registry.url}/v1/agent/services", timeout=5).json()
    return [s for s in services.values() if s["Service"] == name]


def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.parametrize("server", ["stator", "uvicorn", "gunicorn", "hypercorn", "granian"])
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_example_under_server(example: str, server: str, registry: RegistryThread, receiver: OTLPReceiver) -> None:
    port = _free_port()
    name = NAMES[example]
    env = service_env(
        STATOR_HTTP_PORT=str(port),
        STATOR_REGISTRY="consul",
        STATOR_CONSUL_ADDR=registry.url,
        STATOR_ROSTER_CHECK="ttl",
        STATOR_OTLP_ENDPOINT=receiver.endpoint,
        STATOR_OTLP_BATCH_DELAY="100ms",
        STATOR_SHUTDOWN_TIMEOUT="5s",
    )
    proc = ServiceProcess(_command(server, EXAMPLES[example], port), env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/-/healthy", proc)

        # Request id in, request id out; the app's logging line carries it, in the JSON stream.
        hello = httpx.get(f"{base}/hello", headers={"X-Request-ID": f"hello-{example}-{server}"}, timeout=5)
        assert hello.status_code == 200 and hello.json() == {"hello": "world"}
        assert hello.headers["x-request-id"] == f"hello-{example}-{server}"
        said = proc.wait_for("saying hello", request_id=f"hello-{example}-{server}")
        assert said["who"] == "world" and said["logger"].startswith("examples.")
        assert said["app_id"] == name and len(said["trace_id"]) == 32

        # An unhandled exception: stator's JSON 500 with the request id, the stack in the log once.
        boom = httpx.get(f"{base}/boom", headers={"X-Request-ID": f"boom-{server}"}, timeout=5)
        assert boom.status_code == 500
        assert boom.json() == {"error": "internal server error", "request_id": f"boom-{server}"}
        assert boom.headers["x-request-id"] == f"boom-{server}"
        logged = proc.wait_for("unhandled exception", request_id=f"boom-{server}")
        assert "the handler failed" in logged["stack"]

        # The app's own /config route is the app's; stator's configuration is at /-/config.
        assert httpx.get(f"{base}/config", timeout=5).json() == {"owner": "application"}
        assert httpx.get(f"{base}/-/config", timeout=5).json()["config"]["service"]["name"] == name
        # The framework's own HTTP errors keep their body and get the request id.
        missing = httpx.get(f"{base}/items/-1", timeout=5)
        assert missing.status_code in (200, 404) and "x-request-id" in missing.headers
        assert httpx.get(f"{base}/items/7", timeout=5).status_code == 200

        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'http_requests_total{method="GET",route="/items/{item_id}",status="200"} 1.0' in metrics
        assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics
        assert 'http_requests_total{method="GET",route="/config",status="200"} 1.0' in metrics

        # Registered under its name with the port the server listens on.
        entries = _eventually(lambda: _registered(registry, name))
        assert entries and {e["Port"] for e in entries} == {port}, entries

        # The span made with trace.get_tracer() in the handler: in the server span's trace, below it (FastAPI
        # puts spans of its own in between).
        def linked() -> Any:
            spans = {s.span_id: s for _, s in receiver.snapshot()}
            servers = [s for r, s in receiver.snapshot() if r.get("service.name") == name and s.name == "GET /hello"]
            for user in (s for s in spans.values() if s.name == "compose greeting"):
                for server_span in servers:
                    parent = spans.get(user.parent_span_id)
                    while parent is not None and parent.span_id != server_span.span_id:
                        parent = spans.get(parent.parent_span_id)
                    if parent is not None and user.trace_id == server_span.trace_id:
                        return True
            return False

        assert _eventually(linked), [s.name for _, s in receiver.snapshot()]

        proc.signal(signal.SIGTERM)
        # uvicorn (since 0.29) re-raises the signal it caught once its graceful shutdown is done.
        assert proc.wait(30) in ((0, -signal.SIGTERM) if server == "uvicorn" else (0,))
        assert not _registered(registry, name)  # deregistered before it went away
    finally:
        proc.stop()
    # One log stream: no access line of the server's own, anywhere.
    out = b"".join(proc.raw).decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert "GET /hello HTTP/1.1" not in out
    assert "Exception in ASGI application" not in out
