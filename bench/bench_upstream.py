"""Per-call overhead of calling a service through ``stator.upstream`` vs the Python peers assembled by hand.

    .venv/bin/python bench/bench_upstream.py [--quick] [--calls N] [--cycles K] [--no-record] [--profile NAME]

One local backend (a minimal keep-alive HTTP/1.1 responder) answers ``GET /work``. Contenders, each making
sequential calls to it from one event loop:

* **bare httpx** — ``httpx.AsyncClient.get(url)``: the floor everything else is measured against;
* **stator** — ``UpstreamHub(service).get(...)`` with its defaults: P2C balancer, retry policy and budget, outlier
  detection, circuit breaker, a client-side rate limit (set high enough never to wait), per-attempt metrics, and
  with tracing on a span per call plus a CLIENT span per attempt exported over OTLP to ``bench/otlp_sink.py``;
* **peers** — the same behaviour assembled from the peers: round robin over the instance list, ``tenacity``
  (``AsyncRetrying``: 3 attempts, retry on transport errors), ``aiobreaker`` (``CircuitBreaker``), ``aiolimiter``
  (``AsyncLimiter``), ``prometheus_client`` counter + histogram per instance, and with tracing on an
  OpenTelemetry SDK span per call and per attempt (``BatchSpanProcessor`` + the OTLP/HTTP exporter, same sink),
  the attempt's context sent as ``traceparent`` (``opentelemetry.propagate.inject``) as stator sends it;
* the same two **with tracing off** (stator: no ``STATOR_OTLP_ENDPOINT``; peers: the API's no-op tracer).

Method, for a machine shared with other work (the house method of ``bench/bench_http.py``):

* the client runs pinned to one core (``taskset -c 0``; the script re-executes itself), the backend and the sink
  in their own processes pinned to the other core (``taskset -c 1``), so their work is not the client's;
* what is compared is the **client process's CPU time per call** (``resource.getrusage(RUSAGE_SELF)``: user +
  system, all threads — the span export threads included), not wall time, which the other tenants distort;
* contenders are interleaved within a cycle, in a rotated order each cycle; a traced contender's exporter is
  flushed inside its own measured interval (its export work is charged to it, not to whoever runs next);
* "added" is a contender's CPU per call minus bare httpx's *in the same cycle*, and the tables show the median
  over cycles with the min–max range; ratios use the medians.

Every answer is checked (200, and for stator the instance that answered); traced rows' spans are counted at the
sink. Results go to bench/RESULTS.md under "## Upstream client" (only that section is replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

from _results import record_section  # noqa: E402

GOAL_US = 25.0
BARE = "bare httpx"
STATOR = "stator upstream"
PEERS = "peers: tenacity + aiobreaker + aiolimiter + prometheus_client + OTel SDK"
STATOR_OFF = "stator upstream, tracing off"
PEERS_OFF = "peers, tracing off"
PACKAGES = ["httpx", "tenacity", "aiobreaker", "aiolimiter", "prometheus_client", "opentelemetry-sdk"]

BACKEND = r"""
import asyncio, sys
BODY = b'{"ok":true}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESP)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

Call = Callable[[], Awaitable[Any]]


@dataclass
class Contender:
    call: Call
    flush: Callable[[], None] | None = None  # exports what the contender's tracer queued (charged to it)
    traced: bool = False


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pinned(cpu: int, args: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *args] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else args


def start_process(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) < 2 or line[0] != "listening":
        proc.kill()
        raise RuntimeError(f"{args[-1]}: did not start ({line!r})")
    return proc, int(line[1])


def sink_stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        data: dict[str, int] = json.loads(conn.getresponse().read())
        return data
    finally:
        conn.close()


async def measure(contender: Contender, n: int) -> float:
    """CPU seconds per call of this process over ``n`` sequential calls (and the flush of their spans)."""
    call = contender.call
    gc.collect()
    started = cpu_seconds()
    for _ in range(n):
        await call()
    if contender.flush is not None:
        contender.flush()
    return (cpu_seconds() - started) / n


async def build(backend: str, sink: str, canned: bool) -> tuple[dict[str, Contender], Callable[[], Awaitable[None]]]:
    """The contenders, all calling ``backend``; with ``canned``, every client's transport answers in-process."""
    import aiobreaker
    import httpx
    import tenacity
    from aiolimiter import AsyncLimiter
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from stator.config import load_settings
    from stator.logs import Logger, MemorySink
    from stator.service import Service
    from stator.upstream import UpstreamHub
    from stator.upstream.client import INSTANCE_EXTENSION, Upstream

    class CannedTransport(httpx.AsyncBaseTransport):
        """What the backend answers, without the socket: the layers' own cost, free of the loopback's noise."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=[(b"Content-Type", b"application/json")], content=b'{"ok":true}')

    def transport() -> httpx.AsyncBaseTransport | None:
        return CannedTransport() if canned else None

    bare = httpx.AsyncClient(transport=transport())
    address = backend.removeprefix("http://")

    # -- stator ------------------------------------------------------------------------------------------------
    def stator(traced: bool) -> tuple[Service, Upstream]:
        env = {
            "STATOR_WAVE_ENABLED": "false",
            "STATOR_UPSTREAM_LIMIT_RATE": "1000000000",
            "STATOR_UPSTREAM_LIMIT_BURST": "1000000",
        }
        if traced:
            env["STATOR_OTLP_ENDPOINT"] = sink
        service = Service(load_settings(env), logger=Logger(app_id="bench", run_id="b", sink=MemorySink()))
        return service, UpstreamHub(service).get("backend", instances=[address], transport=transport())

    traced_service, traced_upstream = stator(True)
    plain_service, plain_upstream = stator(False)
    assert traced_service.tracing is not None and plain_service.tracing is None
    stator_tracing = traced_service.tracing

    # -- peers -------------------------------------------------------------------------------------------------
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sink)))
    instances = [backend]

    def peers(tracer: trace.Tracer, prefix: str) -> tuple[Call, httpx.AsyncClient]:
        registry = CollectorRegistry()
        requests = Counter(f"{prefix}_requests", "", ["upstream", "instance", "outcome"], registry=registry)
        latency = Histogram(f"{prefix}_request_duration_seconds", "", ["upstream", "instance"], registry=registry)
        breaker = aiobreaker.CircuitBreaker(fail_max=5)
        limiter = AsyncLimiter(1_000_000_000, 1)
        client = httpx.AsyncClient(transport=transport())
        rr = [0]

        async def attempt(n: int) -> httpx.Response:
            url = instances[rr[0] % len(instances)]
            rr[0] += 1
            with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
                span.set_attribute("http.request.resend_count", n)
                headers: dict[str, str] = {}
                propagate.inject(headers)  # the callee continues the trace, as stator's upstream does
                started = asyncio.get_running_loop().time()
                try:
                    response = await client.get(url + "/work", headers=headers)
                except httpx.HTTPError:
                    requests.labels("backend", url, "error").inc()
                    raise
                latency.labels("backend", url).observe(asyncio.get_running_loop().time() - started)
                requests.labels("backend", url, "success").inc()
                return response

        async def call() -> httpx.Response:
            async with limiter:
                with tracer.start_as_current_span("GET backend"):
                    n = 0
                    async for try_ in tenacity.AsyncRetrying(
                        stop=tenacity.stop_after_attempt(3),
                        retry=tenacity.retry_if_exception_type(httpx.TransportError),
                        reraise=True,
                    ):
                        with try_:
                            response: httpx.Response = await breaker.call_async(attempt, n)
                            n += 1
                    return response

        return call, client

    peers_traced, peers_client = peers(provider.get_tracer("peers"), "traced")
    peers_plain, peers_plain_client = peers(trace.NoOpTracer(), "plain")

    async def close() -> None:
        for client in (bare, peers_client, peers_plain_client):
            await client.aclose()
        await traced_upstream.aclose()
        await plain_upstream.aclose()
        provider.shutdown()
        stator_tracing.shutdown(5)

    contenders = {
        BARE: Contender(lambda: bare.get(backend + "/work")),
        STATOR: Contender(
            lambda: traced_upstream.get("/work"), lambda: stator_tracing.processor.force_flush(10_000) and None, True
        ),
        PEERS: Contender(peers_traced, lambda: provider.force_flush(10_000) and None, True),
        STATOR_OFF: Contender(lambda: plain_upstream.get("/work")),
        PEERS_OFF: Contender(peers_plain),
    }
    for name, contender in contenders.items():  # warm up (connections, caches) and check every answer
        for _ in range(100):
            response = await contender.call()
            if response.status_code != 200 or response.content != b'{"ok":true}':
                raise RuntimeError(f"{name}: unexpected answer {response.status_code} {response.content!r}")
            if name in (STATOR, STATOR_OFF) and response.extensions.get(INSTANCE_EXTENSION) != address:
                raise RuntimeError(f"{name}: answer without the instance that served it")
        if contender.flush is not None:
            contender.flush()
    return contenders, close


SETS = ("loopback", "in-process")


async def run(
    calls_per: int, cycles: int, profile: str | None
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    backend_proc, port = start_process(pinned(1, [sys.executable, "-c", BACKEND]))
    sink_proc, sink_port = start_process(pinned(1, [sys.executable, str(HERE / "otlp_sink.py"), "--port", "0"]))
    try:
        backend, sink = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sink_port}/v1/traces"
        built = {kind: await build(backend, sink, canned=kind == "in-process") for kind in SETS}
        results: dict[str, dict[str, list[float]]] = {}
        before = sink_stats(sink_port)["spans"]
        if profile is not None:
            await profile_one(built["in-process"][0], profile, calls_per * cycles)
        else:
            for kind in SETS:
                results[kind] = await run_set(built[kind][0], calls_per, cycles, kind)
        for _, close in built.values():
            await close()  # flushes the exporters: every span is at the sink now
        spans = sink_stats(sink_port)["spans"] - before
        traced = sum(1 for kind in SETS for c in built[kind][0].values() if c.traced)
        return results, {"spans": spans, "expected": 2 * calls_per * cycles * traced}
    finally:
        for proc in (backend_proc, sink_proc):
            proc.terminate()
            proc.wait(10)


async def run_set(contenders: dict[str, Contender], calls_per: int, cycles: int, kind: str) -> dict[str, list[float]]:
    names = list(contenders)
    results: dict[str, list[float]] = {name: [] for name in names}
    for cycle in range(cycles):
        shift = cycle % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await measure(contenders[name], calls_per))
        done = ", ".join(f"{n.split(':')[0]} {results[n][-1] * 1e6:.0f}" for n in names)
        print(f"[{kind} {cycle + 1}/{cycles}] CPU µs/call: {done}", flush=True)
    return results


async def profile_one(contenders: dict[str, Contender], which: str, n: int) -> None:
    import cProfile
    import pstats

    matches = [name for name in contenders if name.startswith(which)]
    if not matches:
        raise SystemExit(f"--profile: no contender starts with {which!r} (one of {', '.join(contenders)})")
    contender = contenders[matches[0]]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        await contender.call()
    profiler.disable()
    print(f"cProfile of {matches[0]!r}, {n} calls, top by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def med_range(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def table(results: dict[str, list[float]]) -> tuple[list[str], dict[str, float]]:
    """Rows of one set, and each contender's median added µs/call (paired with bare httpx per cycle)."""
    us = {name: [v * 1e6 for v in values] for name, values in results.items()}
    base = us[BARE]
    added = {name: [v - b for v, b in zip(values, base, strict=True)] for name, values in us.items()}
    bare_med = statistics.median(base)
    rows = ["| contender | CPU µs/call | added µs/call | × bare httpx |", "|---|---|---|---|"]
    for name, values in us.items():
        plus = "—" if name == BARE else med_range(added[name])
        rows.append(f"| {name} | {med_range(values)} | {plus} | {statistics.median(values) / bare_med:.2f} |")
    return rows, {name: statistics.median(values) for name, values in added.items()}


def verdict(med: dict[str, float]) -> tuple[list[str], bool]:
    def vs(a: str, b: str) -> str:
        if med[a] <= 0:
            return "below bare httpx: nothing measurable added"
        return f"{med[a] / med[b]:.2f}× the peers'" if med[b] > 0 else "n/a (the peers add nothing measurable)"

    ok = med[STATOR] <= GOAL_US and med[STATOR] < med[PEERS]
    return [
        f"* traced: stator adds {med[STATOR]:.1f} µs/call, the peer assembly {med[PEERS]:.1f}"
        f" ({vs(STATOR, PEERS)}); of which tracing (two spans made, encoded and exported):"
        f" stator {med[STATOR] - med[STATOR_OFF]:.1f}, the peers {med[PEERS] - med[PEERS_OFF]:.1f}.",
        f"* tracing off: stator adds {med[STATOR_OFF]:.1f} µs/call, the peers {med[PEERS_OFF]:.1f}"
        f" ({vs(STATOR_OFF, PEERS_OFF)}).",
        f"* goal (issue 14: ≤ {GOAL_US:g} µs/call added, traced, and below the peers): {'met' if ok else 'not met'}.",
    ], ok


def report(results: dict[str, dict[str, list[float]]], spans: dict[str, int], calls: int, cycles: int) -> str:
    lines = [
        f"{calls} sequential calls per contender per cycle, {cycles} cycles, contenders interleaved in a rotated order;"
        " client pinned to CPU 0, backend and OTLP sink in their own processes on CPU 1. **CPU µs/call** = the client"
        " process's user + system CPU (getrusage; all threads, so span export is included) per call; **added** ="
        " contender − bare httpx in the same cycle. Median (min–max) over cycles.",
        "",
        "**Loopback** — every client calls the backend process over 127.0.0.1 (the issue's setting):",
        "",
    ]
    rows, med = table(results["loopback"])
    notes, _ = verdict(med)
    lines += [*rows, "", *notes, ""]
    rows, med = table(results["in-process"])
    notes, _ = verdict(med)
    lines += [
        "**In-process** — the same contenders with an httpx transport that answers at once (no socket): the"
        " layers' own cost, without the loopback's variance (which on a shared machine is larger than the"
        " difference being measured):",
        "",
        *rows,
        "",
        *notes,
        "",
        f"Spans received by the sink: {spans['spans']} of {spans['expected']} expected (2 per traced call).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls and cycles (a smoke run; not recorded)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender per cycle (default 2000)")
    parser.add_argument("--cycles", type=int, default=7, help="interleaved cycles (default 7)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--profile", metavar="NAME", help="cProfile the contender whose name starts with NAME")
    parser.add_argument("--no-pin", action="store_true", help="do not re-execute under taskset -c 0")
    args = parser.parse_args()
    if not args.no_pin and os.environ.get("BENCH_UPSTREAM_PINNED") != "1":
        cmd = pinned(0, [sys.executable, __file__, *sys.argv[1:]])
        if cmd[0] == "taskset":
            return subprocess.call(cmd, env={**os.environ, "BENCH_UPSTREAM_PINNED": "1"})
    calls, cycles = (400, 3) if args.quick else (args.calls, args.cycles)
    results, spans = asyncio.run(run(calls, cycles, args.profile))
    if args.profile:
        return 0
    text = report(results, spans, calls, cycles)
    print()
    print(text)
    if not args.no_record and not args.quick:
        record_section("Upstream client", text, PACKAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
