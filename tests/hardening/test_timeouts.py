"""Issue 13, defect 3: read timeouts and the connection cap, against a real `stator run` on loopback.

Before: ``Content-Length: 99999999999`` with no body stayed open past 35 s; 500 connections trickling headers at
1 byte/s were never closed; with the fd limit at 1024, 1,100 of them made ``/-/healthy`` fail for as long as they
lasted, with no log line.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time

from tests.conftest import ServiceProcess
from tests.hardening.raw import closed_by_peer, connect, get, port_of, read_reply, rejected

HEAD = b"GET /hello HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n"


def test_trickled_headers_get_408_and_silent_connections_are_closed(spawn: ServiceProcess) -> None:
    proc = spawn(STATOR_HTTP_HEADER_TIMEOUT="1s")
    port = port_of(proc)
    trickling = [connect(port) for _ in range(50)]
    silent = [connect(port) for _ in range(5)]
    sent = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < 3.0:  # ~1 byte per 0.4 s per connection, far slower than the timeout
            for sock in trickling:
                with contextlib.suppress(OSError):  # answered and closed already
                    sock.send(HEAD[sent : sent + 1])
            sent += 1
            time.sleep(0.4)
            status, _, _ = get(port, "/-/healthy", timeout=2)
            assert status == 200  # the service stays responsive while slow clients hold connections
        replies = [read_reply(sock, timeout=2) for sock in trickling]
        assert {r.status for r in replies} == {408}
        for reply in replies:
            assert reply.json()["reason"] == "header_timeout"
            assert reply.json()["request_id"] == reply.headers["x-request-id"]
        assert all(closed_by_peer(sock, 1.0) for sock in silent)
    finally:
        for sock in trickling + silent:
            sock.close()
    assert rejected(port)["header_timeout"] == 55
    # Logged, with the client address, but at a limited rate: one line for 55 rejections within the interval.
    lines = [line for line in proc.lines if line.get("reason") == "header_timeout"]
    assert 1 <= len(lines) <= 2 and lines[0]["client"].startswith("127.0.0.1:")


def test_a_stalled_body_gets_408_through_the_middleware(spawn: ServiceProcess) -> None:
    proc = spawn(STATOR_HTTP_MAX_BODY="0", STATOR_HTTP_BODY_TIMEOUT="1s", STATOR_HTTP_SLOW="10s")
    port = port_of(proc)
    with connect(port) as sock:
        sock.sendall(
            b"POST /sum HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 99999999999\r\n\r\n{"a":'
        )
        reply = read_reply(sock, timeout=5)
    assert reply.status == 408 and reply.headers["connection"] == "close"
    request_id = reply.json()["request_id"]
    assert request_id == reply.headers["x-request-id"]
    access = proc.wait_for("request", request_id=request_id)
    assert access["status"] == 408 and access["route"] == "/sum"
    assert rejected(port)["body_timeout"] == 1
    assert proc.wait_for("request body not received in time")["client"].startswith("127.0.0.1:")
    assert "unhandled exception" not in proc.messages()


def test_connection_cap_from_the_fd_limit_keeps_health_checks_answering(spawn: ServiceProcess) -> None:
    """fd limit 200 -> cap 72. 300 slow-header connections: each one past the cap closes the oldest slow one, so
    /-/healthy still answers; when every connection runs a request, a new one gets a JSON 503."""
    proc = spawn(
        ["prlimit", "--nofile=200:200", sys.executable, "-m", "stator", "run"], STATOR_HTTP_HEADER_TIMEOUT="30s"
    )
    port = port_of(proc)
    _, _, metrics = get(port, "/-/metrics")
    assert b"stator_http_connections_limit 72.0" in metrics
    slow: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = connect(port)
            sock.sendall(HEAD)
            slow.append(sock)
        status, _, _ = get(port, "/-/healthy", timeout=5)
        assert status == 200
        # The oldest slow connections were the ones closed (with a JSON 503), the newest are still open.
        assert read_reply(slow[0], timeout=2).json()["reason"] == "evicted"
        assert not closed_by_peer(slow[-1], 0.2)
        assert rejected(port)["evicted"] >= 228
        assert proc.wait_for("connection evicted")["client"].startswith("127.0.0.1:")
    finally:
        for sock in slow:
            sock.close()
    # Every slot running a request: nothing to evict, the newcomer is refused with a JSON 503.
    busy = [connect(port) for _ in range(72)]
    try:
        for sock in busy:
            sock.sendall(b"GET /sleep?seconds=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        with connect(port) as extra:
            reply = read_reply(extra, timeout=5)
        assert reply.status == 503 and reply.json()["reason"] == "connection_limit"
        assert proc.wait_for("connection limit reached")["client"].startswith("127.0.0.1:")
        assert [read_reply(s, timeout=10).status for s in busy] == [200] * 72
    finally:
        for sock in busy:
            sock.close()
