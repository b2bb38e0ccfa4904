"""Real processes the integration suites share: the dev registry as a subprocess and a real etcd, on loopback
ports with their own data dirs."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServiceProcess, service_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the dev registry --------------------------------------------------------------------------------------


class DevRegistry:
    """``python -m stator.registry.cli`` on a loopback port; KV writes through its HTTP API, like any client."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: ServiceProcess | None = None
        self.start()

    def start(self) -> None:
        args = [sys.executable, "-m", "stator.registry.cli", "--listen", f"127.0.0.1:{self.port}"]
        args += ["--data-dir", str(self.data_dir), "--log-level", "warning"]
        self.proc = ServiceProcess(args, service_env())
        # A fixed port (so a restart comes back where clients look); ready once it answers.
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{self.url}/v1/agent/self", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                    raise AssertionError(f"dev registry did not start: {self.proc.stderr[-2000:]!r}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put(self, key: str, value: bytes) -> None:
        resp = httpx.put(f"{self.url}/v1/kv/{key}", content=value, timeout=5)
        assert resp.status_code == 200 and resp.json() is True, resp.text

    def index(self, key: str) -> int:
        """The key's current X-Consul-Index (also for a missing key)."""
        return int(httpx.get(f"{self.url}/v1/kv/{key}", timeout=5).headers["X-Consul-Index"])

    def delete(self, key: str) -> None:
        httpx.delete(f"{self.url}/v1/kv/{key}", timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.proc.send_signal(signal.SIGKILL)
            self.proc.proc.wait(5)
            self.proc = None


# -- etcd ------------------------------------------------------------------------------------------------


class Etcd:
    """A real single-node etcd on loopback random ports with its own data dir (restartable on the same ports)."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name", "stator-test",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"stator-test={peer}",
            "--log-level", "error",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(f"{self.url}/v3/kv/range", json={"key": _b64("probe")}, timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"etcd did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(f"{self.url}{path}", json=body, timeout=5)
        resp.raise_for_status()
        out: dict[str, Any] = resp.json()
        return out

    def put(self, key: str, value: bytes) -> int:
        body = self._call("/v3/kv/put", {"key": _b64(key), "value": base64.b64encode(value).decode()})
        return int(body["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self._call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
