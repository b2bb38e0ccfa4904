"""Sending datagrams to the agent without ever blocking or raising: a non-blocking connected socket, UDP
(``host:port``, resolved again every minute and after errors) or a unix datagram socket (``unix:///path``).

A connected UDP socket makes an absent agent visible: the ICMP "port unreachable" a datagram provokes is reported
by a later send as ``ConnectionRefusedError``. Every datagram that could not be handed to the kernel is counted by
reason; one lost on the wire is, as always with UDP, invisible.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Final

RESOLVE_EVERY: Final = 60.0


def parse_addr(addr: str) -> tuple[str, int] | str:
    """``(host, port)`` for UDP or the socket path for ``unix://``."""
    if addr.startswith("unix://"):
        return addr[len("unix://") :]
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Transport:
    def __init__(self, addr: str) -> None:
        self.addr = addr
        self._target = parse_addr(addr)
        self._sock: socket.socket | None = None
        self._connected_at = 0.0
        self.last_error: str | None = None

    def _connect(self) -> socket.socket:
        target = self._target
        if isinstance(target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect(target)
            except OSError:
                sock.close()
                raise
            return sock
        host, port = target
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, datagrams: Sequence[bytes]) -> tuple[int, int, Counter[str]]:
        """Send what can be sent now: (datagrams sent, bytes sent, drops by reason). Never raises."""
        dropped: Counter[str] = Counter()
        if not datagrams:
            return 0, 0, dropped
        now = time.monotonic()
        if self._sock is not None and now - self._connected_at > RESOLVE_EVERY:
            self.close()
        if self._sock is None:
            try:
                self._sock = self._connect()
                self._connected_at = now
            except OSError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                reason = "resolve" if isinstance(exc, socket.gaierror) else "unreachable"
                dropped[reason] += len(datagrams)
                return 0, 0, dropped
        sock = self._sock
        sent = nbytes = 0
        for index, data in enumerate(datagrams):
            try:
                sock.send(data)
            except BlockingIOError:
                dropped["buffer_full"] += 1
                continue
            except ConnectionRefusedError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                dropped["refused"] += 1
                continue
            except OSError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(self._target, str):  # the agent's socket went away: reconnect next flush
                    self.close()
                    dropped["error"] += len(datagrams) - index
                    break
                dropped["error"] += 1
                continue
            sent += 1
            nbytes += len(data)
        return sent, nbytes, dropped

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
