"""Bad input gets a 400 with a JSON reason; what cannot be done now gets a 409/404; nothing is left running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from stator.config import load_settings
from stator.logs import Logger, MemorySink
from stator.profiling import Profiler, ProfilingApp
from stator.profiling.profiler import MAX_CONCURRENT_PROFILES


def _profiler(env: dict[str, str] | None = None) -> Profiler:
    settings = load_settings({"STATOR_PROFILE_MAX_SECONDS": "5s", **(env or {})}).profile
    return Profiler(settings, Logger(app_id="t", run_id="r", sink=MemorySink()))


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Profiler]]:
    profiler = _profiler()
    transport = httpx.ASGITransport(app=ProfilingApp(profiler))
    async with httpx.AsyncClient(transport=transport, base_url="http://t/debug/pprof") as c:
        yield c, profiler
    profiler.close()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("profile?seconds=0", "seconds"),
        ("profile?seconds=-1", "seconds"),
        ("profile?seconds=1e9", "seconds"),
        ("profile?seconds=6", "seconds"),
        ("profile?seconds=abc", "seconds"),
        ("profile?seconds=nan", "seconds"),
        ("profile?seconds=inf", "seconds"),
        ("profile?seconds=", "seconds"),
        ("heap?seconds=0", "seconds"),
        ("allocs?seconds=-3", "seconds"),
        ("heap?seconds=1&debug=1", "debug"),
        ("tasks?debug=3", "debug"),
        ("threads?debug=x", "debug"),
    ],
)
async def test_bad_parameters_are_400_json(
    client: tuple[httpx.AsyncClient, Profiler], query: str, parameter: str
) -> None:
    c, profiler = client
    response = await c.get(f"/{query}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["parameter"] == parameter and body["error"]
    assert not profiler.sampler.running and profiler.cpu_profiles_active == 0


async def test_unknown_paths_methods_and_stored_queries(client: tuple[httpx.AsyncClient, Profiler]) -> None:
    c, _ = client
    assert (await c.get("/nope")).status_code == 404
    assert (await c.post("/profile")).status_code == 405
    off = await c.get("/profile?start=0&end=10")
    assert off.status_code == 404 and "STATOR_PROFILE_CONTINUOUS" in off.json()["error"]


async def test_stored_query_validation() -> None:
    profiler = _profiler({"STATOR_PROFILE_CONTINUOUS": "true"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ProfilingApp(profiler)), base_url="http://t") as c:
        for query, parameter in [
            ("start=yesterday", "start"),
            ("start=20&end=10", "start"),
            ("start=10&seconds=1", "seconds"),
            ("end=-5", "end"),
        ]:
            response = await c.get(f"/debug/pprof/profile?{query}")
            assert response.status_code == 400 and response.json()["parameter"] == parameter, query
        empty = await c.get("/debug/pprof/profile?start=2024-01-01T00:00:00Z&end=2024-01-01T00:01:00Z")
        assert empty.status_code == 404


async def test_too_many_concurrent_profiles_get_409_and_one_sampler(
    client: tuple[httpx.AsyncClient, Profiler],
) -> None:
    c, profiler = client
    running = [asyncio.create_task(c.get("/profile?seconds=0.5")) for _ in range(MAX_CONCURRENT_PROFILES)]
    await asyncio.sleep(0.1)
    busy = await c.get("/profile?seconds=0.5")
    assert busy.status_code == 409 and "already running" in busy.json()["error"]
    assert profiler.sampler.started_threads == 1
    assert all(r.status_code == 200 for r in await asyncio.gather(*running))
    assert profiler.rejected["busy"] == 1


async def test_second_heap_profile_is_409(client: tuple[httpx.AsyncClient, Profiler]) -> None:
    c, _ = client
    first = asyncio.create_task(c.get("/heap?seconds=0.5"))
    await asyncio.sleep(0.1)
    second = await c.get("/heap?seconds=0.5")
    assert second.status_code == 409
    assert (await first).status_code == 200
