"""The reference application served by ``stator run``: a few small endpoints in the spirit of Go kit's addsvc,
enough to see every observability feature at work (templated routes, errors, slow requests, JSON validation).

Every response carries ``X-Served-By: <instance id>`` (the instance that did the work). With an upstream wired in
(``STATOR_UPSTREAM_SERVICE=NAME``), ``POST /sum`` and ``POST /concat`` are forwarded to an instance of NAME
through ``service.upstream(NAME)`` and its answer — status, body and ``X-Served-By`` — is passed through, so a
client of the front instance sees which backend answered.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stator.asgi import ASGIApp, Message, Receive, Scope, Send
from stator.upstream.errors import UpstreamError

MAX_CONCAT = 10
INT32_MAX = 2**31 - 1
SERVED_BY = "X-Served-By"
_SERVED_BY = SERVED_BY.lower().encode()


class Forwarder(Protocol):
    """What forwarding needs of an upstream client (:class:`stator.upstream.Upstream`)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = ...,
        content: bytes = ...,
        headers: dict[str, str] = ...,
    ) -> httpx.Response: ...


@dataclass
class Wiring:
    """What the app learns once its Service exists: the instance id it reports, and the upstream (if any) that
    /sum and /concat are forwarded to."""

    instance_id: str = ""
    upstream: Forwarder | None = None


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


async def _forward(request: Request, upstream: Forwarder) -> Response:
    """Send the request on to an instance of the upstream and pass its answer through (X-Served-By included).

    /sum and /concat are pure functions of their body, so they are retried like idempotent requests."""
    headers = {"content-type": request.headers.get("content-type", "application/json")}
    try:
        answer = await upstream.request(
            request.method, request.url.path, content=await request.body(), headers=headers, idempotent=True
        )
    except UpstreamError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status_code)
    passed = {SERVED_BY: answer.headers[SERVED_BY]} if SERVED_BY in answer.headers else {}
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers=passed,
    )


def _upstream(request: Request) -> Forwarder | None:
    wiring: Wiring = request.app.state.wiring
    return wiring.upstream


async def sum_(request: Request) -> Response:
    upstream = _upstream(request)
    if upstream is not None:
        return await _forward(request, upstream)
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
    upstream = _upstream(request)
    if upstream is not None:
        return await _forward(request, upstream)
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


class ServedBy:
    """Adds ``X-Served-By: <instance id>`` to every response that does not carry one already (a forwarded
    answer keeps the backend's)."""

    def __init__(self, app: ASGIApp, wiring: Wiring) -> None:
        self.app = app
        self.wiring = wiring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.wiring.instance_id:
            await self.app(scope, receive, send)
            return
        value = self.wiring.instance_id.encode("latin-1")

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(k.lower() == _SERVED_BY for k, _ in headers):
                    headers.append((_SERVED_BY, value))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(extra_routes: list[Route] | None = None, *, wiring: Wiring | None = None) -> Starlette:
    """The reference app. ``wiring`` is filled in once the Service exists (instance id, upstream)."""
    wiring = wiring if wiring is not None else Wiring()
    routes = [
        Route("/hello", hello),
        Route("/items/{item_id}", item),
        Route("/sleep", sleep),
        Route("/sum", sum_, methods=["POST"]),
        Route("/concat", concat, methods=["POST"]),
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, exception_handlers={BadRequest: _bad_request, HTTPException: _http_error})
    app.state.wiring = wiring
    app.add_middleware(ServedBy, wiring=wiring)
    return app
