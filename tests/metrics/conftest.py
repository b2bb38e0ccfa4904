"""Helpers for the metrics tests: a ServiceMetrics with an in-memory log, and parsed expositions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from stator.config import load_settings
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.logs import Logger
from stator.logs.sinks import MemorySink
from stator.metrics import ServiceMetrics


class Harness:
    def __init__(self, env: dict[str, str], defaults: bool) -> None:
        self.sink = MemorySink()
        self.logger = Logger(app_id="test-app", run_id="run1234", sink=self.sink)
        self.monitor = LoopMonitor(0.005)
        self.metrics = ServiceMetrics(
            load_settings(env),
            self.logger,
            app_id="test-app",
            run_id="run1234",
            version="9.9.9",
            loop_monitor=self.monitor,
        )
        if defaults:
            self.metrics.install_defaults()

    def logs(self, msg: str | None = None) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in self.sink.lines]
        return [line for line in lines if msg is None or line["msg"] == msg]

    def text(self) -> str:
        return self.metrics.render_sync("text").decode()

    def openmetrics(self) -> str:
        return self.metrics.render_sync("openmetrics").decode()

    def families(self) -> dict[str, Metric]:
        """The OpenMetrics exposition parsed back (types and units included), by family name."""
        return {family.name: family for family in parse_openmetrics(self.openmetrics())}

    def text_families(self) -> dict[str, Metric]:
        return {family.name: family for family in parse_text(self.text())}


@pytest.fixture
def harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(defaults: bool = True, **env: str) -> Harness:
        h = Harness(env, defaults)
        made.append(h)
        return h

    yield make
    for h in made:
        h.metrics.close()


def samples(family: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def call(app: Any, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    """Drive an ASGI app in-process with one request; headers lower-cased in the result."""
    scope = {
        "type": "http",
        "method": method,
        "path": "/metrics",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    started: dict[str, Any] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        else:
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    hdrs = {bytes(k).decode().lower(): bytes(v).decode() for k, v in started["headers"]}
    return Response(started["status"], hdrs, bytes(body))
