"""Where rendered lines go. One ``write`` per line: a line is never interleaved with another process's."""

from __future__ import annotations

import os
import select
import threading
from typing import Protocol


class Sink(Protocol):
    def write(self, line: bytes) -> None: ...


class FdSink:
    """Writes each line with one ``os.write`` to a file descriptor (stdout by default).

    No userspace buffer: a line is visible to ``docker logs``/a pipe reader the moment it is logged, and a crash
    loses nothing already logged. One syscall per line is the floor, and it is cheap (~1.5 µs).
    """

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                # Someone made our stdout non-blocking (event loops sometimes do): wait until writable.
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError:
                return  # stdout closed (reader went away): logging must never take the service down
            view = view[n:]


class MemorySink:
    """Keeps lines in memory; for tests and for embedding."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self._lock:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return b"".join(self.lines).decode()
