"""Per-call overhead of calling a service through ``stator.upstream`` vs the Python peers assembled by hand.

    .venv/bin/python bench/bench_upstream.py [--quick] [--calls N] [--cycles K] [--no-record]

One local backend (a minimal keep-alive HTTP/1.1 responder in its own process) answers ``GET /work``. Contenders,
each making sequential calls to it from one event loop:

* **bare** — ``httpx.AsyncClient.get(url)``: the floor everything else is measured against;
* **stator** — ``UpstreamHub(service).get(...)`` with its defaults: P2C balancer, retry policy and budget, outlier
  detection, circuit breaker, a client-side rate limit (set high enough never to wait), per-attempt metrics and
  a span per call plus a CLIENT span per attempt, exported over OTLP to ``bench/otlp_sink.py`` (own process);
* **peers** — the same behaviour assembled from the peers: round robin over the instance list, ``tenacity``
  (``AsyncRetrying``: 3 attempts, retry on transport errors), ``aiobreaker`` (``CircuitBreaker``), ``aiolimiter``
  (``AsyncLimiter``), ``prometheus_client`` counter + histogram per instance, and an OpenTelemetry SDK span per
  call and per attempt (``BatchSpanProcessor`` + the OTLP/HTTP exporter to the same sink).

What is compared is the client process's CPU time per call (``time.process_time``: it counts the export threads
too, and not the backend's work, which runs elsewhere), in interleaved cycles; the overhead of a contender is its
CPU per call minus bare httpx's, median over cycles. Results go to bench/RESULTS.md under "## Upstream client".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

from _results import record_section  # noqa: E402

BACKEND = r"""
import asyncio, sys
BODY = b'{"ok":true}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(RESP)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

Call = Callable[[], Awaitable[Any]]


def start_process(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    return proc, int(line[-1])


async def measure(call: Call, n: int) -> float:
    """CPU seconds per call of this process over ``n`` sequential calls."""
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - started) / n


async def build(backend: str, sink: str) -> tuple[dict[str, Call], Callable[[], Awaitable[None]]]:
    import aiobreaker
    import httpx
    import tenacity
    from aiolimiter import AsyncLimiter
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from stator.config import load_settings
    from stator.logs import Logger, MemorySink
    from stator.service import Service
    from stator.upstream import UpstreamHub

    bare = httpx.AsyncClient()

    # -- stator ------------------------------------------------------------------------------------------------
    settings = load_settings(
        {
            "STATOR_OTLP_ENDPOINT": sink,
            "STATOR_WAVE_ENABLED": "false",
            "STATOR_UPSTREAM_LIMIT_RATE": "1000000000",
            "STATOR_UPSTREAM_LIMIT_BURST": "1000000",
        }
    )
    service = Service(settings, logger=Logger(app_id="bench", run_id="b", sink=MemorySink(), level="warning"))
    upstream = UpstreamHub(service).get("backend", instances=[backend.removeprefix("http://")])

    # -- peers -------------------------------------------------------------------------------------------------
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sink)))
    tracer = provider.get_tracer("peers")
    registry = CollectorRegistry()
    requests = Counter("upstream_requests", "", ["upstream", "instance", "outcome"], registry=registry)
    latency = Histogram("upstream_request_duration_seconds", "", ["upstream", "instance"], registry=registry)
    breaker = aiobreaker.CircuitBreaker(fail_max=5)
    limiter = AsyncLimiter(1_000_000_000, 1)
    instances = [backend]
    peer_client = httpx.AsyncClient()
    rr = [0]

    async def attempt(n: int) -> httpx.Response:
        url = instances[rr[0] % len(instances)]
        rr[0] += 1
        with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("http.request.resend_count", n)
            started = time.perf_counter()
            try:
                response = await peer_client.get(url + "/work")
            except httpx.HTTPError:
                requests.labels("backend", url, "error").inc()
                raise
            latency.labels("backend", url).observe(time.perf_counter() - started)
            requests.labels("backend", url, "success").inc()
            return response

    async def peers() -> httpx.Response:
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

    async def close() -> None:
        await bare.aclose()
        await peer_client.aclose()
        await upstream.aclose()
        provider.shutdown()
        if service.tracing is not None:
            service.tracing.shutdown(5)

    calls: dict[str, Call] = {
        "bare httpx": lambda: bare.get(backend + "/work"),
        "stator upstream": lambda: upstream.get("/work"),
        "peers (tenacity + aiobreaker + aiolimiter + prometheus_client + OTel SDK)": peers,
    }
    for call in calls.values():  # warm up: connections, caches
        for _ in range(50):
            response = await call()
            assert response.status_code == 200
    return calls, close


async def run(calls_per: int, cycles: int) -> dict[str, list[float]]:
    backend_proc, port = start_process([sys.executable, "-c", BACKEND])
    sink_proc, sink_port = start_process([sys.executable, str(HERE / "otlp_sink.py"), "--port", "0"])
    try:
        calls, close = await build(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sink_port}/v1/traces")
        results: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(cycles):
            for name, call in calls.items():
                results[name].append(await measure(call, calls_per))
        await close()
        return results
    finally:
        for proc in (backend_proc, sink_proc):
            proc.terminate()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls and cycles (a smoke run)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    calls, cycles = (300, 2) if args.quick else (args.calls, args.cycles)
    results = asyncio.run(run(calls, cycles))
    median = {name: statistics.median(values) * 1e6 for name, values in results.items()}
    base = median["bare httpx"]
    names = list(median)
    stator_name, peers_name = names[1], names[2]
    lines = [
        f"{calls} sequential calls per contender per cycle, {cycles} interleaved cycles; client-process CPU per"
        " call, median over cycles; overhead = contender - bare httpx.",
        "",
        "| contender | CPU µs/call | added over bare httpx |",
        "|---|---|---|",
    ]
    for name in names:
        added = "—" if name == names[0] else f"+{median[name] - base:.1f} µs"
        lines.append(f"| {name} | {median[name]:.1f} | {added} |")
    stator_added = median[stator_name] - base
    peers_added = median[peers_name] - base
    ratio = stator_added / peers_added if peers_added > 0 else float("nan")
    lines += [
        "",
        f"stator's added cost is {ratio:.2f}× the peer assembly's ({stator_added:.1f} vs {peers_added:.1f} µs).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_record and not args.quick:
        record_section(
            "Upstream client",
            text,
            ["httpx", "tenacity", "aiobreaker", "aiolimiter", "prometheus_client", "opentelemetry-sdk"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
