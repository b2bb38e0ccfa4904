"""Helpers for the upstream suites: in-process backends served on loopback by a real stator Service (uvicorn),
whose behaviour a test switches at will (answer, fail with 500, hang), and a calling Service with its hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stator.config import load_settings
from stator.logs import Logger, MemorySink
from stator.service import Service
from stator.upstream import UpstreamHub
from tests.http.helpers import serving


class Backend:
    """One backend instance: ``mode`` is ``ok``, ``fail`` (500) or ``hang``; ``hits`` counts requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.hits = 0
        self.headers: dict[str, str] = {}  # the last request's headers
        self.url = ""
        routes = [Route("/work", self._work, methods=["GET", "POST"])]
        sink = MemorySink()
        settings = load_settings(
            {
                "STATOR_HTTP_HOST": "127.0.0.1",
                "STATOR_HTTP_PORT": "0",
                "STATOR_HTTP_ACCESS_LOG": "false",
                "STATOR_SHUTDOWN_TIMEOUT": "1s",  # a hung request is not waited for
            }
        )
        logger = Logger(app_id=name, run_id="r", sink=sink, level="warning")
        self.service = Service(settings, app=Starlette(routes=routes), logger=logger)

    async def _work(self, request: Request) -> Response:
        self.hits += 1
        self.headers = dict(request.headers)
        if self.mode == "fail":
            return JSONResponse({"error": "broken"}, status_code=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        return JSONResponse({"by": self.name}, headers={"X-Served-By": self.name})

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


@asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    async with AsyncExitStack() as stack:
        made = []
        for name in names:
            backend = Backend(name)
            backend.url = await stack.enter_async_context(serving(backend.service))
            made.append(backend)
        yield made


class Caller:
    """A started Service (workers running, not serving HTTP) with an upstream hub, and its log lines."""

    def __init__(self, env: dict[str, str] | None = None, **service_kw: Any) -> None:
        self.sink = MemorySink()
        settings = load_settings({"STATOR_WAVE_ENABLED": "false", **(env or {})})
        logger = Logger(app_id="caller", run_id="c", sink=self.sink, level="info")
        self.service = Service(settings, logger=logger, **service_kw)
        self.hub = UpstreamHub(self.service)

    def logs(self, msg: str | None = None) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in self.sink.lines]
        return [line for line in lines if msg is None or line.get("msg") == msg]

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        from prometheus_client.exposition import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        out = {}
        for family in text_string_to_metric_families(generate_latest(self.service.metrics).decode()):
            for sample in family.samples:
                if sample.name == name:
                    out[tuple(sorted(sample.labels.items()))] = sample.value
        return out


@asynccontextmanager
async def caller(env: dict[str, str] | None = None, **service_kw: Any) -> AsyncIterator[Caller]:
    c = Caller(env, **service_kw)
    await c.service.start()
    try:
        yield c
    finally:
        await c.service.begin_shutdown(time.monotonic() + 5)
        await c.service.stop_workers(time.monotonic() + 5)


async def eventually(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
