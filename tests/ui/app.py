"""The application the instance-page tests serve: fast, slow (any path, so a test can put HTML in it) and failing
routes. ``stator run tests.ui.app:app``."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def slow(request: Request) -> JSONResponse:
    """Slow on purpose: ~60 ms of CPU (so the continuous profiler has samples of this span) then a sleep."""
    end = time.process_time() + 0.06
    n = 0
    while time.process_time() < end:
        n += 1
    await asyncio.sleep(float(request.query_params.get("seconds", "0.3")))
    return JSONResponse({"slept": True, "spins": n})


async def fail(request: Request) -> JSONResponse:
    raise RuntimeError("the failing route failed, as asked")


app = Starlette(
    routes=[
        Route("/ok", ok),
        Route("/items/{item_id}", ok),
        Route("/slow/{name:path}", slow),
        Route("/fail", fail),
    ]
)
