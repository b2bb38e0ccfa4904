"""Slots and leadership: small files locked with ``flock`` for the life of the process that holds them.

The kernel releases a ``flock`` when the last descriptor of its open file description closes — when the process
exits, however it exits (SIGKILL included) — so a lock is a liveness token that needs no heartbeat and no pid: a
recycled pid can never look like a live holder. (A child forked *without* exec inherits the descriptor and keeps the
lock alive; the descriptors are close-on-exec, so subprocesses started normally do not.)

- ``slot-N.lock``: a worker claims the lowest free N (or the hint its supervisor gave it, when free). N is the
  worker's index: the ``worker`` field of its log lines and the ``worker`` label of per-worker series.
- ``leader.lock``: one holder per group runs what must run once per instance (registration). Others retry
  periodically; when the leader dies, the next try of another worker wins.
- ``archive.lock``: exclusive while a dead worker's totals are folded into the archive, shared while a scrape
  reads the archive and the slot files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

MAX_SLOTS: Final = 4096


class FileLock:
    """One ``flock`` on one file, held from :meth:`try_acquire`/:meth:`acquire` until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, shared: bool = False) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, shared: bool = False) -> None:
        """Block until held (used for the short archive critical sections only)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the lock


@contextlib.contextmanager
def locked(path: Path, shared: bool = False) -> Iterator[None]:
    lock = FileLock(path)
    lock.acquire(shared)
    try:
        yield
    finally:
        lock.release()


def slot_path(directory: Path, slot: int, suffix: str) -> Path:
    return directory / f"slot-{slot}.{suffix}"


def claim_slot(directory: Path, hint: int | None = None) -> tuple[int, FileLock]:
    """Lock the hinted slot if free, else the lowest free one."""
    order: list[int] = []
    if hint is not None and 0 <= hint < MAX_SLOTS:
        order.append(hint)
    for slot in [*order, *range(MAX_SLOTS)]:
        lock = FileLock(slot_path(directory, slot, "lock"))
        if lock.try_acquire():
            return slot, lock
    raise RuntimeError(f"no free worker slot in {directory} (all {MAX_SLOTS} taken)")


def known_slots(directory: Path) -> list[int]:
    """Every slot that has (or had) a holder in this group, ascending."""
    out = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith("slot-") and name.endswith(".lock"):
                with contextlib.suppress(ValueError):
                    out.append(int(name[5:-5]))
    return sorted(out)
