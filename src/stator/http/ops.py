"""The ops endpoints as one pure ASGI app. Every one of them lives under ``/-/``, a prefix no application uses:

==================  ===========================================================================================
``/-/healthy``      liveness (503 when the event loop is wedged)
``/-/ready``        readiness (503 with the failing checks, and from the first moment of shutdown)
``/-/monitor``      what the service is doing (workers, registration, discovery, tracing, ...)
``/-/services``     the discovered services document (long-poll with ``?after=&wait=``)
``/-/metrics``      Prometheus / OpenMetrics exposition
``/-/config``       the loaded configuration, redacted: *sensitive*, see below
==================  ===========================================================================================

Outside ``/-/`` the seed's paths stay as aliases — ``/metrics`` (``STATOR_METRICS_PATH``), ``/monitor`` and
``/services`` — but an application route always wins over an alias (see :class:`~stator.http.app.ServiceApp`).

Sensitive endpoints (``/-/config``, and mounts added with ``sensitive=True`` such as the profiler) are served
only where ``sensitive`` is true: on the separate ops port, or on the application port when there is none and
``STATOR_OPS_EXPOSE_SENSITIVE`` allows it.

It knows only the small :class:`OpsSource` interface below. GET and HEAD only (mounts decide for themselves);
anything else is 405 with ``Allow``; an unknown ``/-/`` path is a JSON 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from stator.asgi import ASGIApp, Receive, Scope, Send, send_bytes, send_json
from stator.health import Readiness
from stator.http.middleware import OPS_PREFIX, OPS_SCOPE_KEY

HEALTHY = "/-/healthy"
READY = "/-/ready"
MONITOR = "/-/monitor"
CONFIG = "/-/config"
SERVICES = "/-/services"
METRICS = "/-/metrics"
# Seed paths kept outside /-/, each naming the ops endpoint it stands for (the metrics path is configurable).
ALIASES = {"/monitor": MONITOR, "/services": SERVICES}


class OpsSource(Protocol):
    """What the ops endpoints need from a service."""

    readiness: Readiness

    def alive(self) -> bool: ...

    def monitor(self) -> dict[str, Any]: ...

    def config_dump(self) -> dict[str, Any]: ...


MetricsEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class OpsApp:
    def __init__(
        self,
        source: OpsSource,
        metrics: MetricsEndpoint | None,
        metrics_path: str = "/metrics",
        *,
        services: ASGIApp | None = None,
        sensitive: bool = True,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.services = services
        self.sensitive = sensitive
        self.aliases = dict(ALIASES)
        if metrics is not None and metrics_path != METRICS:
            self.aliases[metrics_path] = METRICS
        self._mounts: list[tuple[str, ASGIApp]] = []
        self._mount_aliases: tuple[str, ...] = ()  # "alias/" prefixes of mounts: one startswith() per request

    def mount(self, prefix: str, app: ASGIApp, *, sensitive: bool = True, alias: str | None = None) -> None:
        """Serve ``app`` for every path under ``prefix`` (which must start with ``/-/``); ``alias`` is a second
        prefix outside ``/-/`` that an application route wins over, like the other aliases. A sensitive mount
        is left out where sensitive endpoints are not served."""
        if not prefix.startswith(OPS_PREFIX):
            raise ValueError(f"ops mounts live under {OPS_PREFIX}: {prefix!r}")
        if sensitive and not self.sensitive:
            return
        self._mounts.append((prefix.rstrip("/"), app))
        if alias:
            self.aliases[alias.rstrip("/")] = prefix.rstrip("/")
            self._mount_aliases = (*self._mount_aliases, alias.rstrip("/") + "/")

    def alias_target(self, path: str) -> str | None:
        """The ops path an alias stands for (``/monitor`` -> ``/-/monitor``), or None."""
        target = self.aliases.get(path)
        if target is not None or not path.startswith(self._mount_aliases):
            return target
        alias = next(a for a in self._mount_aliases if path.startswith(a))[:-1]
        return self.aliases[alias] + path[len(alias) :]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[OPS_SCOPE_KEY] = True
        path = scope["path"]
        if not path.startswith(OPS_PREFIX):
            path = self.alias_target(path) or path
        for prefix, app in self._mounts:
            if path == prefix or path.startswith(prefix + "/"):
                await app({**scope, "path": path[len(prefix) :] or "/", "root_path": prefix}, receive, send)
                return
        method = scope["method"]
        known = path in (HEALTHY, READY, MONITOR, SERVICES, METRICS) or (path == CONFIG and self.sensitive)
        if not known or (path == METRICS and self.metrics is None) or (path == SERVICES and self.services is None):
            await send_json(send, 404, {"error": "not found", "path": scope["path"]})
            return
        if method not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": f"method {method} not allowed"}, [(b"allow", b"GET, HEAD")])
            return
        head = method == "HEAD"
        if path == METRICS:
            assert self.metrics is not None
            await self.metrics(scope, receive, send)
        elif path == SERVICES:
            assert self.services is not None
            await self.services(scope, receive, send)
        elif path == HEALTHY:
            alive = self.source.alive()
            await send_json(send, 200 if alive else 503, {"status": "ok" if alive else "wedged"}, head=head)
        elif path == READY:
            report = await self.source.readiness.evaluate()
            await send_json(send, 200 if report.ready else 503, report.as_json(), head=head)
        elif path == MONITOR:
            await send_json(send, 200, self.source.monitor(), head=head)
        else:
            await send_json(send, 200, {"config": self.source.config_dump()}, head=head)


async def not_found_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the ops endpoints when a service has no application routes of its own."""
    if scope["type"] == "http":
        await send_bytes(send, 404, b'{"error":"not found"}')
