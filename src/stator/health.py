"""Liveness and readiness.

Readiness is the answer to "should traffic (and the registry) send me requests": every registered async check
runs concurrently with its own timeout, the combined result is reused for ``cache`` seconds so a probe storm does
not become a check storm, and the answer is "not ready" from the moment shutdown starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[], Awaitable[object]]
"""A readiness check: returns (anything) when ready, raises when not; ``False`` also means not ready."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    duration: float
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if self.ok else "fail", "duration": round(self.duration, 6)}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class ReadinessReport:
    ready: bool
    checks: tuple[CheckResult, ...]
    reason: str | None = None
    at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "ready" if self.ready else "not ready",
            "checks": {c.name: c.as_json() for c in self.checks},
        }
        if self.reason:
            out["reason"] = self.reason
        return out


class Readiness:
    def __init__(self, timeout: float = 2.0, cache: float = 1.0) -> None:
        self.timeout = timeout
        self.cache = cache
        self.shutting_down = False
        self.started = False
        self._checks: dict[str, Check] = {}
        self._last: ReadinessReport | None = None
        self._inflight: asyncio.Future[ReadinessReport] | None = None

    def add_check(self, name: str, check: Check) -> None:
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} already registered")
        self._checks[name] = check
        self._last = None

    @property
    def last(self) -> ReadinessReport | None:
        return self._last

    async def evaluate(self) -> ReadinessReport:
        """The current readiness; concurrent callers share one evaluation."""
        if self.shutting_down:
            return ReadinessReport(False, self._last.checks if self._last else (), "shutting down", time.time())
        if not self.started:
            return ReadinessReport(False, (), "starting", time.time())
        last = self._last
        if last is not None and time.monotonic() - last.at < self.cache:
            return last
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._run_checks())
            self._inflight.add_done_callback(self._clear_inflight)
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, _: asyncio.Future[ReadinessReport]) -> None:
        self._inflight = None

    async def _run_checks(self) -> ReadinessReport:
        results = await asyncio.gather(*(self._run_one(n, c) for n, c in self._checks.items()))
        report = ReadinessReport(all(r.ok for r in results), tuple(results), None, time.monotonic())
        self._last = report
        return report

    async def _run_one(self, name: str, check: Check) -> CheckResult:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                value = await check()
        except TimeoutError:
            return CheckResult(name, False, time.perf_counter() - start, f"timed out after {self.timeout}s")
        except Exception as exc:
            return CheckResult(name, False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
        ok = value is not False
        return CheckResult(name, ok, time.perf_counter() - start, None if ok else "check returned false")
