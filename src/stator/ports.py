"""Whether a TCP port can be bound, and which process listens on it (Linux ``/proc``), for clear start-up errors.

``stator demo`` checks every port it needs before starting anything, so a port left taken (by a previous demo
killed with its children, or anything else) gives one line naming the port and its holder — not a child that
dies later, or worse, a stale server answering in its place.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp{,6}


@dataclass(frozen=True)
class PortHolder:
    """A process listening on a port; ``pid`` is None when the socket is found but its owner is not visible
    (another user's process without the privileges to read its fds)."""

    port: int
    address: str
    pid: int | None = None
    command: str = ""

    def describe(self) -> str:
        if self.pid is None:
            return f"another user's process (listening on {self.address})"
        return f"pid {self.pid} ({self.command or '?'})"


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (as a server would bind it: SO_REUSEADDR, so TIME_WAIT is no
    obstacle, but a listener is). Port 0 is always free."""
    if port == 0:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int, proc: Path = Path("/proc")) -> PortHolder | None:
    """The process listening on TCP ``port`` (any address), from ``/proc/net/tcp{,6}`` and ``/proc/*/fd``.

    None when no listener is found (or ``/proc`` is not Linux's).
    """
    listeners = _listening_inodes(port, proc)
    if not listeners:
        return None
    wanted = {f"socket:[{inode}]": address for inode, address in listeners.items()}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                return PortHolder(port, wanted[target], int(pid_dir.name), _command(pid_dir))
    return PortHolder(port, next(iter(listeners.values())))


def _listening_inodes(port: int, proc: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port:
                found[fields[9]] = f"{_address(address, v6)}:{port}"
    return found


def _address(hex_address: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word of the address as a host-order integer.
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    words = raw
    if v6:
        return "[" + socket.inet_ntop(socket.AF_INET6, words) + "]"
    return socket.inet_ntop(socket.AF_INET, words)


def _command(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return ""
    command = " ".join(" ".join(part.decode(errors="replace").split()) for part in raw.split(b"\0") if part)
    return command if len(command) <= 200 else command[:200] + "..."
