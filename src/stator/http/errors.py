"""Error responses: one JSON shape for unhandled exceptions, ``{"error": ..., "request_id": ...}``, and the rule
that the stack is logged once.

The observability middleware answers an exception that reaches it. Frameworks answer first (Starlette's
``ServerErrorMiddleware``, Litestar's exception middleware), so :mod:`stator.http.frameworks` registers a handler
built from :func:`error_payload` through each framework's public API. The stack is logged by whoever sees the
exception first — the handler (Litestar does not re-raise) or the middleware (raw ASGI) — and marked, so the
middleware does not log it again when Starlette re-raises after its handler answered.
"""

from __future__ import annotations

import contextlib
from http import HTTPStatus

import orjson

from stator.logs import Logger

_LOGGED = "__stator_logged__"


def error_payload(exc: BaseException, request_id: str | None) -> tuple[int, bytes]:
    """Status and JSON body for ``exc``: its ``status_code`` when it carries a 4xx/5xx (Go kit's StatusCoder),
    else 500. A 5xx never shows the exception text to the client."""
    code = getattr(exc, "status_code", None)
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    message = str(exc) if status < 500 and str(exc) else reason(status)
    return status, orjson.dumps({"error": message, "request_id": request_id})


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def mark_logged(exc: BaseException) -> None:
    # An exception type with __slots__ refuses the mark: the stack is then logged twice, never lost.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _LOGGED, True)


def was_logged(exc: BaseException) -> bool:
    return getattr(exc, _LOGGED, False) is True


def log_exception(logger: Logger, exc: BaseException, status: int, method: str, path: str) -> None:
    """The one log line of an unhandled exception (5xx only: a mapped 4xx is the client's problem)."""
    if status >= 500 and not was_logged(exc):
        logger.error("unhandled exception", exc=exc, method=method, path=path)
    mark_logged(exc)
