"""The receiver over real HTTP: a Service built in the test, its routes from setup_remote_write, uvicorn on
loopback. Valid writes are stored and answered in Prometheus's shape; invalid ones get the right 4xx and store
nothing; the limits refuse what they must and say so."""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest

from stator.remotewrite.schema import STALE_NAN_BITS
from tests.remotewrite.conftest import HEADERS, Served, serve_service, snappy, write_request

NOW_MS = int(time.time() * 1000)
ALL = '{__name__=~".+"}'
Series = tuple[list[tuple[str, str]], list[tuple[float, int]]]


def up(instance: str, value: float, ts: int = NOW_MS, job: str = "node") -> Series:
    return [("__name__", "up"), ("instance", instance), ("job", job)], [(value, ts)]


@pytest.fixture(scope="module")
def rw() -> Iterator[Served]:
    with serve_service({"STATOR_REMOTE_WRITE": "true", "STATOR_REMOTE_WRITE_MAX_BODY": "1048576"}) as served:
        yield served


def test_write_then_query_and_series(rw: Served) -> None:
    temp: Series = ([("__name__", "temp_c"), ("room", "x")], [(-3.5, NOW_MS)])
    resp = rw.write(snappy(write_request([up("a:1", 1, job="q"), up("b:1", 0, job="q"), temp])))
    assert resp.status_code == 204, resp.text
    data = rw.query('up{job="q"}').json()
    assert data["status"] == "success" and data["data"]["resultType"] == "vector"
    got = {r["metric"]["instance"]: r["value"][1] for r in data["data"]["result"]}
    assert got == {"a:1": "1", "b:1": "0"}
    assert rw.query('up{instance=~"a.*"}').json()["data"]["result"][0]["metric"] == {
        "__name__": "up",
        "instance": "a:1",
        "job": "q",
    }
    others = rw.query('up{job="q", instance!="a:1"}').json()["data"]["result"]
    assert [r["metric"]["instance"] for r in others] == ["b:1"]
    assert rw.query('{room="x"}').json()["data"]["result"][0]["value"][1] == "-3.5"
    at = rw.query('up{job="q"}', time="1700000000.5").json()["data"]["result"]
    assert at == []  # evaluated in the past, before the samples: nothing within the lookback
    series = rw.series('up{job="q"}', '{room="x"}').json()
    assert series["status"] == "success"
    assert sorted(s.get("instance", s.get("room")) for s in series["data"]) == ["a:1", "b:1", "x"]


def test_newer_sample_wins_older_is_ignored_and_stale_hides(rw: Served) -> None:
    rw.write(snappy(write_request([up("c:1", 5, NOW_MS)])))
    rw.write(snappy(write_request([up("c:1", 4, NOW_MS - 1000)])))  # out of order: kept the newer
    assert rw.query('up{instance="c:1"}').json()["data"]["result"][0]["value"][1] == "5"
    rw.write(snappy(write_request([up("c:1", 6, NOW_MS + 10)])))
    assert rw.query('up{instance="c:1"}').json()["data"]["result"][0]["value"][1] == "6"
    stale = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
    assert math.isnan(stale)
    rw.write(snappy(write_request([up("c:1", stale, NOW_MS + 20)])))
    assert rw.query('up{instance="c:1"}').json()["data"]["result"] == []
    assert rw.series('up{instance="c:1"}').json()["data"]  # the series is still known


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("rate(up[5m])", "only instant-vector selectors"),
        ('{job=~".*"}', "non-empty matcher"),
        ('up{job="x"', "expected"),
        ('up{job=~"("}', "invalid regular expression"),
        ("", "no query"),
    ],
)
def test_query_errors_are_bad_data(rw: Served, query: str, error: str) -> None:
    resp = rw.query(query)
    assert resp.status_code == 400
    body = resp.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data" and error in body["error"]


def test_series_needs_match(rw: Served) -> None:
    resp = httpx.get(rw.url + "/api/v1/series", timeout=5)
    assert resp.status_code == 400 and resp.json()["error"] == "no match[] parameter provided"
    assert rw.write(snappy(write_request([up("posted:1", 1)]))).status_code == 204
    resp = httpx.post(rw.url + "/api/v1/series", data={"match[]": 'up{instance="posted:1"}'}, timeout=5)
    assert resp.status_code == 200 and resp.json()["data"]


def _bad(labels: list[tuple[str, str]]) -> bytes:
    return snappy(write_request([up("ok:1", 1), (labels, [(1.0, NOW_MS)])]))


INVALID = {
    "bad snappy": (b"\xff\x00not snappy at all", HEADERS, 400, "bad_snappy"),
    "framed snappy": (b"\xff\x06\x00\x00sNaPpY" + b"\x00" * 8, HEADERS, 400, "bad_snappy"),
    "bad protobuf": (snappy(b"\x0a\xff\xff\xff\x0f garbage"), HEADERS, 400, "bad_protobuf"),
    "unsorted labels": (_bad([("__name__", "m"), ("z", "1"), ("a", "2")]), HEADERS, 400, "invalid_labels"),
    "duplicate labels": (_bad([("__name__", "m"), ("a", "1"), ("a", "2")]), HEADERS, 400, "invalid_labels"),
    "empty label name": (_bad([("", "x"), ("__name__", "m")]), HEADERS, 400, "invalid_labels"),
    "empty label value": (_bad([("__name__", "m"), ("a", "")]), HEADERS, 400, "invalid_labels"),
    "invalid label name": (_bad([("__name__", "m"), ("a-b", "1")]), HEADERS, 400, "invalid_labels"),
    "invalid metric name": (_bad([("__name__", "1m")]), HEADERS, 400, "invalid_labels"),
    "no labels": (_bad([]), HEADERS, 400, "invalid_labels"),
    "missing encoding": (
        snappy(write_request([up("ok:1", 1)])),
        {k: v for k, v in HEADERS.items() if k != "Content-Encoding"},
        415,
        "unsupported_media_type",
    ),
    "gzip encoding": (b"\x1f\x8b", {**HEADERS, "Content-Encoding": "gzip"}, 415, "unsupported_media_type"),
    "missing content type": (
        snappy(write_request([up("ok:1", 1)])),
        {k: v for k, v in HEADERS.items() if k != "Content-Type"},
        415,
        "unsupported_media_type",
    ),
    "remote write 2.0": (
        snappy(write_request([up("ok:1", 1)])),
        {**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
        415,
        "unsupported_media_type",
    ),
    "missing version": (
        snappy(write_request([up("ok:1", 1)])),
        {k: v for k, v in HEADERS.items() if k != "X-Prometheus-Remote-Write-Version"},
        400,
        "bad_version",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_payloads_get_4xx_and_store_nothing(case: str) -> None:
    body, headers, status, reason = INVALID[case]
    with serve_service({"STATOR_REMOTE_WRITE": "true"}) as rw:
        resp = rw.write(body, headers)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/json"
        assert resp.json()["reason"] == reason and resp.json()["error"]
        assert rw.series(ALL).json()["data"] == []  # the valid series beside the invalid one was not stored either
        metrics = httpx.get(rw.url + "/metrics", timeout=5).text
        assert f'stator_remote_write_rejected_total{{reason="{reason}"}} 1.0' in metrics
        warnings = [line for line in rw.logs() if line["msg"] == "remote write rejected"]
        assert [w["reason"] for w in warnings] == [reason]


def _raw_request(port: int, head: bytes, body_chunks: Iterator[bytes] | None = None) -> tuple[bytes, int]:
    """Send a request by hand; returns (response head, body bytes the server let us send before answering)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        response = b""
        deadline = time.monotonic() + 15
        for chunk in body_chunks or iter(()):
            with contextlib.suppress(BlockingIOError):
                response += sock.recv(65536)
            if response or time.monotonic() > deadline:
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
        sock.setblocking(True)
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response, sent


def test_huge_declared_body_is_refused_without_reading_it(rw: Served) -> None:
    port = int(rw.url.rsplit(":", 1)[1])
    head = (
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\n"
        b"Content-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )
    response, _ = _raw_request(port, head)  # not one byte of the 100 MB is sent
    assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_huge_streamed_body_is_cut_off_at_the_limit(rw: Served) -> None:
    port = int(rw.url.rsplit(":", 1)[1])
    head = (
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\n"
        b"Content-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = b"10000\r\n" + piece + b"\r\n"
    response, sent = _raw_request(port, head, iter([chunk] * 1600))  # 100 MB if the server kept reading
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 20 * 1024 * 1024


def test_series_limit_refuses_new_series_keeps_updating_known_ones() -> None:
    with serve_service({"STATOR_REMOTE_WRITE": "true", "STATOR_REMOTE_WRITE_MAX_SERIES": "3"}) as rw:
        assert rw.write(snappy(write_request([up(f"i:{n}", n) for n in range(2)]))).status_code == 204
        resp = rw.write(snappy(write_request([up(f"i:{n}", 10 + n, NOW_MS + 1) for n in range(5)])))
        assert resp.status_code == 400 and resp.json()["reason"] == "series_limit"
        assert "2 new series refused" in resp.json()["error"]
        result = {r["metric"]["instance"]: r["value"][1] for r in rw.query("up").json()["data"]["result"]}
        assert result == {"i:0": "10", "i:1": "11", "i:2": "12"}
        assert rw.write(snappy(write_request([up("i:0", 99, NOW_MS + 2)]))).status_code == 204
        metrics = httpx.get(rw.url + "/metrics", timeout=5).text
        assert 'stator_remote_write_samples_ignored_total{reason="series_limit"} 2.0' in metrics
        assert "stator_remote_write_series 3.0" in metrics
        monitor = httpx.get(rw.url + "/monitor", timeout=5).json()["remote_write"]
        assert monitor["series"] == 3 and monitor["refused_series_total"] == 2


def test_over_the_ingest_rate_gets_429_with_retry_after() -> None:
    # 0.2 samples/s: the bucket cannot refill a sample between the two writes however slow the machine is.
    env = {"STATOR_REMOTE_WRITE": "true", "STATOR_REMOTE_WRITE_RATE": "0.2", "STATOR_REMOTE_WRITE_BURST": "50"}
    with serve_service(env) as rw:
        assert rw.write(snappy(write_request([up(f"i:{n}", n) for n in range(50)]))).status_code == 204
        resp = rw.write(snappy(write_request([up("late:1", 1)])))
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.json()["reason"] == "rate_limited"
        assert rw.series('up{instance="late:1"}').json()["data"] == []


def test_rejections_are_logged_once_per_interval_and_writes_at_debug() -> None:
    env = {"STATOR_REMOTE_WRITE": "true", "STATOR_LOG_LEVEL": "debug", "STATOR_REMOTE_WRITE_LOG_INTERVAL": "1m"}
    with serve_service(env) as rw:
        for _ in range(5):
            assert rw.write(b"junk").status_code == 400
        rw.write(snappy(write_request([up("a:1", 1)])))
        logs = rw.logs()
        rejected = [line for line in logs if line["msg"] == "remote write rejected"]
        assert len(rejected) == 1 and rejected[0]["level"] == "warning" and rejected[0]["reason"] == "bad_snappy"
        writes = [line for line in logs if line["msg"] == "remote write"]
        assert writes and writes[0]["level"] == "debug" and writes[0]["series"] == 1 and writes[0]["samples"] == 1


def test_receiver_off_by_default() -> None:
    with serve_service({}, remote_write=True) as rw:
        assert rw.write(snappy(write_request([up("a:1", 1)]))).status_code == 404
