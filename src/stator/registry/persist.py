"""``--data-dir``: KV and registrations survive a restart, as a real agent keeps them in its data dir.

The whole state is one JSON snapshot, rewritten shortly after changes (debounced, so a burst of writes costs one
file write) and on shutdown. Each write goes to a temporary file that is fsynced and renamed over the old one:
a crash leaves either the old snapshot or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final

import orjson

from stator.logs import Logger
from stator.registry.state import State

SNAPSHOT: Final = "registry-snapshot.json"


class SnapshotError(Exception):
    pass


class Persister:
    def __init__(self, state: State, data_dir: Path, logger: Logger, *, debounce: float = 0.05) -> None:
        self.state = state
        self.data_dir = data_dir
        self.path = data_dir / SNAPSHOT
        self.logger = logger
        self.debounce = debounce
        self._dirty = False
        self._running = False
        self._task: asyncio.Task[None] | None = None
        state.observers.append(self)

    def load(self) -> None:
        """Restore the snapshot if there is one. A snapshot that cannot be read stops the start: silently
        starting empty would lose the data the flag exists to keep."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.logger.info("no snapshot yet, starting empty", path=str(self.path))
            return
        try:
            snap = orjson.loads(self.path.read_bytes())
            self.state.restore(snap)
        except Exception as exc:
            raise SnapshotError(f"cannot restore {self.path}: {exc}") from exc
        self.logger.info(
            "snapshot restored",
            path=str(self.path),
            services=len(self.state.agent.agent_services),
            checks=len(self.state.agent.agent_checks),
            keys=self.state.kv.count(),
            index=self.state.index,
        )

    def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.write_now()

    # Observer protocol
    def checks_started(self, check_ids: list[str]) -> None:
        pass

    def checks_stopped(self, check_ids: list[str]) -> None:
        pass

    def changed(self) -> None:
        self._dirty = True
        if self._running and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._writer(), name="registry-snapshot")

    async def _writer(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.debounce)
            self._dirty = False
            # Serialise on the loop (a consistent snapshot), write in a thread (disk latency off the loop).
            data = orjson.dumps(self.state.snapshot())
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                self.logger.error("snapshot write failed, will retry", exc=exc, path=str(self.path))
                self._dirty = True
                await asyncio.sleep(1.0)

    def write_now(self) -> None:
        try:
            self._write(orjson.dumps(self.state.snapshot()))
            self._dirty = False
        except OSError as exc:
            self.logger.error("snapshot write failed", exc=exc, path=str(self.path))

    def _write(self, data: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        # fsync the directory so the rename itself survives a power cut.
        fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
