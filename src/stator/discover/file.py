"""Following a local JSON file: the source for a service with no registry (a file baked into the image, or one
a config-management tool keeps up to date).

A cheap stat loop rather than inotify: no extra dependency, works on every filesystem (NFS, overlayfs, bind
mounts, ConfigMap volumes whose "..data" symlink is swapped), and the files are tiny. A change is any difference
in (device, inode, size, mtime, ctime), so both in-place writes and atomic renames (write a temp file, rename it
over the path — the recommended way) are seen. A read that raced a replacement (the path's inode changed while
reading) is repeated; a half-written file read during a non-atomic write is rejected by the decoder, the last
good set is kept, and the finished write changes mtime/size and is read on the next check.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from stator.discover.poller import PollError, PollResult

Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FilePoller:
    """A :class:`~stator.discover.poller.Poller` over a local file, checked every ``interval`` seconds."""

    source = "file"

    def __init__(
        self,
        path: str,
        *,
        interval: float = 0.5,
        max_bytes: int = 1_048_576,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = path
        self.interval = interval
        self.max_bytes = max_bytes
        self._sleep = sleep
        self._first = True
        self._sig: Signature | None = None
        self.changes = 0  # the index reported: one per change seen since start

    @property
    def key(self) -> str:
        return self.path

    def _stat(self) -> Signature | None:
        try:
            return _signature(os.stat(self.path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PollError("io", f"cannot stat {self.path}: {exc}") from None

    def _read(self) -> tuple[bytes | None, Signature | None]:
        for _ in range(5):
            try:
                with open(self.path, "rb") as f:
                    sig = _signature(os.fstat(f.fileno()))
                    data = f.read(self.max_bytes + 1)
            except FileNotFoundError:
                return None, None
            except OSError as exc:
                raise PollError("io", f"cannot read {self.path}: {exc}") from None
            if len(data) > self.max_bytes:
                # Remember the oversized version: it is reported once, not re-read every interval.
                self._sig = sig
                raise PollError("oversize", f"{self.path} is larger than {self.max_bytes} bytes")
            if self._stat() == sig:
                return data, sig
            # Replaced (or rewritten) while we read: read the new one.
        raise PollError("io", f"{self.path} keeps changing while being read")

    async def poll(self) -> PollResult:
        if not self._first:
            while await asyncio.to_thread(self._stat) == self._sig:
                await self._sleep(self.interval)
        self._first = False
        # Off the event loop: a stalled filesystem (NFS) must not stall the service.
        data, sig = await asyncio.to_thread(self._read)
        self._sig = sig
        self.changes += 1
        return PollResult(data, self.changes)

    async def aclose(self) -> None:
        # Nothing held open; the next poll reads the file again (a restarted worker starts from the file).
        self._first = True

    def monitor(self) -> dict[str, Any]:
        return {"path": self.path, "interval_seconds": self.interval, "changes_seen": self.changes}
