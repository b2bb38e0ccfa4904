"""ServiceMetrics: the per-service registry and the collectors attached to it."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from stator.config import Settings
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.lifecycle.worker import Worker
from stator.logs import Logger


class ServiceMetrics:
    def __init__(
        self,
        settings: Settings,
        logger: Logger,
        *,
        app_id: str,
        run_id: str,
        version: str,
        loop_monitor: LoopMonitor,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.registry = CollectorRegistry(auto_describe=True)
        self.loop_monitor = loop_monitor
        self._meta: dict[str, Any] = {"app_id": app_id, "run_id": run_id, "version": version}

    def add_collector(self, collector: Collector, name: str | None = None) -> None:
        self.registry.register(collector)

    def install_defaults(self) -> None:
        return None

    def workers(self) -> list[Worker]:
        return []

    async def render(self, openmetrics: bool = False) -> bytes:
        return generate_latest(self.registry)

    def endpoint(self) -> Any:
        from stator.http.asgi import Receive, Scope, Send, send_bytes

        async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
            body = await self.render()
            await send_bytes(
                send, 200, body, b"text/plain; version=0.0.4; charset=utf-8", head=scope["method"] == "HEAD"
            )

        return metrics
