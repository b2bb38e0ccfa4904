"""Pushing windows to a Pyroscope ingest endpoint (``POST /ingest?format=pprof``, multipart field ``profile``).

The URL may carry credentials (``https://user:token@profiles.example/``, as Grafana Cloud hands them out): they
are sent as HTTP basic auth and never shown — every log line and /-/monitor shows the URL with its userinfo
redacted. A failed push is logged once (and once more when pushing recovers), counted, and retried with the next
window; a bounded backlog keeps the windows not yet delivered, the oldest dropped (and counted) beyond it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from urllib.parse import quote

import httpx

from stator.config.types import SecretURL, redact_url
from stator.logs import Logger
from stator.profiling.continuous import Window

BACKLOG = 30
SAMPLE_TYPE_CONFIG = {
    "cpu": {"units": "nanoseconds", "display-name": "cpu", "aggregation": "sum", "sampled": True},
    "wall": {"units": "nanoseconds", "display-name": "wall", "aggregation": "sum", "sampled": True},
    "cpu-samples": {"units": "samples", "display-name": "cpu_samples", "aggregation": "sum", "sampled": True},
}


def _label_value(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:/" else "_" for c in value)


class PyroscopePusher:
    def __init__(
        self,
        url: SecretURL,
        *,
        app_name: str,
        labels: dict[str, str],
        rate: float,
        logger: Logger,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.shown_url = str(url)  # a SecretURL's text is the redacted URL
        base = url.bare.split("?", 1)[0].rstrip("/")
        self.ingest_url = base if base.endswith("/ingest") else base + "/ingest"
        self._headers = url.auth_headers()
        tags = ",".join(f"{_label_value(k)}={_label_value(v)}" for k, v in sorted(labels.items()))
        self.name = f"{_label_value(app_name)}{{{tags}}}" if tags else _label_value(app_name)
        self.rate = rate
        self.logger = logger
        self.timeout = timeout
        self._transport = transport
        self.backlog: deque[Window] = deque()
        self.pushed = 0
        self.failed = 0
        self.dropped = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._failing = False

    def enqueue(self, window: Window) -> None:
        if len(self.backlog) >= BACKLOG:
            self.backlog.popleft()
            self.dropped += 1
        self.backlog.append(window)

    async def flush(self) -> None:
        """Send the backlog oldest first; stop at the first failure (the rest waits for the next window)."""
        if not self.backlog:
            return
        async with httpx.AsyncClient(
            timeout=self.timeout, trust_env=False, transport=self._transport, headers=self._headers
        ) as client:
            while self.backlog:
                window = self.backlog[0]
                error = await self._send(client, window)
                if error is not None:
                    self.failed += 1
                    self.last_error = error
                    if not self._failing:
                        self._failing = True
                        self.logger.warning(
                            "profile push failing", url=self.shown_url, error=error, backlog=len(self.backlog)
                        )
                    return
                self.backlog.popleft()
                self.pushed += 1
                self.last_success = time.time()
                if self._failing:
                    self._failing = False
                    self.logger.info("profile push recovered", url=self.shown_url)

    async def _send(self, client: httpx.AsyncClient, window: Window) -> str | None:
        params = {
            "name": self.name,
            "from": str(window.start_ns // 1_000_000_000),
            "until": str(-(-window.end_ns // 1_000_000_000)),
            "format": "pprof",
            "sampleRate": str(round(self.rate)),
            "spyName": "stator",
        }
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        config = json.dumps(SAMPLE_TYPE_CONFIG).encode()
        files = {
            "profile": ("profile.pb.gz", window.data, "application/octet-stream"),
            "sample_type_config": ("sample_type_config.json", config, "application/json"),
        }
        try:
            response = await client.post(f"{self.ingest_url}?{query}", files=files)
        except httpx.HTTPError as exc:
            return redact_url(f"{type(exc).__name__}: {exc}")
        if response.status_code >= 300:
            return f"HTTP {response.status_code}: {redact_url(response.text[:200])}"
        return None

    def monitor(self) -> dict[str, object]:
        return {
            "url": self.shown_url,
            "pushed": self.pushed,
            "failed": self.failed,
            "dropped": self.dropped,
            "backlog": len(self.backlog),
            "last_success": self.last_success,
            "last_error": self.last_error,
        }
