"""A real Service with the remote-write receiver mounted, served by uvicorn on loopback from a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cramjam
import httpx
from starlette.applications import Starlette

from stator.config import load_settings
from stator.logs import Logger, MemorySink
from stator.remotewrite import setup_remote_write
from stator.remotewrite.schema import PROMPB
from stator.service import Service

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "stator-tests",
}


class Served:
    def __init__(self, service: Service, sink: MemorySink, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.service = service
        self.sink = sink
        self.url = url

    def write(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url + "/api/v1/write", content=body, headers=headers or HEADERS, timeout=10)

    def query(self, query: str, **params: str) -> httpx.Response:
        return httpx.get(self.url + "/api/v1/query", params={"query": query, **params}, timeout=10)

    def series(self, *matches: str) -> httpx.Response:
        return httpx.get(self.url + "/api/v1/series", params=[("match[]", m) for m in matches], timeout=10)

    def on_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the service's event loop thread and wait for it."""

        async def call() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def logs(self) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(line) for line in self.sink.lines]


@contextmanager
def serve_service(
    env: dict[str, str],
    *,
    remote_write: bool = True,
    app: Starlette | None = None,
    setup: Callable[[Service], object] | None = None,
) -> Iterator[Served]:
    """Build ``Service(settings, app=...)``, mount the receiver's routes (and run ``setup``, e.g. setup_statsd),
    serve it on a loopback port."""
    settings = load_settings({"STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": "0", **env})
    sink = MemorySink()
    logger = Logger(app_id="rw", run_id="test", level=settings.log.level, sink=sink)
    app = app or Starlette()
    service = Service(settings, app=app, logger=logger)
    if remote_write:
        app.router.routes.extend(setup_remote_write(service))
    if setup is not None:
        setup(service)
    loop = asyncio.new_event_loop()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(loop.run_until_complete(service.serve())), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while service.address is None or service.state != "running":
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    try:
        yield Served(service, sink, f"http://127.0.0.1:{service.address[1]}", loop)
    finally:
        loop.call_soon_threadsafe(service.request_stop)
        thread.join(30)
        loop.close()
        assert result == [0]


def write_request(series: list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]) -> bytes:
    """A serialized WriteRequest (the real prompb schema) — labels written in the order given."""
    req = PROMPB.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    return bytes(req.SerializeToString())


def snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))
