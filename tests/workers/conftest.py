"""A worker group run as real processes: stator's supervisor forking N workers (tests/workers/group_app.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.conftest import ServiceProcess, service_env


class Group:
    def __init__(self, proc: ServiceProcess, workers: int) -> None:
        self.proc = proc
        self.workers = workers
        self.url = proc.base_url
        self.wait_lines("worker serving", workers)

    def wait_lines(self, msg: str, n: int, timeout: float = 20.0, **match: object) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [
                line
                for line in list(self.proc.lines)
                if line.get("msg") == msg and all(line.get(k) == v for k, v in match.items())
            ]
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} x {msg!r} {match} not seen; got {self.proc.messages()[-30:]}")
            time.sleep(0.05)

    def work(self, n: int, concurrency: int = 6) -> list[str]:
        """Exactly ``n`` requests, each on its own connection; returns the worker slot that served each."""

        def one(_: int) -> str:
            resp = httpx.get(self.url + "/work", headers={"connection": "close"}, timeout=10)
            assert resp.status_code == 200, resp.text
            return resp.headers["x-worker"]

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, range(n)))

    def scrape(self, openmetrics: bool = False) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """{sample name: {sorted labels: value}} of one /metrics scrape (parsed by prometheus_client)."""
        accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
        resp = httpx.get(self.url + "/metrics", headers={"accept": accept}, timeout=10)
        assert resp.status_code == 200, resp.text
        parse = parse_openmetrics if openmetrics else parse_text
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in parse(resp.text):
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def roster(self) -> Any:
        resp = httpx.get(self.url + "/roster", timeout=10)
        assert resp.status_code == 200
        data: Any = resp.json()
        return data


@pytest.fixture
def start_group(tmp_path: Path) -> Iterator[Callable[..., Group]]:
    started: list[ServiceProcess] = []
    base = tmp_path / "groups"
    base.mkdir(mode=0o700)

    def start(workers: int, **env: str) -> Group:
        args = [sys.executable, "-m", "tests.workers.group_app", str(workers)]
        proc = ServiceProcess(args, service_env(STATOR_WORKERS_DIR=str(base), **env))
        started.append(proc)
        return Group(proc, workers)

    yield start
    for proc in started:
        proc.stop()
