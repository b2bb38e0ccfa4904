"""Where rendered lines go. One ``write`` per line: a line is never interleaved with another process's."""

from __future__ import annotations

import asyncio
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


class LoopBufferedSink(FdSink):
    """An :class:`FdSink` that, on its event loop's thread, gathers lines and writes them once per loop pass.

    Under load a loop pass handles several requests; one ``write`` for all their lines instead of one each saves
    a syscall per request and, more importantly, a GIL release per request (every release is a chance for a
    busy background thread to take the interpreter for up to the switch interval). Lines stay whole and in
    order. Lines from other threads, and any line while no loop is bound, are written at once. The price: a hard
    crash (SIGKILL) can lose the lines of the current loop pass; ``flush()`` runs at every orderly stop.
    """

    def __init__(self, fd: int = 1, max_buffer: int = 65536) -> None:
        super().__init__(fd)
        self.max_buffer = max_buffer
        self._buffer: list[bytes] = []
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._scheduled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Buffer lines written from ``loop``'s thread from now on."""
        self._loop = loop
        self._thread = threading.get_ident()

    def unbind(self) -> None:
        self.flush()
        self._loop = None
        self._thread = 0

    def write(self, line: bytes) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() != self._thread:
            super().write(line)
            return
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= self.max_buffer:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            try:
                loop.call_soon(self.flush)
            except RuntimeError:  # the loop is closed: nobody will run the callback
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            super().write(data)
