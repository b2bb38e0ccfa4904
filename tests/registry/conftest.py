"""Fixtures: a real registry served by uvicorn on a free loopback port, in a thread with its own event loop.

Tests talk to it over HTTP like any client would; the thread keeps the server's loop independent of the test's
(sync tests, hypothesis, and asyncio clients all work against the same kind of server).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from stator.logs import Logger, MemorySink
from stator.registry.app import RegistryApp
from stator.registry.http import Server
from stator.registry.server import bind, build_server, create_app

T = TypeVar("T")

# Test timing: checks probe at once (no stagger), the reaper runs often, the DCSA floor is 2 s instead of 60 s.
FAST: dict[str, Any] = {"stagger": lambda interval: 0.0, "reap_interval": 0.2, "dcsa_min": 2.0}


class RegistryThread:
    def __init__(self, **options: Any) -> None:
        self.sink = MemorySink()
        self.logger = Logger(app_id="stator-registry", run_id="test000", sink=self.sink, level="debug")
        self.app: RegistryApp = create_app(self.logger, node_name="test-node", **options)
        self.sock = bind("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Server = build_server(self.app, graceful_timeout=2)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="registry", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self.server.serve([self.sock]))
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
        finally:
            self.loop.close()

    def start(self) -> RegistryThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self._error is not None or not self.thread.is_alive():
                raise RuntimeError(f"registry failed to start: {self._error!r}\n{self.sink.text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("registry did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.request_exit()
        self.thread.join(15)
        assert not self.thread.is_alive(), "registry thread did not stop"
        self.sock.close()

    @property
    def state(self) -> Any:
        return self.app.state

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop thread (state is single-threaded) and return its result."""
        assert self.loop is not None
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(10)

    def unhandled(self) -> list[str]:
        return [line for line in self.sink.text().splitlines() if '"unhandled error"' in line]


@pytest.fixture
def registry_factory() -> Iterator[Callable[..., RegistryThread]]:
    started: list[RegistryThread] = []

    def make(**options: Any) -> RegistryThread:
        reg = RegistryThread(**{**FAST, **options}).start()
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()
        assert not reg.unhandled(), reg.unhandled()


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryThread]) -> RegistryThread:
    return registry_factory()


@pytest.fixture
def client(registry: RegistryThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        yield c


METRICS_TEXT = b"# HELP demo_up A demo gauge.\n# TYPE demo_up gauge\ndemo_up 1\n"


class Target:
    """A tiny HTTP server for HTTP checks and scrapes: ``/status/<code>`` answers that code, ``/metrics`` valid
    Prometheus text; requests are recorded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                target.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
                code = 200
                parts = self.path.split("/")
                if len(parts) >= 3 and parts[1] == "status" and parts[2].isdigit():
                    code = int(parts[2])
                body = b"" if code == 204 else f"answer {code}".encode()
                if self.path == "/metrics":
                    body = METRICS_TEXT
                self.send_response(code)
                if self.path == "/metrics":
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last
