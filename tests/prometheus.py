"""Running Debian's Prometheus for a test: own port, own data dir, a config text, extra flags."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.externals import require_tool
from tests.processes import free_port


class Prometheus:
    def __init__(self, binary: str, config_text: str, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(config_text)
        self.log = workdir / "prometheus.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={workdir / 'data'}",
                *extra_args,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> Any:
        resp = httpx.get(self.url + path, params=params, timeout=5)
        resp.raise_for_status()
        return resp.json()["data"]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus not ready:\n" + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log_file.close()


RELABEL = """
    relabel_configs:
      - source_labels: [__meta_consul_tags]
        regex: .*,metrics,.*
        action: keep
      - source_labels: [__meta_consul_service]
        target_label: service
"""


GLOBAL = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: consul-services
"""


def has_consul_sd(workdir: Path) -> bool:
    promtool = require_tool("promtool")
    probe = workdir / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: p\n    consul_sd_configs:\n      - server: 127.0.0.1:1\n")
    result = subprocess.run([promtool, "check", "config", str(probe)], capture_output=True, text=True, timeout=30)
    return result.returncode == 0


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    binary = require_tool("prometheus")
    started: list[Prometheus] = []

    def start(config_text: str) -> Prometheus:
        prom = Prometheus(binary, config_text, tmp_path)
        started.append(prom)
        prom.wait_ready()
        return prom

    yield start
    for prom in started:
        prom.stop()


def consul_target(prom: Prometheus, service_id: str) -> dict[str, Any] | None:
    for t in prom.get("/api/v1/targets", state="active")["activeTargets"]:
        if t["discoveredLabels"].get("__meta_consul_service_id") == service_id:
            return dict(t)
    return None


def wait_prom(predicate: Callable[[], Any], timeout: float, prom: Prometheus, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} not seen within {timeout}s\nprometheus log:\n{prom.log.read_text()[-3000:]}")
