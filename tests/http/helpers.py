"""In-process helpers: run an instrumented app's lifespan and talk to it with httpx over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from stator.config import load_settings
from stator.logs import Logger, MemorySink
from stator.service import Service


def make_service(app: Any = None, env: dict[str, str] | None = None, **kw: Any) -> tuple[Service, MemorySink]:
    sink = MemorySink()
    settings = load_settings({"STATOR_WAVE_ENABLED": "false", "STATOR_SHUTDOWN_DELAY": "0", **(env or {})})
    logger = Logger(app_id="test", run_id="Run0001", sink=sink, level=settings.log.level, maxlen=settings.log.maxlen)
    return Service(settings, app=app, logger=logger, **kw), sink


@asynccontextmanager
async def running(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """Drive the ASGI lifespan (startup → yield a client → shutdown) like a server would."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(service.asgi({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=service.asgi, client=("10.1.2.3", 4567))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


def log_lines(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.lines]


def samples(service: Service, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Current samples of one metric from the service's own registry, keyed by sorted labels."""
    from prometheus_client.exposition import generate_latest

    out = {}
    for family in text_string_to_metric_families(generate_latest(service.metrics).decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[str]:
    """Run ``service.serve()`` on a loopback port for the duration of the block; yields its base URL."""
    task = asyncio.create_task(service.serve())
    for _ in range(300):
        if service.address is not None and service.state == "running":
            break
        await asyncio.sleep(0.02)
    assert service.address is not None
    try:
        yield f"http://127.0.0.1:{service.address[1]}"
    finally:
        service.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
