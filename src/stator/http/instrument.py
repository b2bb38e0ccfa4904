"""``stator.instrument(app)``: make any ASGI app an observable service."""

from __future__ import annotations

from collections.abc import Callable

from stator.config import Settings
from stator.http.asgi import ASGIApp, Scope
from stator.http.middleware import RequestTracer


def instrument(
    app: ASGIApp,
    settings: Settings | None = None,
    *,
    route_resolver: Callable[[Scope], str] | None = None,
    tracer: RequestTracer | None = None,
) -> ASGIApp:
    """Wrap ``app`` (Starlette, FastAPI, Litestar, raw ASGI) with the observability middleware, mount the ops
    endpoints, and run the service's workers through the ASGI lifespan, so ``uvicorn mymodule:app`` works.

    ``settings`` default to the ``STATOR_*`` environment. The returned app has a ``service`` attribute: the
    :class:`~stator.service.Service` behind it, for adding metrics, collectors, workers and readiness checks.
    """
    from stator.service import Service

    service = Service(settings, app=app, route_resolver=route_resolver, tracer=tracer)
    return service.asgi
