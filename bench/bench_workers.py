"""Multi-process metrics benchmark: stator worker groups vs prometheus_client multiprocess mode, in one run.

    .venv/bin/python bench/bench_workers.py [--quick] [--no-record]

(a) Cost in a worker of one counter increment and one histogram observation: stator's workers keep metrics in
    memory (a plain prometheus_client metric in the worker's registry; nothing per increment is shared), vs
    prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: every update writes an mmap'd file),
    measured in a subprocess started with that variable set (prometheus_client reads it at import).
(b) A scrape of 10,000 series x 2 workers (per worker: 5,000 labelled counter children and 5,000 labelled gauge
    children merged with the ``sum`` policy): render time, and the longest event-loop stall of the worker that
    answers (a probe sleeping 1 ms in a loop, as in bench_metrics.py).
    - stator: this process is worker 0 (its ServiceMetrics renders the group's merged families off the loop);
      worker 1 is a subprocess answering on its slot socket; both joined one group.
    - prometheus_client: two subprocesses write their 10,000 series in multiprocess mode and exit; a third
      renders with ``MultiProcessCollector`` (``generate_latest``, what every scrape does), and serves it with
      ``make_asgi_app`` (renders on the event loop) and, for fairness, from a thread.

Results go to bench/RESULTS.md under "## Workers".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SERIES_HALF = 5_000
GOAL_STALL_MS = 10.0


def populate(registry: Any, mp: bool = False) -> None:
    from prometheus_client import Counter, Gauge

    counter = Counter("bench_requests", "Requests.", ["route"], registry=registry)
    gauge_kwargs: dict[str, Any] = {"multiprocess_mode": "sum"} if mp else {}
    gauge = Gauge("bench_level", "Levels.", ["route"], registry=registry, **gauge_kwargs)
    for i in range(SERIES_HALF):
        counter.labels(f"/r{i}").inc(i)
        gauge.labels(f"/r{i}").set(i)


def per_op(number: int) -> dict[str, float]:
    """ns per Counter.inc() and Histogram.observe() in this process (whatever value class prometheus_client
    picked at import)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    counter = Counter("op_total", "x", ["a"], registry=registry).labels("x")
    hist = Histogram("op_seconds", "x", ["a"], registry=registry).labels("x")
    inc = min(timeit.repeat(counter.inc, number=number, repeat=5)) / number * 1e9
    obs = min(timeit.repeat(lambda: hist.observe(0.3), number=number, repeat=5)) / number * 1e9
    return {"inc_ns": inc, "observe_ns": obs}


# -- subprocess roles ------------------------------------------------------------------------------------


def role_mp_ops(number: int) -> None:
    print(orjson.dumps(per_op(number)).decode())


def role_mp_write() -> None:
    from prometheus_client import CollectorRegistry

    populate(CollectorRegistry(), mp=True)


def role_mp_scrape(scrapes: int) -> None:
    from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from bench_metrics import stalls  # type: ignore[import-not-found]

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    renders = []
    for _ in range(scrapes):
        start = time.perf_counter()
        body = generate_latest(registry)
        renders.append((time.perf_counter() - start) * 1000)
    app = make_asgi_app(registry)

    async def threaded(scope: Any, receive: Any, send: Any) -> None:
        body = await asyncio.to_thread(generate_latest, registry)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    inline = asyncio.run(stalls(app, scrapes))
    thread = asyncio.run(stalls(threaded, scrapes))
    samples = body.count(b"\n") - body.count(b"# ")
    print(orjson.dumps({"render_ms": renders, "inline": inline, "thread": thread, "samples": samples}).decode())


def role_stator_worker(base: str, master_pid: int, master_start: int) -> None:
    from prometheus_client import CollectorRegistry

    from stator.logs import Logger
    from stator.logs.sinks import MemorySink
    from stator.workers import GroupIdentity, Policies, WorkerGroup

    registry = CollectorRegistry()
    populate(registry)
    group = WorkerGroup.join(
        mode="parent",
        identity=GroupIdentity(master_pid, master_start, "bench", "bench"),
        collect=registry.collect,
        logger=Logger(app_id="b", run_id="b", sink=MemorySink()),
        policies=Policies({"bench_level": "sum"}),
        directory=base,
        timeout=5.0,
    )
    assert group is not None
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    group.close()


# -- the parent ------------------------------------------------------------------------------------------


def run_role(args: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return out.stdout


def stator_side(scrapes: int) -> dict[str, Any]:
    from bench_metrics import stalls
    from stator.config import Settings
    from stator.lifecycle.loopmonitor import LoopMonitor
    from stator.logs import Logger
    from stator.logs.sinks import MemorySink
    from stator.metrics import ServiceMetrics
    from stator.workers import GroupIdentity, Policies, WorkerGroup
    from stator.workers.identity import start_time

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "g"
        base.mkdir(mode=0o700)
        me = os.getpid()
        started = start_time(me)
        assert started is not None
        worker = subprocess.Popen(
            [sys.executable, __file__, "--role", "stator-worker", str(base), str(me), str(started)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None and worker.stdin is not None
        assert worker.stdout.readline().strip() == "ready"
        logger = Logger(app_id="b", run_id="b", sink=MemorySink())
        metrics = ServiceMetrics(Settings(), logger, app_id="b", run_id="b", version="0", loop_monitor=LoopMonitor(0.1))
        populate(metrics.registry)
        group = WorkerGroup.join(
            mode="parent",
            identity=GroupIdentity(me, started, "bench", "bench"),
            collect=metrics.collect_local,
            logger=logger,
            policies=Policies({"bench_level": "sum"}),
            directory=str(base),
            timeout=5.0,
        )
        assert group is not None
        try:
            metrics.use_merged_source(group.merged_families)
            metrics.render_sync("text")  # warm up (encoder self check)
            renders = []
            for _ in range(scrapes):
                start = time.perf_counter()
                body = metrics.render_sync("text")
                renders.append((time.perf_counter() - start) * 1000)
            text = body.decode()
            assert 'bench_requests_total{route="/r4999"} 9998.0' in text, "merged counter wrong"
            assert 'bench_level{route="/r4999"} 9998.0' in text, "merged gauge wrong"
            samples = body.count(b"\n") - body.count(b"# ")
            loop = asyncio.run(stalls(metrics.endpoint(), scrapes))
        finally:
            group.close()
            worker.stdin.close()
            worker.wait(30)
    return {"render_ms": renders, "loop": loop, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-record", dest="no_write", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "mp-ops":
            role_mp_ops(int(rest[0]))
        elif role == "mp-write":
            role_mp_write()
        elif role == "mp-scrape":
            role_mp_scrape(int(rest[0]))
        elif role == "stator-worker":
            role_stator_worker(rest[0], int(rest[1]), int(rest[2]))
        return 0

    number = 20_000 if args.quick else 200_000
    scrapes = 5 if args.quick else 20
    ops = per_op(number)
    with tempfile.TemporaryDirectory() as mpdir:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mpdir}
        mp_ops = orjson.loads(run_role(["--role", "mp-ops", str(number)], env))
    with tempfile.TemporaryDirectory() as mpdir:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mpdir}
        run_role(["--role", "mp-write"], env)
        run_role(["--role", "mp-write"], env)
        mp = orjson.loads(run_role(["--role", "mp-scrape", str(scrapes)], env))
    st = stator_side(scrapes)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    st_render, mp_render = med(st["render_ms"]), med(mp["render_ms"])
    lines = [
        "Per update in a worker (ns, best of 5):",
        "",
        "| | stator (in memory) | prometheus_client multiprocess | ratio |",
        "|---|---|---|---|",
        f"| Counter.inc() | {ops['inc_ns']:.0f} | {mp_ops['inc_ns']:.0f} | {mp_ops['inc_ns'] / ops['inc_ns']:.1f}x |",
        f"| Histogram.observe() | {ops['observe_ns']:.0f} | {mp_ops['observe_ns']:.0f} |"
        f" {mp_ops['observe_ns'] / ops['observe_ns']:.1f}x |",
        "",
        f"One scrape of 10,000 series x 2 workers ({scrapes} scrapes; stator exposes {st['samples']} samples"
        f" incl. `_created`, prometheus_client {mp['samples']}):",
        "",
        "| | stator group (merged, off-loop) | prometheus_client multiprocess | ratio |",
        "|---|---|---|---|",
        f"| render, median ms | {st_render:.1f} | {mp_render:.1f} | {mp_render / st_render:.1f}x faster |",
        f"| longest loop stall, ms | {st['loop']['max']:.1f} | {mp['inline']['max']:.1f} (make_asgi_app);"
        f" {mp['thread']['max']:.1f} (in a thread) | goal <= {GOAL_STALL_MS:.0f} ms:"
        f" {'met' if st['loop']['max'] <= GOAL_STALL_MS else 'NOT met'} |",
        f"| loop stall p99, ms | {st['loop']['p99']:.1f} | {mp['inline']['p99']:.1f}; {mp['thread']['p99']:.1f} | |",
        "",
        "stator's render includes asking the other worker for a fresh snapshot over its unix socket, writing"
        " both snapshot files, merging and encoding; prometheus_client's reads every mmap file.",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        from _results import record_section  # type: ignore[import-not-found]

        record_section("Workers", report, ["prometheus-client", "uvloop"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
