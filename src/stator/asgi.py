"""ASGI type aliases and the few response helpers the pure-ASGI parts of stator share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_CONTENT_TYPE = b"application/json"


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON_CONTENT_TYPE,
    headers: list[tuple[bytes, bytes]] | None = None,
    head: bool = False,
) -> None:
    """Send a complete response; ``head`` sends the headers (with the real length) but no body."""
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
    head: bool = False,
) -> None:
    await send_bytes(send, status, orjson.dumps(payload), JSON_CONTENT_TYPE, headers, head)


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a request header (``name`` lower-case)."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


# Route labels that are not templates: no route claimed the request, or the label-set cap was reached. They live
# here, in the core, because the telemetry layers (tracing) need them without importing the HTTP layer.
UNMATCHED = "<unmatched>"
OVERFLOW = "<overflow>"


class AnyASGIApp(Protocol):
    """Any ASGI application, whatever its own ASGI type annotations (Litestar's, Starlette's, asgiref's ...):
    what :func:`stator.instrument` and :class:`~stator.service.Service` accept."""

    def __call__(self, scope: Any, receive: Any, send: Any, /) -> Awaitable[None]: ...
