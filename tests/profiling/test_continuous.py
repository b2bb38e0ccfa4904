"""Continuous profiling: back-to-back windows in a bounded ring, time-range and span queries, Pyroscope push."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from stator.profiling.pprof import decode
from tests.profiling.app import Server, ids_for, serve
from tests.profiling.conftest import Pprof
from tests.profiling.receiver import Receiver, start


@pytest.fixture(scope="module")
def pushed() -> Iterator[tuple[Server, Receiver]]:
    receiver, http = start()
    receiver.fail_next = 1  # the first push fails: it must be kept and delivered later
    port = http.server_address[1]
    env = {
        "STATOR_PROFILE_CONTINUOUS": "true",
        "STATOR_PROFILE_WINDOW": "1s",
        "STATOR_PROFILE_RETENTION": "3s",
        "STATOR_PROFILE_PUSH_URL": f"http://pusher:s3cr3t-token@127.0.0.1:{port}/",
    }
    try:
        with serve("uvloop", env) as server:
            yield server, receiver
    finally:
        http.shutdown()
        http.server_close()


def test_windows_ring_and_time_range_queries(pushed: tuple[Server, Receiver], pprof: Pprof) -> None:
    server, _ = pushed
    began = time.time()
    response = httpx.get(f"{server.base}/burn/alpha?seconds=1.2", headers={"X-Request-ID": "cont-alpha"}, timeout=30)
    assert response.status_code == 200
    ended = time.time()
    span_id = ids_for("cont-alpha")[1]

    # the span's samples are there at once (the open window is read too), and only that span's
    by_span = httpx.get(f"{server.pprof}/profile?span_id={span_id}", timeout=30)
    assert by_span.status_code == 200, by_span.text
    p = decode(by_span.content)
    assert p.samples and all(s.labels["span_id"] == span_id for s in p.samples)
    assert any(s.stack[0].name.endswith("burn_alpha") for s in p.samples)
    path = pprof.save(by_span.content)
    assert "burn_alpha" in pprof("-top", path)
    assert "cont-alpha" in pprof("-tags", path)

    by_range = httpx.get(f"{server.pprof}/profile?start={began - 0.5:.3f}&end={ended + 0.5:.3f}", timeout=30)
    assert by_range.status_code == 200
    merged = decode(by_range.content)
    assert merged.duration_nanos > 1.2e9  # several windows merged
    assert {str(s.labels.get("span_id")) for s in merged.samples} >= {span_id}
    assert "burn_alpha" in pprof("-top", pprof.save(by_range.content))
    # the slow request's access line links to the CPU samples of its window: one step from log to profile
    slow = [orjson.loads(line) for line in server.sink.lines]
    slow = [line for line in slow if line.get("msg") == "slow request" and line.get("request_id") == "cont-alpha"]
    assert len(slow) == 1 and slow[0]["profile"].startswith("/-/debug/pprof/profile?start="), slow
    linked = httpx.get(f"{server.base}{slow[0]['profile']}", timeout=30)
    assert linked.status_code == 200 and any(s.labels.get("span_id") == span_id for s in decode(linked.content).samples)
    none = httpx.get(f"{server.pprof}/profile?span_id=0000000000000000", timeout=30)
    assert none.status_code == 404 and "error" in none.json()

    time.sleep(4.2)  # past the retention: the ring holds at most retention/window windows
    monitor = orjson.loads(httpx.get(f"{server.base}/-/monitor", timeout=10).content)["profiling"]
    assert monitor["continuous"]["windows"] == monitor["continuous"]["capacity"] == 3
    assert server.profiler.ring.evicted >= 1
    old = httpx.get(f"{server.pprof}/profile?start={began - 0.5:.3f}&end={ended:.3f}", timeout=30)
    assert old.status_code == 404  # those windows have left the ring


def test_windows_are_pushed_to_pyroscope(pushed: tuple[Server, Receiver], pprof: Pprof) -> None:
    server, receiver = pushed
    received = receiver.wait(3)
    assert len(received) >= 3 and receiver.failures == 1
    first = received[0]
    assert first.path == "/ingest" and first.params["format"] == "pprof" and first.params["spyName"] == "stator"
    assert first.params["name"].startswith("stator{") and "service_name=stator" in first.params["name"]
    assert int(first.params["until"]) - int(first.params["from"]) in (1, 2)
    assert first.headers["authorization"] == "Basic cHVzaGVyOnMzY3IzdC10b2tlbg=="  # pusher:s3cr3t-token
    assert set(json.loads(first.parts["sample_type_config"])) >= {"cpu", "wall"}
    assert [t for t, _ in first.profile.sample_types] == ["cpu-samples", "cpu", "wall-samples", "wall"]
    starts = [r.profile.time_nanos for r in received]
    assert starts == sorted(starts)  # the failed window was retried first, in order
    assert "Type: cpu" in pprof("-top", pprof.save(first.parts["profile"]))

    monitor = httpx.get(f"{server.base}/-/monitor", timeout=10).text
    config = httpx.get(f"{server.base}/-/config", timeout=10).text
    assert "s3cr3t" not in monitor and "s3cr3t" not in config
    push = orjson.loads(monitor)["profiling"]["push"]
    assert push["url"].startswith("http://pusher:--redacted--@127.0.0.1:") and push["failed"] == 1
    lines = [orjson.loads(line) for line in server.sink.lines]
    assert [line["msg"] for line in lines if line["msg"].startswith("profile push")] == [
        "profile push failing",
        "profile push recovered",
    ]
    assert not any(b"s3cr3t" in line for line in server.sink.lines)
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert 'stator_profiler_pushes_total{result="error"} 1.0' in metrics
