"""The TCP ports this process listens on, read from ``/proc`` (Linux).

Under an outside ASGI server (``uvicorn mod:app``, gunicorn, hypercorn, granian) the service is not told where
the server listens, and the ASGI lifespan runs before the first request could tell it. Registration needs the
address, so it is read from the kernel: the listening sockets among this process's file descriptors (a socket
inherited from a gunicorn arbiter or a granian main process counts: it is one of ours too).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN = "0A"


def _inodes(pid: str) -> set[str]:
    out: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return out
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _address(hex_addr: str, family: int) -> str:
    raw = bytes.fromhex(hex_addr)
    if family == socket.AF_INET:
        return socket.inet_ntop(family, raw[::-1])
    # /proc prints IPv6 as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(family, words)


def listening(pid: int | None = None) -> list[tuple[str, int]]:
    """(host, port) of every TCP socket in LISTEN state held by ``pid`` (default: this process), sorted by port;
    empty where ``/proc`` is not available."""
    key = str(pid if pid is not None else os.getpid())
    inodes = _inodes(key)
    found: set[tuple[str, int]] = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/{key}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN or fields[9] not in inodes:
                continue
            host, _, port = fields[1].rpartition(":")
            found.add((_address(host, family), int(port, 16)))
    return sorted(found, key=lambda a: (a[1], a[0]))
