"""Metrics exposition benchmark: render cost and event-loop stalls, stator vs prometheus_client, in one run.

    .venv/bin/python bench/bench_metrics.py [--scrapes N] [--no-record]

Setup: one registry with 10,000 series (5,000 labelled counter children, which also expose ``_created``, and
5,000 labelled gauge children), shared by both sides.

(a) Render time of the text exposition: ``prometheus_client.generate_latest(registry)`` against stator's render
    (the same encoder behind the guarded-collector round, called directly and end to end through the thread).
(b) Event-loop stalls during scrapes: a probe task sleeps 1 ms in a loop and records how late it wakes up. Each
    side's ASGI app is driven in-process, one scrape after another: stator's ``/metrics`` endpoint vs
    ``prometheus_client.make_asgi_app`` on the same registry. Reported: the longest stall, p99, and the GC pauses
    that fell inside the scrape windows (a full collection stops every thread, whichever triggered it).
    Run on uvloop (what ``stator run`` uses) and on the default asyncio loop.
(c) Ten concurrent scrapes: how many renders and how long until all have their answer.

Results go to bench/RESULTS.md under "## Metrics" (bench/_results.py replaces only that section).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, generate_latest, make_asgi_app
from prometheus_client.openmetrics import exposition as openmetrics_exposition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _results import record_section  # noqa: E402
from stator.config import load_settings  # noqa: E402
from stator.lifecycle.loopmonitor import LoopMonitor  # noqa: E402
from stator.logs import Logger  # noqa: E402
from stator.logs.sinks import MemorySink  # noqa: E402
from stator.metrics import ServiceMetrics  # noqa: E402

generate_openmetrics = openmetrics_exposition.generate_latest

SERIES = 10_000
PROBE_INTERVAL = 0.001
GOAL_STALL_MS = 10.0

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]


def service_metrics(renderer: str = "stator") -> ServiceMetrics:
    settings = load_settings({"STATOR_METRICS_RENDERER": renderer})
    logger = Logger(app_id="bench", run_id="bench", sink=MemorySink())
    return ServiceMetrics(settings, logger, app_id="bench", run_id="bench", version="bench", loop_monitor=LoopMonitor())


def build() -> tuple[ServiceMetrics, ServiceMetrics]:
    """Two ServiceMetrics over the same 10k series (no default collectors: both sides render the same bytes):
    the default one, and one using prometheus_client's encoder in the same off-loop thread."""
    metrics = service_metrics()
    compat = service_metrics("prometheus_client")
    counter = Counter("bench_requests", "Requests handled.", ["method", "path", "code"], registry=metrics.registry)
    gauge = Gauge("bench_queue_depth", "Items waiting.", ["queue", "shard"], registry=metrics.registry)
    compat.registry.register(counter)
    compat.registry.register(gauge)
    half = SERIES // 2
    for i in range(half):
        counter.labels(("GET", "POST", "PUT", "DELETE")[i % 4], f"/api/v1/items/{i}", str(200 + i % 5)).inc(i)
        gauge.labels(f"queue-{i % 100}", f"shard-{i}").set(i * 0.5)
    return metrics, compat


def histograms() -> ServiceMetrics:
    """1,000 labelled histogram children (default buckets): the path where samples carry their own labels."""
    metrics = service_metrics()
    hist = Histogram("bench_latency_seconds", "Latency.", ["route", "method"], registry=metrics.registry)
    for i in range(1000):
        hist.labels(f"/r/{i}", "GET").observe(i / 1000, exemplar={"trace_id": f"{i:032x}"})
    return metrics


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


class GcWatch:
    """Records (start, duration) of every collection, to attribute stalls."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
        elif self._start:
            self.events.append((info["generation"], self._start, now - self._start))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def drive(app: ASGIApp, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/metrics",
        "raw_path": b"/metrics",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8087),
    }
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


async def stalls(app: ASGIApp, scrapes: int, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """Scrape ``scrapes`` times in a row while a probe measures how late its 1 ms sleeps wake up."""
    lateness: list[tuple[float, float, float]] = []  # (sleep start, wake, lateness s)
    windows: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def probe() -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(PROBE_INTERVAL)
            woke = time.perf_counter()
            lateness.append((began, woke, max(0.0, woke - began - PROBE_INTERVAL)))

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    with GcWatch() as gcw:
        for _ in range(scrapes):
            start = time.perf_counter()
            status, body = await drive(app, headers)
            windows.append((start, time.perf_counter()))
            assert status == 200 and body, status
            await asyncio.sleep(0.02)  # let the probe tick between scrapes
    stop.set()
    await task

    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    def overlaps(start: float, end: float) -> bool:
        # A sleep that began before a scrape and woke after it (the loop was blocked throughout) counts too.
        return any(start <= b and end >= a for a, b in windows)

    during = sorted(late * 1000 for start, end, late in lateness if overlaps(start, end))
    gc_inside = [d * 1000 for gen, t, d in gcw.events if gen == 2 and inside(t)]
    gc_young = [d * 1000 for gen, t, d in gcw.events if gen < 2 and inside(t)]
    scrape_ms = [(b - a) * 1000 for a, b in windows]
    return {
        "max": during[-1] if during else 0.0,
        "p99": during[int(len(during) * 0.99)] if during else 0.0,
        "p50": during[len(during) // 2] if during else 0.0,
        "ticks": len(during),
        "scrape_ms": statistics.median(scrape_ms),
        "full_gc": gc_inside,
        "young_gc_max": max(gc_young, default=0.0),
    }


async def concurrent(app: ASGIApp, n: int) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(drive(app) for _ in range(n)))
    assert all(status == 200 for status, _ in results)
    return (time.perf_counter() - start) * 1000


def run_loop(factory: Callable[[], asyncio.AbstractEventLoop] | None, coro: Awaitable[Any]) -> Any:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def versions() -> str:
    def v(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"prometheus_client {v('prometheus-client')}, uvloop {v('uvloop')}, stator {v('stator')}; "
        f"{os.cpu_count()} CPUs, GIL switch interval {sys.getswitchinterval() * 1000:g} ms, "
        f"load average at start {os.getloadavg()[0]:.2f} (other processes compete for the CPUs above ~0.5)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=12, help="scrapes per stall measurement")
    parser.add_argument(
        "--no-record", "--no-write", dest="no_write", action="store_true", help="print only; leave RESULTS.md alone"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    environment = versions()

    metrics, compat = build()
    registry = metrics.registry
    ours = metrics.endpoint()
    ours_compat = compat.endpoint()
    theirs: ASGIApp = make_asgi_app(registry)
    body = generate_latest(registry)
    assert metrics.render_sync("text") == body, "both sides must render the same bytes"
    assert compat.render_sync("text") == body, "both sides must render the same bytes"
    lines = body.count(b"\n")

    # (a) render time
    generate_latest(registry)
    theirs_ms = timed(lambda: generate_latest(registry), 7)
    ours_sync_ms = timed(lambda: metrics.render_sync("text"), 7)
    ours_om_ms = timed(lambda: metrics.render_sync("openmetrics"), 5)
    ours_gz_ms = timed(lambda: metrics.render_sync("text", gzipped=True), 5)
    compat_ms = timed(lambda: compat.render_sync("text"), 5)
    hist = histograms()
    hist_lines = generate_latest(hist.registry).count(b"\n")
    hist_theirs_ms = timed(lambda: generate_latest(hist.registry), 5)
    hist_ours_ms = timed(lambda: hist.render_sync("openmetrics"), 5)
    hist_theirs_om_ms = timed(lambda: generate_openmetrics(hist.registry), 5)
    gz_size = len(metrics.render_sync("text", gzipped=True))

    async def end_to_end() -> list[float]:
        out = []
        for _ in range(7):
            start = time.perf_counter()
            await metrics.render()
            out.append((time.perf_counter() - start) * 1000)
        return out

    ours_async_ms = run_loop(None, end_to_end())

    # (b) stalls, and (c) concurrency
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]] = []
    try:
        import uvloop

        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass
    loops.append(("asyncio", None))
    stall_rows = []
    for loop_name, factory in loops:
        gzip_header = [(b"accept-encoding", b"gzip")]
        sides: tuple[tuple[str, ASGIApp, list[tuple[bytes, bytes]] | None], ...] = (
            ("prometheus_client make_asgi_app", theirs, None),
            ("stator endpoint, prometheus_client encoder (thread only)", ours_compat, None),
            ("stator endpoint", ours, None),
            ("stator endpoint, gzip", ours, gzip_header),
        )
        for side, app, headers in sides:
            gc.collect()
            result = run_loop(factory, stalls(app, args.scrapes, headers))
            stall_rows.append((loop_name, side, result))
    conc_theirs = run_loop(loops[0][1], concurrent(theirs, 10))
    conc_ours = run_loop(loops[0][1], concurrent(ours, 10))

    elapsed = time.perf_counter() - began

    # report
    out: list[str] = []
    out.append(f"`.venv/bin/python bench/bench_metrics.py` ({elapsed:.0f} s). {environment}.")
    out.append("")
    out.append(
        f"Registry: {SERIES:,} series (5,000 labelled counter children + 5,000 labelled gauge children), "
        f"{lines:,} exposition lines, {len(body) / 1e6:.2f} MB text, {gz_size / 1e3:.0f} kB gzipped. "
        "Both sides render the same registry; the text output is byte-identical (asserted)."
    )
    out.append("")
    out.append("### (a) Render time, ms: median (min, max)")
    out.append("")
    out.append("| renderer | time |")
    out.append("|---|---|")
    out.append(f"| prometheus_client `generate_latest` (text) | {ms(theirs_ms)} |")
    out.append(f'| stator `render_sync("text")`: guarded round + stator encoder | {ms(ours_sync_ms)} |')
    out.append(f"| stator `await render()`: in a thread, end to end | {ms(ours_async_ms)} |")
    out.append(f"| stator OpenMetrics | {ms(ours_om_ms)} |")
    out.append(f"| stator text + gzip (level 6) | {ms(ours_gz_ms)} |")
    out.append(f"| stator with `STATOR_METRICS_RENDERER=prometheus_client` | {ms(compat_ms)} |")
    out.append(
        f"| 1,000 histogram children with exemplars ({hist_lines:,} lines), OpenMetrics: prometheus_client "
        f"| {ms(hist_theirs_om_ms)} |"
    )
    out.append(f"| same, stator | {ms(hist_ours_ms)} |")
    out.append(f"| same registry, text: prometheus_client `generate_latest` | {ms(hist_theirs_ms)} |")
    out.append("")
    out.append(
        f"### (b) Event-loop stalls during {args.scrapes} sequential scrapes "
        f"(probe: 1 ms sleep; lateness in ms while a scrape is in flight)"
    )
    out.append("")
    out.append("| loop | server | longest stall | p99 | p50 | probe ticks | scrape | full GCs in window (ms) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for loop_name, side, r in stall_rows:
        gcs = ", ".join(f"{d:.1f}" for d in r["full_gc"]) or "none"
        out.append(
            f"| {loop_name} | {side} | **{r['max']:.1f}** | {r['p99']:.1f} | {r['p50']:.1f} | {r['ticks']} "
            f"| {r['scrape_ms']:.0f} | {gcs} |"
        )
    out.append("")
    out.append("### (c) Ten concurrent scrapes (uvloop)")
    out.append("")
    out.append(f"- prometheus_client: {conc_theirs:.0f} ms until all ten answered (ten renders, one after another).")
    out.append(f"- stator: {conc_ours:.0f} ms (one shared render).")
    out.append("")
    ours_worst = max(
        r["max"] for _, side, r in stall_rows if side.startswith("stator endpoint") and "thread" not in side
    )
    theirs_best = min(r["max"] for _, side, r in stall_rows if side.startswith("prometheus_client"))
    verdict = "met" if ours_worst <= GOAL_STALL_MS else "NOT met"
    out.append(
        f"Goal (longest stall <= {GOAL_STALL_MS:g} ms): **{verdict}** — stator's worst {ours_worst:.1f} ms, "
        f"prometheus_client's best {theirs_best:.1f} ms (the whole render)."
    )
    report = "\n".join(out) + "\n"
    print(report)
    if not args.no_write:
        record_section("Metrics", report, ["prometheus-client", "uvloop"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
