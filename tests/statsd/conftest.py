"""The reference StatsD daemon (Etsy's ``statsd`` from npm, run by Node) on loopback, read through its management
port; and a plain UDP socket standing in for a DogStatsD agent."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.externals import require_tool
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
STATSD_JS = ROOT / ".cache" / "npm" / "node_modules" / "statsd" / "stats.js"


def require_statsd() -> Path:
    if STATSD_JS.is_file():
        return STATSD_JS
    message = f"the npm statsd daemon is not installed at {STATSD_JS} (scripts/install-system-deps.sh installs it)"
    if os.environ.get("STATOR_REQUIRE_EXTERNAL") == "1":
        pytest.fail(f"{message}; STATOR_REQUIRE_EXTERNAL=1 makes this a failure")
    pytest.skip(message)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_ENTRY = re.compile(r"'?([^'\s:{][^':]*?)'?:\s*(\[[^\]]*\]|[^,\n}]+)")


def parse_inspect(text: str) -> dict[str, Any]:
    """Node's ``util.inspect`` of a flat object of numbers or arrays of numbers (what the mgmt port prints)."""
    out: dict[str, Any] = {}
    for key, raw in _ENTRY.findall(text):
        raw = raw.strip()
        if raw.startswith("["):
            out[key] = [float(v) for v in raw.strip("[] \n").replace("\n", " ").split(",") if v.strip()]
        else:
            out[key] = float(raw)
    return out


class StatsdDaemon:
    def __init__(self, node: str, script: Path, workdir: Path) -> None:
        self.port = free_udp_port()
        self.mgmt_port = free_port()
        config = workdir / "statsd.js"
        config.write_text(
            f"{{ address: '127.0.0.1', port: {self.port}, mgmt_address: '127.0.0.1', mgmt_port: {self.mgmt_port},"
            " flushInterval: 3600000, backends: ['./backends/console'] }"
        )
        self.log = workdir / "statsd.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [node, str(script), str(config)], cwd=script.parent, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        # Ready once a probe sent over UDP shows up in its counters (the mgmt port may open first).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            while True:
                try:
                    probe.sendto(b"probe.ready:1|c", ("127.0.0.1", self.port))
                    if "probe.ready" in self.read("counters"):
                        self.command("delcounters probe.ready")
                        return
                except OSError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("statsd did not start:\n" + self.log.read_text())
                time.sleep(0.1)

    def command(self, cmd: str) -> str:
        with socket.create_connection(("127.0.0.1", self.mgmt_port), timeout=5) as sock:
            sock.sendall(cmd.encode() + b"\n")
            data = b""
            while not data.rstrip().endswith(b"END") and b"health:" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode()

    def read(self, what: str) -> dict[str, Any]:
        return parse_inspect(self.command(what).rsplit("END", 1)[0])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def statsd_daemon(tmp_path: Path) -> Iterator[StatsdDaemon]:
    node = require_tool("node")
    daemon = StatsdDaemon(node, require_statsd(), tmp_path)
    yield daemon
    daemon.stop()


class UDPAgent:
    """A bound UDP socket collecting datagrams, as a DogStatsD agent would receive them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.datagrams: list[bytes] = []

    def drain(self, seconds: float) -> list[bytes]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.datagrams.append(self.sock.recv(65536))
        return self.datagrams


@pytest.fixture
def udp_agent() -> Iterator[UDPAgent]:
    agent = UDPAgent()
    yield agent
    agent.sock.close()
