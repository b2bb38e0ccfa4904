"""What stator does with the framework inside an app: find it under ASGI wrappers, register stator's JSON 500
through its public API (see :mod:`stator.http.errors`), and tell whether it routes a path (ops alias collisions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stator.http.errors import error_payload, log_exception, mark_logged
from stator.logs import Logger
from stator.logs.context import bound


def unwrap(app: object, depth: int = 8) -> object:
    """The framework app under ASGI wrappers that keep it in ``.app`` (CORS, GZip, the user's own middleware)."""
    for _ in range(depth):
        if framework(app) is not None:
            return app
        inner = getattr(app, "app", None)
        if inner is None or inner is app:
            break
        app = inner
    return app


def framework(app: object) -> str | None:
    module = type(app).__module__
    if module.startswith("litestar") and isinstance(getattr(app, "exception_handlers", None), dict):
        return "litestar"
    try:
        from starlette.applications import Starlette
    except ImportError:  # pragma: no cover - starlette is a dependency
        return None
    return "starlette" if isinstance(app, Starlette) else None


def install_error_handler(app: object, logger: Logger) -> str | None:
    """Register stator's JSON 500 on the framework inside ``app``; returns the framework's name (None for raw
    ASGI, where the middleware answers). A handler the user registered for ``Exception``/500 is kept."""
    target = unwrap(app)
    kind = framework(target)
    if kind == "starlette":
        _install_starlette(target, logger)
    elif kind == "litestar":
        _install_litestar(target, logger)
    return kind


def _request_id() -> str | None:
    value = bound().get("request_id")
    return value if isinstance(value, str) else None


def _install_starlette(app: Any, logger: Logger) -> None:
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response

    handlers: dict[Any, Any] = app.exception_handlers
    if Exception in handlers or 500 in handlers:
        logger.info("application has its own exception handler: stator's JSON 500 not installed")
        return

    async def stator_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):  # the client left mid-body: nobody to answer, nothing to log
            mark_logged(exc)
            return Response(status_code=499)
        status, body = error_payload(exc, _request_id())
        log_exception(logger, exc, status, request.method, request.url.path)
        return Response(body, status_code=status, media_type="application/json")

    app.add_exception_handler(Exception, stator_error)


def _install_litestar(app: Any, logger: Logger) -> None:
    from litestar import Request as LitestarRequest
    from litestar import Response as LitestarResponse

    handlers: dict[Any, Any] = app.exception_handlers
    if Exception in handlers or 500 in handlers:
        logger.info("application has its own exception handler: stator's JSON 500 not installed")
        return

    def stator_error(request: LitestarRequest[Any, Any, Any], exc: Exception) -> LitestarResponse[bytes]:
        status, body = error_payload(exc, _request_id())
        log_exception(logger, exc, status, request.method, request.url.path)
        return LitestarResponse(body, status_code=status, media_type="application/json")

    # Litestar resolves a route's handlers from its layers (app -> router -> handler) for each request, and
    # consults the 500 entry only for exceptions that are not its own HTTPExceptions.
    handler: Callable[..., Any] = stator_error
    handlers[500] = handler


def routes_path(app: object, path: str) -> bool | None:
    """Whether the framework inside ``app`` has a route for ``GET path``; None when that cannot be known
    without calling the app (raw ASGI, Litestar): the router then learns it from the app's answer."""
    target = unwrap(app)
    if framework(target) != "starlette":
        return None
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is not Match.NONE for route in getattr(target, "routes", ()))
