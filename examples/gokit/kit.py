"""The two Go kit ideas both examples share, in typed Python: an *endpoint* is one RPC (request in, response
out, context implicit in asyncio), and a *middleware* wraps an endpoint in another endpoint."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stator.logs import Logger

Req = TypeVar("Req")
Resp = TypeVar("Resp")

Endpoint = Callable[[Req], Awaitable[Resp]]


class ServiceError(Exception):
    """A business error; ``status_code`` is how the HTTP transport reports it (Go kit's StatusCoder)."""

    status_code = 400


def logging_middleware(logger: Logger, method: str, next_: Endpoint[Req, Resp]) -> Endpoint[Req, Resp]:
    """``next_`` with one log line per call (duration, error), like the workshop's loggingMiddleware."""

    async def endpoint(request: Req) -> Resp:
        started = time.perf_counter()
        error: str | None = None
        try:
            return await next_(request)
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            took = round((time.perf_counter() - started) * 1000, 3)
            logger.info("endpoint", method=method, took_ms=took, error=error)

    return endpoint
