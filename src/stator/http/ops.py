"""The ops endpoints as one pure ASGI app: ``/-/healthy``, ``/-/ready``, ``/monitor``, ``/config``, ``/metrics``.

It knows only the small :class:`OpsSource` interface below, so it can be mounted in any ASGI app or served on a
separate port. Paths are matched exactly; GET and HEAD only, anything else is 405 with ``Allow``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from stator.health import Readiness
from stator.http.asgi import Receive, Scope, Send, send_bytes, send_json

HEALTHY = "/-/healthy"
READY = "/-/ready"
MONITOR = "/monitor"
CONFIG = "/config"


class OpsSource(Protocol):
    """What the ops endpoints need from a service."""

    readiness: Readiness

    def alive(self) -> bool: ...

    def monitor(self) -> dict[str, Any]: ...

    def config_dump(self) -> dict[str, Any]: ...


MetricsEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class OpsApp:
    def __init__(self, source: OpsSource, metrics: MetricsEndpoint | None, metrics_path: str = "/metrics") -> None:
        self.source = source
        self.metrics = metrics
        self.paths = {HEALTHY, READY, MONITOR, CONFIG}
        self.metrics_path = metrics_path
        if metrics is not None:
            self.paths.add(metrics_path)

    def handles(self, path: str) -> bool:
        return path in self.paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path not in self.paths:
            await send_json(send, 404, {"error": "not found", "path": path})
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": f"method {method} not allowed"}, [(b"allow", b"GET, HEAD")])
            return
        head = method == "HEAD"
        if path == self.metrics_path and self.metrics is not None:
            await self.metrics(scope, receive, send)
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
