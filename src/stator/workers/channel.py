"""A worker's slot socket: a small thread answering "your snapshot, now" and "your record" requests.

The thread is the worker's own (not its event loop): it is answered even while the loop is busy, and it costs
the loop only the GIL time of collecting and encoding (paced like the renderer, see
:class:`stator.metrics.render.Pacer`). Requests are one byte (:data:`SNAPSHOT` or :data:`RECORD`); replies are
an 8-byte big-endian length and the payload. Every connection's peer must run as this uid (``SO_PEERCRED``).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

SNAPSHOT: Final = b"S"
RECORD: Final = b"R"
_LEN: Final = struct.Struct(">Q")
_CRED: Final = struct.Struct("3i")
MAX_REPLY: Final = 1 << 30


class Unreachable(Exception):
    """The slot's socket did not answer (no listener: the worker is gone; or it timed out: the worker hangs)."""

    def __init__(self, reason: str, *, hung: bool = False) -> None:
        super().__init__(reason)
        self.hung = hung


Handler = Callable[[bytes], bytes]


class SlotServer:
    """Listens on ``path`` and answers each request with ``handler(request)``, one connection at a time."""

    def __init__(self, path: Path, handler: Handler, on_error: Callable[[BaseException], None]) -> None:
        self.path = path
        self._handler = handler
        self._on_error = on_error
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead predecessor's socket file
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(64)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name=f"stator-slot-{path.stem}", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        uid = os.getuid()
        while True:
            ready, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(5.0)
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
                    if _CRED.unpack(creds)[1] != uid:
                        continue
                    request = conn.recv(1)
                    if not request:
                        continue
                    payload = self._handler(request)
                    conn.sendall(_LEN.pack(len(payload)) + payload)
                except Exception as exc:  # a client that went away, a collector bug: keep serving
                    if not isinstance(exc, OSError):
                        self._on_error(exc)

    def close(self) -> None:
        """Stop answering and remove the socket file (a scrape then reads this slot's file instead)."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def ask(path: Path, request: bytes, timeout: float) -> bytes:
    """Send ``request`` to the slot socket at ``path``; the reply payload, or :class:`Unreachable`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unreachable(type(exc).__name__) from None
        except OSError as exc:  # EAGAIN: listener backlog full -> the worker is alive but not keeping up
            raise Unreachable(str(exc), hung=True) from None
        try:
            sock.sendall(request)
            head = _recv_exact(sock, _LEN.size)
            (size,) = _LEN.unpack(head)
            if size > MAX_REPLY:
                raise Unreachable(f"reply too large ({size} bytes)")
            return _recv_exact(sock, size)
        except TimeoutError:
            raise Unreachable("timed out", hung=True) from None
        except OSError as exc:
            raise Unreachable(str(exc)) from None
    finally:
        sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise Unreachable("connection closed mid-reply")
        got += k
    return bytes(buf)
