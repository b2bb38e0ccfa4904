"""Background workers: small loops with one job, a name, a start and a clean stop.

A worker is anything with a ``name`` and an ``async run()`` that works until cancelled. The supervisor gives it
a ``worker_id`` in the log context, logs ``worker starting`` / ``worker stopped``, and restarts it with capped
exponential backoff when it raises — a crashing worker never kills the process silently and never spins.
A worker that must act before the HTTP drain (deregistration) also implements :class:`PreDrain`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from stator.backoff import Backoff
from stator.ids import short_id
from stator.logs import Logger, log_context


@runtime_checkable
class Worker(Protocol):
    @property
    def name(self) -> str: ...

    async def run(self) -> None:
        """Do the work until cancelled. Returning means the worker is finished (it is not restarted)."""


@runtime_checkable
class PreDrain(Protocol):
    async def before_drain(self) -> None:
        """Called at shutdown after readiness flips and before the HTTP server drains (e.g. deregister)."""


WorkerStateName = Literal["starting", "running", "backoff", "finished", "stopped"]


@dataclass
class WorkerState:
    """What /monitor shows about a worker."""

    name: str
    worker_id: str = field(default_factory=short_id)
    state: WorkerStateName = "starting"
    restarts: int = 0
    started_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "worker_id": self.worker_id,
            "state": self.state,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


async def supervise(worker: Worker, state: WorkerState, logger: Logger, backoff: Backoff) -> None:
    """Run ``worker`` until it returns or is cancelled, restarting it with backoff when it raises.

    The backoff resets once a run has lasted longer than the maximum delay: a worker that fails once a day
    restarts quickly, one that fails at once every time settles at the cap.
    """
    with log_context(worker_id=state.worker_id):
        logger.info("worker starting", name=state.name)
        try:
            while True:
                state.state = "running"
                state.started_at = time.time()
                began = time.monotonic()
                try:
                    await worker.run()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if time.monotonic() - began > backoff.maximum:
                        backoff.reset()
                    delay = backoff.next()
                    state.restarts += 1
                    state.state = "backoff"
                    state.last_error = f"{type(exc).__name__}: {exc}"
                    state.last_error_at = time.time()
                    logger.error("worker failed", exc=exc, name=state.name, restart_in=round(delay, 3))
                    await asyncio.sleep(delay)
                    logger.info("worker restarting", name=state.name, restarts=state.restarts)
                else:
                    state.state = "finished"
                    return
        finally:
            if state.state != "finished":
                state.state = "stopped"
            logger.info("worker stopped", name=state.name)
