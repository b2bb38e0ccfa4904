"""Raw-socket HTTP for the hardening tests: requests no HTTP client would send, read back byte for byte."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    reset_after: bool = False  # the server reset the connection after the response (unread request bytes)
    raw: bytes = b""
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_reply(sock: socket.socket, timeout: float = 10.0) -> Reply:
    """One HTTP/1.1 response (Content-Length framed). Raises if the connection ends before it is complete."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    reset = False
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response head; got {data[:200]!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            reset = True
            break
        if not chunk:
            break
        body += chunk
    if len(body) < length:
        raise ConnectionError(f"response body cut: {len(body)} of {length} bytes")
    return Reply(status, headers, body[:length], reset, data, time.monotonic() - start)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> Reply:
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_reply(sock, timeout)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout`` without sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def flood(port: int, head: bytes, chunk: bytes, total: int, timeout: float = 20.0) -> tuple[Reply, int]:
    """Send ``head`` then up to ``total`` bytes of ``chunk`` from a thread while reading the response; returns the
    response and how many body bytes the kernel accepted before the server closed the connection."""
    sock = connect(port, timeout)
    sent = 0

    def pump() -> None:
        nonlocal sent
        try:
            sock.sendall(head)
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed: exactly what is expected

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        reply = read_reply(sock, timeout)
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(timeout)
    return reply, sent


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def rejected(port: int) -> dict[str, float]:
    """``stator_http_rejected_total`` by reason, scraped from the service."""
    status, _, body = get(port, "/-/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "stator_http_rejected_total":
                out[sample.labels["reason"]] = sample.value
    return out


def port_of(proc: Any) -> int:
    return int(str(proc.wait_for("listening")["address"]).rsplit(":", 1)[1])
