"""A framework-free ASGI service with stator: ``uvicorn examples.raw_asgi_app:app`` (or any other ASGI server).

Without a router stator cannot know route templates, so the app passes a ``route_resolver``."""

from __future__ import annotations

import logging
import re

import orjson
from opentelemetry import trace

import stator
from stator.asgi import Receive, Scope, Send, send_json

log = logging.getLogger("examples.raw")
tracer = trace.get_tracer("examples.raw")
ITEM = re.compile(r"/items/(-?\d+)")


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        with tracer.start_as_current_span("compose greeting"):
            log.info("saying hello", extra={"who": "world"})
            await send_json(send, 200, {"hello": "world"})
    elif (match := ITEM.fullmatch(path)) is not None:
        item_id = int(match.group(1))
        if item_id < 0:
            await send_json(send, 404, {"error": "no such item"})
        else:
            await send_json(send, 200, {"id": item_id})
    elif path == "/boom":
        raise RuntimeError("the handler failed")
    elif path == "/config":
        await send_json(send, 200, {"owner": "application"})  # stator's lives at /-/config
    else:
        await send_json(send, 404, {"error": "not found", "path": orjson.Fragment(orjson.dumps(path))})


def route(scope: Scope) -> str:
    path: str = scope["path"]
    if path in ("/hello", "/boom", "/config"):
        return path
    return "/items/{item_id}" if ITEM.fullmatch(path) else "<unmatched>"


app = stator.instrument(application, name="example-raw", route_resolver=route)
