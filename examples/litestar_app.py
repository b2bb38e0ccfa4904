"""A Litestar service with stator: ``uvicorn examples.litestar_app:app`` (or any other ASGI server)."""

from __future__ import annotations

import logging

from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from opentelemetry import trace

import stator

log = logging.getLogger("examples.litestar")
tracer = trace.get_tracer("examples.litestar")


@get("/hello")
async def hello() -> dict[str, str]:
    with tracer.start_as_current_span("compose greeting"):
        log.info("saying hello", extra={"who": "world"})
        return {"hello": "world"}


@get("/items/{item_id:int}")
async def item(item_id: int) -> dict[str, int]:
    if item_id < 0:
        raise NotFoundException("no such item")
    return {"id": item_id}


@get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("the handler failed")


@get("/config")
async def config() -> dict[str, str]:
    return {"owner": "application"}  # the app's own /config: stator's lives at /-/config


app = stator.instrument(Litestar(route_handlers=[hello, item, boom, config]), name="example-litestar")
