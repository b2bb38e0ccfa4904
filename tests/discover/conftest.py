"""Fixtures for discovery: the real dev registry and real etcd as subprocesses on loopback, and a raw HTTP fake
for the answers a correct registry never gives (indexes going backwards or 0, 500s, truncated bodies).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from stator.logs import Logger, MemorySink
from tests.externals import require_tool
from tests.processes import DevRegistry, Etcd, free_port

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


async def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


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
