"""Issue 13, defects 6 and 8: the shutdown deadline and the lame duck, against a real `stator run` on loopback.

Before: a request still running at ``STATOR_SHUTDOWN_TIMEOUT`` got uvicorn's plain-text 500 without a request id,
was recorded as 499 with an "Exception in ASGI application" stack; the listener closed ~0.09 s after
deregistration, and under keep-alive load 49 of 50 connections lost their in-flight request.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ServiceProcess
from tests.externals import require_tool
from tests.hardening.raw import connect, get, port_of, read_reply

HERE = Path(__file__).resolve().parent


def test_a_request_running_at_the_deadline_gets_a_json_503(spawn: ServiceProcess) -> None:
    proc = spawn(STATOR_SHUTDOWN_TIMEOUT="2s", STATOR_SHUTDOWN_DELAY="0", STATOR_HTTP_SLOW="30s")
    port = port_of(proc)
    with connect(port) as sock:
        sock.sendall(b"GET /sleep?seconds=30 HTTP/1.1\r\nHost: x\r\nX-Request-ID: cut-me-1\r\n\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        reply = read_reply(sock, timeout=10)
    assert 1.5 < time.monotonic() - started < 5
    assert reply.status == 503 and reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"] == "cut-me-1"
    assert reply.json() == {"error": "the service is shutting down", "request_id": "cut-me-1"}
    assert proc.wait(15) == 0
    assert proc.wait_for("request", request_id="cut-me-1")["status"] == 503
    assert proc.wait_for("requests cut at the shutdown deadline")["requests"] == 1
    messages = proc.messages()
    assert not [m for m in messages if m.startswith("Exception in ASGI application") or m == "unhandled exception"]
    assert messages.index("requests cut at the shutdown deadline") < messages.index("stopped")


def test_lame_duck_keeps_serving_with_connection_close(spawn: ServiceProcess) -> None:
    proc = spawn(STATOR_SHUTDOWN_TIMEOUT="6s", STATOR_SHUTDOWN_DELAY="1500ms")
    port = port_of(proc)
    with connect(port) as keep_alive:
        keep_alive.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_reply(keep_alive)
        assert first.status == 200 and "connection" not in first.headers
        proc.signal(signal.SIGTERM)
        proc.wait_for("lame duck: still serving, responses say Connection: close")
        assert get(port, "/-/ready")[0] == 503  # load balancers and the registry are told first
        # ... but a client still holding the address is served: on its keep-alive connection, told to close it,
        keep_alive.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        second = read_reply(keep_alive)
        assert second.status == 200 and second.headers["connection"] == "close"
    # ... and on a new connection.
    status, headers, _ = get(port, "/hello")
    assert status == 200 and headers["connection"] == "close"
    assert proc.wait(15) == 0
    messages = proc.messages()
    assert messages.index("shutting down") < messages.index("lame duck: still serving, responses say Connection: close")
    assert messages.index("lame duck: still serving, responses say Connection: close") < messages.index(
        "shutting down http service"
    )


def test_sigterm_under_keep_alive_load_loses_no_request(spawn: ServiceProcess) -> None:
    """wrk hammers /hello over 50 keep-alive connections; SIGTERM lands mid-load with a 3 s lame duck, and the load
    stops 1.5 s into it — as a client does once the registry (or DNS, or the endpoints list) stopped naming the
    instance, which is what the lame duck waits for.

    "Lost" = a request written on a connection the server had accepted that got no complete response: wrk counts
    it as a read error (EOF or reset with a request outstanding), a write error (reset while sending) or a timeout;
    a 5xx answer would be a non-2xx. Connect errors would be connections refused. All must be 0. (Without the lame
    duck the listener closes ~0.1 s after the signal and idle keep-alive connections are closed under requests
    being written to them: 49 of 50 connections lost a request.)"""
    wrk = require_tool("wrk")
    proc = spawn(STATOR_SHUTDOWN_TIMEOUT="8s", STATOR_SHUTDOWN_DELAY="3s", STATOR_HTTP_ACCESS_LOG="false")
    port = port_of(proc)
    script = str(HERE / "count_close.lua")
    cmd = [wrk, "-t1", "-c50", "-d3s", "--timeout", "4s", "-s", script, f"http://127.0.0.1:{port}/hello"]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.signal(signal.SIGTERM)
        out, _ = load.communicate(timeout=20)
        assert time.monotonic() - signalled < 3.0, "the load must end within the lame duck"
        assert proc.wait(15) == 0
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert errors is None, out  # wrk prints the line only when one of them is not 0
    assert re.search(r"Non-2xx or 3xx responses", out) is None, out
    counts = re.search(r"STATOR responses=(\d+) closes=(\d+)", out)
    assert counts is not None, out
    responses, closes = int(counts.group(1)), int(counts.group(2))
    assert responses > 1000, out
    assert closes > 50, out  # requests served during the lame duck, each telling its client to reconnect
    messages = proc.messages()
    assert "lame duck: still serving, responses say Connection: close" in messages
    assert "requests cut at the shutdown deadline" not in messages
