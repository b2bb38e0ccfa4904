"""The address advertised to the registry, found without contacting anything.

The seed "looked up" its address by dialling 8.8.8.8: that needs a route to the internet, reveals nothing about
the interface other instances can reach, and fails in exactly the isolated networks registries serve. Here:

1. a configured address (``STATOR_SERVICE_ADDRESS``) wins;
2. a server bound to one specific address is only reachable there: advertise it (127.0.0.1 in tests);
3. otherwise (bound to 0.0.0.0 / ::) the first usable IPv4 address of a local interface (Linux: enumerated with
   ``if_nameindex`` + ``SIOCGIFADDR``; elsewhere: what the host name resolves to), preferring private addresses
   over other global ones and skipping loopback and link-local;
4. loopback as the last resort, so a laptop without a network still registers with a local dev registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import sys

SIOCGIFADDR = 0x8915  # Linux <linux/sockios.h>


def advertised_address(configured: str, bound_host: str) -> str:
    """The address to register: configured, else the bound host if specific, else detected locally."""
    if configured:
        return configured
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(bound_host.strip("[]"))
        if not ip.is_unspecified:
            return str(ip)
    if bound_host and not _is_ip(bound_host):
        # A host name (STATOR_HTTP_HOST=myhost): the server listens where it resolves; so should others connect.
        return bound_host
    return detect_address()


def detect_address() -> str:
    """The best local IPv4 address for others to reach us; ``127.0.0.1`` when there is none."""
    candidates = interface_addresses() or hostname_addresses()
    best = _best(candidates)
    return best or "127.0.0.1"


def interface_addresses() -> list[str]:
    """IPv4 addresses of the local interfaces, in interface-index order (Linux only; [] elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    out: list[str] = []
    try:
        names = socket.if_nameindex()
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # never connected or sent on: ioctl only
        for _, name in sorted(names):
            try:
                packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # interface down or without an IPv4 address
                continue
            out.append(socket.inet_ntoa(packed[20:24]))
    return out


def hostname_addresses() -> list[str]:
    """IPv4 addresses the host name resolves to (/etc/hosts or DNS for our own name)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def _best(candidates: list[str]) -> str | None:
    usable = []
    for text in candidates:
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        usable.append(ip)
    if not usable:
        return None
    # Services talk to each other on private networks; a public address first would route around them.
    private = [ip for ip in usable if ip.is_private]
    return str((private or usable)[0])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True
