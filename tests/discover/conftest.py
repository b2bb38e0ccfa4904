"""Fixtures for discovery: the real dev registry and real etcd as subprocesses on loopback, and a raw HTTP fake
for the answers a correct registry never gives (indexes going backwards or 0, 500s, truncated bodies).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from stator.logs import Logger, MemorySink
from tests.conftest import ServiceProcess, service_env
from tests.externals import require_tool

DOC_A = [{"uri": "http://pool01.example/api", "capabilities": [{"name": "resize", "capacity": 23}]}]
DOC_B = [
    {"uri": "http://pool01.example/api", "capabilities": [{"name": "resize", "capacity": 23}]},
    {"uri": "https://pool02.example:8443/api", "capabilities": [{"name": "resize", "capacity": 5}]},
]


def doc(n: int) -> bytes:
    """A distinct valid document per ``n`` (the capacity carries it)."""
    return orjson.dumps([{"uri": "http://pool.example/api", "capabilities": [{"name": "resize", "capacity": n}]}])


def memory_logger(level: Any = "info") -> tuple[Logger, MemorySink]:
    sink = MemorySink()
    return Logger(app_id="t", run_id="r", sink=sink, level=level), sink


def log_lines(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.lines]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# -- the dev registry --------------------------------------------------------------------------------------


class DevRegistry:
    """``python -m stator.registry.cli`` on a loopback port; KV writes through its HTTP API, like any client."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: ServiceProcess | None = None
        self.start()

    def start(self) -> None:
        args = [sys.executable, "-m", "stator.registry.cli", "--listen", f"127.0.0.1:{self.port}"]
        args += ["--data-dir", str(self.data_dir), "--log-level", "warning"]
        self.proc = ServiceProcess(args, service_env())
        # A fixed port (so a restart comes back where clients look); ready once it answers.
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{self.url}/v1/agent/self", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                    raise AssertionError(f"dev registry did not start: {self.proc.stderr[-2000:]!r}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put(self, key: str, value: bytes) -> None:
        resp = httpx.put(f"{self.url}/v1/kv/{key}", content=value, timeout=5)
        assert resp.status_code == 200 and resp.json() is True, resp.text

    def index(self, key: str) -> int:
        """The key's current X-Consul-Index (also for a missing key)."""
        return int(httpx.get(f"{self.url}/v1/kv/{key}", timeout=5).headers["X-Consul-Index"])

    def delete(self, key: str) -> None:
        httpx.delete(f"{self.url}/v1/kv/{key}", timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.proc.send_signal(signal.SIGKILL)
            self.proc.proc.wait(5)
            self.proc = None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRegistry]:
    reg = DevRegistry(tmp_path_factory.mktemp("registry"), free_port())
    yield reg
    reg.stop()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[[], DevRegistry]]:
    made: list[DevRegistry] = []

    def make() -> DevRegistry:
        reg = DevRegistry(tmp_path / f"registry{len(made)}", free_port())
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.stop()


# -- etcd ------------------------------------------------------------------------------------------------


class Etcd:
    """A real single-node etcd on loopback random ports with its own data dir (restartable on the same ports)."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name", "stator-test",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"stator-test={peer}",
            "--log-level", "error",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(f"{self.url}/v3/kv/range", json={"key": _b64("probe")}, timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"etcd did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(f"{self.url}{path}", json=body, timeout=5)
        resp.raise_for_status()
        out: dict[str, Any] = resp.json()
        return out

    def put(self, key: str, value: bytes) -> int:
        body = self._call("/v3/kv/put", {"key": _b64(key), "value": base64.b64encode(value).decode()})
        return int(body["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self._call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    server = Etcd(require_tool("etcd"), tmp_path_factory.mktemp("etcd") / "data")
    yield server
    server.stop()


@pytest.fixture
def etcd_factory(tmp_path: Path) -> Iterator[Callable[[], Etcd]]:
    made: list[Etcd] = []

    def make() -> Etcd:
        server = Etcd(require_tool("etcd"), tmp_path / f"etcd{len(made)}")
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


# -- a raw HTTP fake -------------------------------------------------------------------------------------


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[FakeRequest], Awaitable[bytes]]


def http_response(
    status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    """Raw HTTP/1.1 response bytes; ``length`` may lie (a truncated body)."""
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Status")
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body) if length is None else length}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def kv_body(key: str, value: bytes | None, modify_index: int = 1) -> bytes:
    entry = {
        "LockIndex": 0,
        "Key": key,
        "Flags": 0,
        "Value": base64.b64encode(value).decode() if value is not None else None,
        "CreateIndex": 1,
        "ModifyIndex": modify_index,
    }
    return orjson.dumps([entry])


class RawFake:
    """An HTTP server on a loopback socket whose answers are raw bytes from ``handler`` (then it closes)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[FakeRequest] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RawFake:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            parts = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            request = FakeRequest(method, parts.path, query, headers)
            self.requests.append(request)
            writer.write(await self.handler(request))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_fake() -> AsyncIterator[Callable[[Handler], Awaitable[RawFake]]]:
    made: list[RawFake] = []

    async def make(handler: Handler) -> RawFake:
        fake = await RawFake(handler).start()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        await fake.close()
