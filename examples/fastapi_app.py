"""A FastAPI service with stator: ``uvicorn examples.fastapi_app:app`` (or gunicorn, hypercorn, granian,
``stator run examples.fastapi_app:app``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException
from opentelemetry import trace

import stator

log = logging.getLogger("examples.fastapi")
tracer = trace.get_tracer("examples.fastapi")

api = FastAPI(title="example")


@api.get("/hello")
async def hello() -> dict[str, str]:
    with tracer.start_as_current_span("compose greeting"):
        log.info("saying hello", extra={"who": "world"})
        return {"hello": "world"}


@api.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    if item_id < 0:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id}


@api.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("the handler failed")


@api.get("/config")
async def config() -> dict[str, str]:
    return {"owner": "application"}  # the app's own /config: stator's lives at /-/config


app = stator.instrument(api, name="example-fastapi")
app.service.add_readiness_check("always", lambda: _ready())


async def _ready() -> bool:
    return True
