"""Shared fixtures: a stator service run as a real subprocess on loopback, and log-line helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

__all__ = ["ServiceProcess", "service_env", "start_prometheus"]

ROOT = Path(__file__).resolve().parent.parent


class ServiceProcess:
    """A ``stator`` (or any python -m / script) subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.stderr = b""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.raw.append(raw)
                try:
                    self.lines.append(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    self.lines.append({"unparsed": raw.decode(errors="replace")})
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for(self, msg: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The first log line with ``msg`` (and the given fields), waiting for it to appear."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.get("msg") == msg and all(line.get(k) == v for k, v in match.items()):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no log line {msg!r} {match} within {timeout}s; got:\n"
                        + "\n".join(r.decode(errors="replace").rstrip() for r in self.raw[-40:])
                        + f"\nstderr: {self.stderr.decode(errors='replace')[-2000:]}"
                    )
                self._cond.wait(min(remaining, 0.2))

    def messages(self) -> list[str]:
        with self._cond:
            return [str(line.get("msg")) for line in self.lines]

    @property
    def base_url(self) -> str:
        line = self.wait_for("listening")
        port = str(line["address"]).rsplit(":", 1)[1]
        return f"http://127.0.0.1:{port}"

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close()

    def _close(self) -> None:
        """Join the readers (they end at EOF) and close the pipes: no ResourceWarning, no leaked fds."""
        self._reader.join(5)
        self._err_reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def service_env(**overrides: str) -> dict[str, str]:
    """The parent environment minus STATOR_* (except the CI switch), plus loopback defaults and overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATOR_") or k == "STATOR_REQUIRE_EXTERNAL"}
    # No lame duck (STATOR_SHUTDOWN_DELAY): tests that stop services would each wait it out.
    env.update(
        {
            "STATOR_HTTP_HOST": "127.0.0.1",
            "STATOR_HTTP_PORT": "0",
            "STATOR_SHUTDOWN_DELAY": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start subprocesses that are always stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def _spawn(args: list[str] | None = None, **env: str) -> ServiceProcess:
        proc = ServiceProcess(args or [sys.executable, "-m", "stator", "run"], service_env(**env))
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.stop()


# Fixtures shared by several suites live in their own modules; importing them here makes them available to all.
from tests.prometheus import start_prometheus  # noqa: E402
