"""Multi-process metrics benchmark: stator worker groups vs prometheus_client multiprocess mode, in one run.

    .venv/bin/python bench/bench_workers.py [--quick] [--no-record]

(a) Cost in a worker of one counter increment and one histogram observation: stator's workers keep metrics in
    memory (a plain prometheus_client metric in the worker's registry; nothing per increment is shared), vs
    prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: every update writes an mmap'd file),
    measured in a subprocess started with that variable set (prometheus_client reads it at import).
(b) A scrape of 10,000 series x 2 workers (per worker: 5,000 labelled counter children and 5,000 labelled gauge
    children merged with the ``sum`` policy): CPU time of a render (process CPU, ``time.process_time`` and
    ``/proc/<pid>/stat``: the machine is shared, wall time is not comparable), and the longest event-loop stall
    (wall time by nature: a probe sleeping 1 ms in a loop, as in bench_metrics.py; 3 rounds, min and median of
    each round's longest stall).
    - stator: this process is worker 0 (its ServiceMetrics renders the group's merged families off the loop);
      worker 1 is a subprocess answering on its slot socket, with an event loop of its own that a probe watches
      too (answering a snapshot must not stall it either); both joined one group. The CPU of a render is both
      workers' CPU.
    - prometheus_client: two subprocesses write their 10,000 series in multiprocess mode and exit; a third
      renders with ``MultiProcessCollector`` (``generate_latest``, what every scrape does), and serves it with
      ``make_asgi_app`` (renders on the event loop) and, for fairness, from a thread.
(c) Throughput of ``stator run --workers 2`` vs ``--workers 1`` (examples/starlette_app.py, GET /hello, wrk with
    one thread and 32 keep-alive connections on the same 2 cores): requests/s, and requests per CPU-second of the
    whole group (master and workers).

Results go to bench/RESULTS.md under "## Workers".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import re
import signal
import socket
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
GOAL_RENDER_RATIO = 2.0
PROBE_INTERVAL = 0.001
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def role_mp_scrape(scrapes: int, rounds: int) -> None:
    from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from bench_metrics import stalls  # type: ignore[import-not-found]

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    generate_latest(registry)  # warm up
    cpu = []
    for _ in range(scrapes):
        start = time.process_time()
        body = generate_latest(registry)
        cpu.append((time.process_time() - start) * 1000)
    app = make_asgi_app(registry)

    async def threaded(scope: Any, receive: Any, send: Any) -> None:
        body = await asyncio.to_thread(generate_latest, registry)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    inline = [asyncio.run(stalls(app, scrapes))["max"] for _ in range(rounds)]
    thread = [asyncio.run(stalls(threaded, scrapes))["max"] for _ in range(rounds)]
    samples = body.count(b"\n") - body.count(b"# ")
    print(orjson.dumps({"cpu_ms": cpu, "inline": inline, "thread": thread, "samples": samples}).decode())


def role_stator_worker(base: str, master_pid: int, master_start: int) -> None:
    """Worker 1: joins the group and runs an event loop; between "probe" and "stop" lines on stdin a probe records
    how late its 1 ms sleeps wake (as (start, wake, lateness) on perf_counter, the system-wide monotonic clock the
    parent compares with its scrape windows). On end of input: prints the records as JSON and leaves."""
    import threading

    from stator.config import Settings
    from stator.lifecycle.loopmonitor import LoopMonitor
    from stator.logs import Logger
    from stator.logs.sinks import MemorySink
    from stator.metrics import ServiceMetrics
    from stator.workers import GroupIdentity, Policies, WorkerGroup

    logger = Logger(app_id="b", run_id="b", sink=MemorySink())
    metrics = ServiceMetrics(Settings(), logger, app_id="b", run_id="b", version="0", loop_monitor=LoopMonitor(0.1))
    populate(metrics.registry)
    group = WorkerGroup.join(  # as `stator run` joins a worker: its snapshots are ServiceMetrics.collect_local
        mode="parent",
        identity=GroupIdentity(master_pid, master_start, "bench", "bench"),
        collect=metrics.collect_local,
        logger=logger,
        policies=Policies({"bench_level": "sum"}),
        directory=base,
        timeout=5.0,
    )
    assert group is not None

    async def main() -> list[tuple[float, float, float]]:
        loop = asyncio.get_running_loop()
        probing = asyncio.Event()
        done = asyncio.Event()
        records: list[tuple[float, float, float]] = []

        def read_commands() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(probing.set if line.strip() == "probe" else probing.clear)
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=read_commands, daemon=True).start()
        print("ready", flush=True)
        while not done.is_set():
            if not probing.is_set():
                await asyncio.wait([asyncio.ensure_future(probing.wait()), asyncio.ensure_future(done.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                continue
            began = time.perf_counter()
            await asyncio.sleep(PROBE_INTERVAL)
            woke = time.perf_counter()
            records.append((began, woke, max(0.0, woke - began - PROBE_INTERVAL)))
        return records

    try:
        records = asyncio.run(main())
    finally:
        group.close()
    print(orjson.dumps(records).decode(), flush=True)


# -- the parent ------------------------------------------------------------------------------------------


def run_role(args: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return out.stdout


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, living or ended (/proc/<pid>/stat, clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stator_side(scrapes: int, rounds: int) -> dict[str, Any]:
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
            own = []
            theirs = cpu_seconds(worker.pid)  # clock ticks (10 ms): summed over the scrapes, then averaged
            for _ in range(scrapes):
                mine = time.process_time()
                body = metrics.render_sync("text")
                own.append((time.process_time() - mine) * 1000)
            peer = (cpu_seconds(worker.pid) - theirs) * 1000 / scrapes
            text = body.decode()
            assert 'bench_requests_total{route="/r4999"} 9998.0' in text, "merged counter wrong"
            assert 'bench_level{route="/r4999"} 9998.0' in text, "merged gauge wrong"
            samples = body.count(b"\n") - body.count(b"# ")
            loop, windows = [], []
            for _ in range(rounds):
                worker.stdin.write("probe\n")
                worker.stdin.flush()
                time.sleep(0.05)
                began = time.perf_counter()
                loop.append(asyncio.run(stalls(metrics.endpoint(), scrapes))["max"])
                windows.append((began, time.perf_counter()))
                worker.stdin.write("stop\n")
                worker.stdin.flush()
        finally:
            group.close()
            worker.stdin.close()
            records = orjson.loads(worker.stdout.read() or "[]")
            worker.wait(30)
    # The answering worker's longest stall per round: its probe's sleeps that overlap the round.
    peer_loop = [max((late for b, w, late in records if b <= end and w >= start), default=0.0) * 1000
                 for start, end in windows]  # fmt: skip
    return {"own_ms": own, "peer_ms": peer, "loop": loop, "peer_loop": peer_loop, "samples": samples}


def group_cpu(master: int) -> float:
    """CPU seconds of ``master`` and its children (the workers)."""
    total = cpu_seconds(master)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += cpu_seconds(int(child))
    return total


def throughput(workers: int, duration: int, tmp: Path) -> dict[str, float]:
    """``stator run --workers N`` on examples/starlette_app.py under wrk: requests/s and requests per CPU-second."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATOR_", "OTEL_", "PROMETHEUS_"))}
    env.update(
        PYTHONPATH=f"{ROOT}:{ROOT / 'src'}",
        STATOR_HTTP_HOST="127.0.0.1",
        STATOR_HTTP_PORT=str(port),
        STATOR_HTTP_ACCESS_LOG="false",
        STATOR_SHUTDOWN_DELAY="0",
        STATOR_WORKERS_DIR=str(tmp),
    )
    cmd = [sys.executable, "-m", "stator", "run", "--workers", str(workers), "examples.starlette_app:app"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # until every worker serves (each answers /hello once it runs)
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stator run --workers {workers} did not come up")
            with contextlib.suppress(OSError, ValueError):
                monitor = orjson.loads(_get(port, "/-/monitor"))
                group = monitor.get("worker_group") or {}
                running = sum(1 for w in group.get("workers", ()) if w.get("state") == "running")
                if running == workers or (workers == 1 and not group):
                    break
            time.sleep(0.2)
        subprocess.run(["wrk", "-t1", "-c32", "-d1s", f"{url}/hello"], capture_output=True, check=True)  # warm up
        cpu0 = group_cpu(server.pid)
        out = subprocess.run(
            ["wrk", "-t1", "-c32", f"-d{duration}s", f"{url}/hello"], capture_output=True, text=True, check=True
        ).stdout
        cpu = group_cpu(server.pid) - cpu0
        if "Socket errors" in out or "Non-2xx" in out:
            raise RuntimeError(f"errors under load:\n{out}")
        match = re.search(r"(\d+) requests in ([\d.]+)s", out)
        assert match is not None, out
        requests, seconds = int(match.group(1)), float(match.group(2))
        return {"rps": requests / seconds, "per_cpu_s": requests / cpu if cpu else 0.0, "cpu_s": cpu}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


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
            role_mp_scrape(int(rest[0]), int(rest[1]))
        elif role == "stator-worker":
            role_stator_worker(rest[0], int(rest[1]), int(rest[2]))
        return 0

    number = 20_000 if args.quick else 200_000
    scrapes = 5 if args.quick else 20
    rounds = 3
    duration = 3 if args.quick else 10
    ops = per_op(number)
    with tempfile.TemporaryDirectory() as mpdir:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mpdir}
        mp_ops = orjson.loads(run_role(["--role", "mp-ops", str(number)], env))
    with tempfile.TemporaryDirectory() as mpdir:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mpdir}
        run_role(["--role", "mp-write"], env)
        run_role(["--role", "mp-write"], env)
        mp = orjson.loads(run_role(["--role", "mp-scrape", str(scrapes), str(rounds)], env))
    st = stator_side(scrapes, rounds)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "w"
        base.mkdir(mode=0o700)
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(1 if args.quick else 2):  # alternate, so drift on a shared machine hits both
            for n in (1, 2):
                runs[n].append(throughput(n, duration, base))
    tput = {n: max(r, key=lambda x: x["rps"]) for n, r in runs.items()}

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def mm(values: list[float]) -> str:
        return f"{min(values):.1f} / {med(values):.1f}"

    st_cpu = med(st["own_ms"]) + st["peer_ms"]
    mp_cpu = med(mp["cpu_ms"])
    worst = max(med(st["loop"]), med(st["peer_loop"]))
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
        f" incl. `_created`, prometheus_client {mp['samples']}). Render: CPU time (process CPU), median;"
        f" stalls: wall time, longest per round of {scrapes} scrapes, min / median of {rounds} rounds:",
        "",
        "| | stator group (merged, off-loop) | prometheus_client multiprocess | ratio |",
        "|---|---|---|---|",
        "| render, CPU ms (both workers; answering: median, other: mean) |"
        f" {st_cpu:.1f} (answering worker {med(st['own_ms']):.1f} + other worker {st['peer_ms']:.1f})"
        f" | {mp_cpu:.1f} | {mp_cpu / st_cpu:.1f}x less CPU"
        f" (goal >= {GOAL_RENDER_RATIO:.0f}x: {'met' if mp_cpu / st_cpu >= GOAL_RENDER_RATIO else 'NOT met'}) |",
        f"| longest loop stall, answering worker, ms | {mm(st['loop'])} | {mm(mp['inline'])} (make_asgi_app);"
        f" {mm(mp['thread'])} (in a thread) | |",
        f"| longest loop stall, other worker, ms | {mm(st['peer_loop'])} | (no other process works) | |",
        f"| stall goal <= {GOAL_STALL_MS:.0f} ms (median of rounds, worst worker) | {worst:.1f}"
        f" | | {'met' if worst <= GOAL_STALL_MS else 'NOT met'} |",
        "",
        "stator's render includes asking the other worker for a fresh snapshot over its unix socket (its CPU is"
        " counted), writing both snapshot files, merging and encoding; prometheus_client's reads every mmap file.",
        "",
        f"Throughput, `stator run` (examples/starlette_app.py, GET /hello, wrk -t1 -c32 -d{duration}s on the same"
        f" {os.cpu_count()} cores; best of {len(runs[1])}):",
        "",
        "| | --workers 1 | --workers 2 | scaling |",
        "|---|---|---|---|",
        f"| requests/s | {tput[1]['rps']:.0f} | {tput[2]['rps']:.0f} | {tput[2]['rps'] / tput[1]['rps']:.2f}x |",
        f"| requests per CPU-second (master + workers) | {tput[1]['per_cpu_s']:.0f} | {tput[2]['per_cpu_s']:.0f} |"
        f" {tput[2]['per_cpu_s'] / tput[1]['per_cpu_s']:.2f}x |",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        from _results import record_section  # type: ignore[import-not-found]

        record_section("Workers", report, ["prometheus-client", "uvloop"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
