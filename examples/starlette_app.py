"""A Starlette service with stator: ``uvicorn examples.starlette_app:app`` (or any other ASGI server)."""

from __future__ import annotations

import logging

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import stator

log = logging.getLogger("examples.starlette")
tracer = trace.get_tracer("examples.starlette")


async def hello(request: Request) -> JSONResponse:
    with tracer.start_as_current_span("compose greeting"):
        log.info("saying hello", extra={"who": "world"})
        return JSONResponse({"hello": "world"})


async def item(request: Request) -> JSONResponse:
    item_id = int(request.path_params["item_id"])
    if item_id < 0:
        raise HTTPException(status_code=404, detail="no such item")
    return JSONResponse({"id": item_id})


async def boom(request: Request) -> JSONResponse:
    raise RuntimeError("the handler failed")


async def config(request: Request) -> JSONResponse:
    return JSONResponse({"owner": "application"})  # the app's own /config: stator's lives at /-/config


app = stator.instrument(
    Starlette(
        routes=[
            Route("/hello", hello),
            Route("/items/{item_id:int}", item),
            Route("/boom", boom),
            Route("/config", config),
        ]
    ),
    name="example-starlette",
)
