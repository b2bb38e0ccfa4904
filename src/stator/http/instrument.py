"""``stator.instrument(app)``: make any ASGI app an observable, discoverable service."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from stator.asgi import AnyASGIApp, Scope
from stator.config import ConfigError, Settings, load_settings
from stator.http.app import ServiceApp
from stator.http.middleware import RequestTracer

if TYPE_CHECKING:
    from stator.service import Service


class Instrumented(ServiceApp):
    """The ASGI app ``instrument()`` returns: serve it with any ASGI server; ``.service`` is the
    :class:`~stator.service.Service` behind it (metrics, collectors, workers, readiness checks, clients)."""

    service: Service

    def __init__(self, service: Service) -> None:
        super().__init__(service.user_app, lifecycle=service, middleware=service.middleware, ops=service.public_ops)
        self.service = service
        service.asgi = self  # `stator run` of an instrumented app serves this very object


def instrument(
    app: AnyASGIApp,
    settings: Settings | None = None,
    *,
    name: str | None = None,
    route_resolver: Callable[[Scope], str] | None = None,
    tracer: RequestTracer | None = None,
) -> Instrumented:
    """Wrap ``app`` (Starlette, FastAPI, Litestar, raw ASGI) with stator: the observability middleware, the ops
    endpoints under ``/-/``, JSON errors, one log stream, OpenTelemetry interop, and — through the ASGI lifespan,
    under any server — the workers, registration (``STATOR_REGISTRY``) and discovery (``STATOR_DISCOVER_SOURCE``).

    ``settings`` default to the ``STATOR_*`` environment (a bad one prints one line and exits 2, as ``stator
    run`` does); ``name`` overrides ``STATOR_SERVICE_NAME``.
    """
    from stator.service import Service

    if settings is None:
        try:
            load_settings(os.environ)  # validated here; the Service loads them again (and warns of unknown ones)
        except ConfigError as exc:
            # The app is being imported by a server (uvicorn, gunicorn, ...): a bad STATOR_* setting is one
            # readable line and exit code 2, as with `stator run`, not a traceback from inside the import.
            print(f"stator: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return Instrumented(Service(settings, app=app, name=name, route_resolver=route_resolver, tracer=tracer))
