"""The reference application served by ``stator run``: a few small endpoints in the spirit of Go kit's addsvc,
enough to see every observability feature at work (templated routes, errors, slow requests, JSON validation)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_CONCAT = 10
INT32_MAX = 2**31 - 1


class BadRequest(Exception):
    """A client error; the middleware turns ``status_code`` into the response status (Go kit's StatusCoder)."""

    status_code = 400


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def item(request: Request) -> Response:
    item_id = request.path_params["item_id"]
    return JSONResponse({"id": item_id, "name": f"item {item_id}"})


async def sleep(request: Request) -> Response:
    """Sleeps ``?seconds=`` (at most 60): a slow request for drain and slow-log demonstrations."""
    try:
        seconds = float(request.query_params.get("seconds", "1"))
    except ValueError:
        return _error("seconds must be a number")
    if not 0 <= seconds <= 60 or math.isnan(seconds):
        return _error("seconds must be between 0 and 60")
    await asyncio.sleep(seconds)
    return JSONResponse({"slept": seconds})


async def sum_(request: Request) -> Response:
    body = await _json_body(request)
    a, b = body.get("a"), body.get("b")
    if type(a) is not int or type(b) is not int:
        return _error("a and b must be integers")
    if a == 0 and b == 0:
        return _error("can't sum two zeroes")
    total = a + b
    if not -INT32_MAX - 1 <= total <= INT32_MAX:
        return _error("integer overflow")
    return JSONResponse({"v": total})


async def concat(request: Request) -> Response:
    body = await _json_body(request)
    a, b = body.get("a"), body.get("b")
    if not isinstance(a, str) or not isinstance(b, str):
        return _error("a and b must be strings")
    if len(a) + len(b) > MAX_CONCAT:
        return _error(f"result exceeds maximum size of {MAX_CONCAT}")
    return JSONResponse({"v": a + b})


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _error(str(exc), getattr(exc, "status_code", 400))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 as JSON, like every other error of the service."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(extra_routes: list[Route] | None = None) -> Starlette:
    routes = [
        Route("/hello", hello),
        Route("/items/{item_id}", item),
        Route("/sleep", sleep),
        Route("/sum", sum_, methods=["POST"]),
        Route("/concat", concat, methods=["POST"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, exception_handlers={BadRequest: _bad_request, HTTPException: _http_error})
