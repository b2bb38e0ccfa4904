"""The pprof endpoints over real loopback HTTP (uvicorn on asyncio and on uvloop), read by ``go tool pprof``."""

from __future__ import annotations

import functools
import re
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from stator.profiling.pprof import Profile, decode
from tests.profiling.app import Server, ids_for
from tests.profiling.conftest import Pprof


def _background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` in a thread; the returned callable joins it and returns (or raises) its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> Any:
        thread.join(60)
        if "error" in box:
            raise box["error"]
        return box["value"]

    return join


_CLIENT = httpx.Client(timeout=60)  # one client: building one per call costs CPU that would show in the profiles


def _get(url: str, **kw: Any) -> httpx.Response:
    return _CLIENT.get(url, **kw)


def _leaf(profile: Profile, function: str) -> tuple[int, list[dict[str, str | int]]]:
    """CPU samples whose innermost frame is ``function``, and the label sets they carry."""
    cpu = [t for t, _ in profile.sample_types].index("cpu-samples")
    hits = [s for s in profile.samples if s.stack and s.stack[0].name.endswith(function) and s.values[cpu]]
    return sum(s.values[cpu] for s in hits), [s.labels for s in hits]


def test_concurrent_cpu_bound_requests_each_carry_their_own_span(server: Server, pprof: Pprof) -> None:
    profile = _background(lambda: _get(f"{server.pprof}/profile?seconds=2"))
    time.sleep(0.2)

    def burn(name: str) -> httpx.Response:
        return _get(f"{server.base}/burn/{name}?seconds=1.3", headers={"X-Request-ID": f"burn-{name}"})

    burns = {name: _background(functools.partial(burn, name)) for name in ("alpha", "beta")}
    for join in burns.values():
        assert join().status_code == 200
    response = profile()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    path = pprof.save(response.content)

    top = pprof("-top", "-nodecount=8", path)
    entries = [line for line in top.splitlines() if re.match(r"\s*[\d.]+m?s ", line)]
    assert any("burn_alpha" in e for e in entries[:8]), top
    assert any("burn_beta" in e for e in entries[:8]), top
    tags = pprof("-tags", path)
    for name in ("alpha", "beta"):
        assert ids_for(f"burn-{name}")[1] in tags
    assert "/burn/{name}" in tags

    p = decode(response.content)
    assert [t for t, _ in p.sample_types] == ["cpu-samples", "cpu", "wall-samples", "wall"]
    assert 0.5e9 < p.duration_nanos < 5e9 and 0 < p.period < 1e9  # the achieved period, not the requested one
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        trace_id, span_id = ids_for(f"burn-{name}")
        count, labels = _leaf(p, f"burn_{name}")
        assert count >= 5, f"too few samples in burn_{name}: {labels}"
        for got in labels:
            assert got["span_id"] == span_id and got["trace_id"] == trace_id, got
            assert got["route"] == "/burn/{name}" and got["request_id"] == f"burn-{name}"
            assert got["method"] == "GET" and str(got["task"]).startswith("Task-")
        # and pprof's own tag filter agrees: focusing on this span shows this burner, never the other
        focused = pprof("-top", f"-tagfocus=span_id={span_id}", path)
        assert f"burn_{name}" in focused and f"burn_{other}" not in focused
    idle = [s.labels for s in p.samples if "span_id" not in s.labels]
    assert idle and all("thread" in labels for labels in idle)


def test_go_tool_pprof_fetches_the_profile_over_http(server: Server, pprof: Pprof) -> None:
    out = pprof("-top", "-seconds=1", f"{server.pprof}/profile")
    assert "Type: cpu" in out and "achieved" in out


def test_tasks_dump_shows_a_parked_request(server: Server, pprof: Pprof) -> None:
    parked = _background(lambda: _get(f"{server.base}/sleep?seconds=1.5", headers={"X-Request-ID": "parked-1"}))
    time.sleep(0.4)
    text = _get(f"{server.pprof}/tasks?debug=2").text
    blocks = [b for b in text.split("\n\n") if "parked-1" in b]
    assert len(blocks) == 1, text
    block = blocks[0]
    assert "request GET" in block and "route=/sleep" in block and "request_id=parked-1" in block
    assert f"span_id={ids_for('parked-1')[1]}" in block
    assert "asyncio.tasks.sleep()" in block and "tests.profiling.app.parked()" in block
    assert block.index("asyncio.tasks.sleep()") < block.index("tests.profiling.app.parked()")  # leaf first
    assert re.search(r"\[pending, [\d.]+s\]", block)
    aggregated = _get(f"{server.pprof}/tasks?debug=1").text
    assert aggregated.startswith("tasks profile: total ") and "tests.profiling.app.parked" in aggregated
    dump = _get(f"{server.pprof}/tasks")
    path = pprof.save(dump.content, "tasks")
    assert "parked-1" in pprof("-tags", path)
    assert "tests.profiling.app.parked" in pprof("-top", path)
    assert "parked-1" in _get(f"{server.pprof}/goroutine?debug=2").text  # the Go name works too
    assert parked().status_code == 200


def test_threads_dump(server: Server, pprof: Pprof) -> None:
    text = _get(f"{server.pprof}/threads?debug=2").text
    assert f"'server-{server.loop_kind}'" in text and "native_id=" in text
    assert _get(f"{server.pprof}/threads?debug=1").text.startswith("threads profile: total ")
    path = pprof.save(_get(f"{server.pprof}/threads").content, "threads")
    assert f"server-{server.loop_kind}" in pprof("-tags", path)


def test_heap_shows_the_allocation_site_and_stops_tracemalloc(server: Server, pprof: Pprof) -> None:
    heap = _background(lambda: _get(f"{server.pprof}/heap?seconds=1"))
    time.sleep(0.3)
    assert _get(f"{server.base}/alloc?count=300").status_code == 200
    response = heap()
    assert response.status_code == 200
    assert not tracemalloc.is_tracing()  # started for the window only
    path = pprof.save(response.content, "heap")
    top = pprof("-top", "-sample_index=inuse_space", path)
    assert "allocate_marker_blocks" in top
    p = decode(response.content)
    space = [t for t, _ in p.sample_types].index("inuse_space")
    marker = sum(s.values[space] for s in p.samples if any("allocate_marker_blocks" in f.name for f in s.stack))
    assert marker >= 300 * 4096


def test_allocs_and_cmdline_and_index(server: Server, pprof: Pprof) -> None:
    allocs = _background(lambda: _get(f"{server.pprof}/allocs?seconds=0.6"))
    time.sleep(0.2)
    _get(f"{server.base}/alloc?count=100")
    response = allocs()
    assert response.status_code == 200
    path = pprof.save(response.content, "allocs")
    assert "allocate_marker_blocks" in pprof("-top", "-sample_index=alloc_space", path)
    cmdline = _get(f"{server.pprof}/cmdline")
    assert cmdline.status_code == 200 and b"python" in cmdline.content
    index = _get(f"{server.pprof}/")
    assert index.status_code == 200 and "profile?seconds=30" in index.text and "tasks?debug=2" in index.text


def test_two_concurrent_profiles_share_one_sampler(server: Server) -> None:
    sampler = server.profiler.sampler
    started = sampler.started_threads
    joins = [_background(lambda: _get(f"{server.pprof}/profile?seconds=1")) for _ in range(2)]
    time.sleep(0.5)
    assert sum(t.name == "stator-profiler" for t in threading.enumerate()) == 1
    for join in joins:
        response = join()
        assert response.status_code == 200 and decode(response.content).samples
    assert sampler.started_threads == started + 1
    for _ in range(50):  # the last subscriber gone, the sampler thread ends
        if not sampler.running:
            break
        time.sleep(0.02)
    assert not sampler.running


def test_profiler_metrics_and_monitor(server: Server) -> None:
    _get(f"{server.pprof}/profile?seconds=0.3")
    monitor = orjson.loads(_get(f"{server.base}/-/monitor").content)["profiling"]
    assert monitor["sampler"]["ticks"] > 0 and monitor["sampler"]["cpu_seconds"] >= 0
    assert monitor["served"]["profile"] >= 1
    metrics = _get(f"{server.base}/metrics").text
    assert re.search(r"^stator_profiler_samples_total [1-9]", metrics, re.M), metrics
    assert "stator_profiler_cpu_seconds_total" in metrics and "stator_profiler_rate_hz" in metrics
