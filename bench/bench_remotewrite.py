"""Remote-write receiver benchmark: samples/s decoded, validated and stored on one core, and request latency.

    .venv/bin/python bench/bench_remotewrite.py [--quick] [--no-record]

The receiver is a real service (``Service`` + ``setup_remote_write``, uvicorn, the stator middleware and access
log, as ``stator run`` with ``STATOR_REMOTE_WRITE=true`` serves it) in a subprocess pinned to CPU 0; the
generator runs here, pinned to CPU 1, over keep-alive connections with pre-built requests, so it costs little.
Batches are realistic Prometheus remote-write batches: 500 series of one sample each (``max_samples_per_send``
500, Prometheus 2.42's default), 20,000 series in all (node/RED-like label sets of 6-8 labels), each sample with
a newer timestamp than the last, snappy block-compressed as Prometheus sends them.

Reported: (1) saturation with 4 connections: samples/s (wall) and samples per receiver CPU-second (user + system
time of the receiver process from /proc/<pid>/stat: robust to a noisy machine), p50/p99 request latency; (2) paced
at the goal (500,000 samples/s, or 80% of the measured maximum when lower): achieved rate and p50/p99 latency;
(3) the decoder alone vs decoding with the stock protobuf message classes (the obvious alternative), same batches,
in-process CPU time (``time.process_time``). The 1-minute load average before and after is recorded: wall-clock
rows mean little when it is above zero, the CPU-second rows still do. Results go to bench/RESULTS.md under
"## Remote-write receiver".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import cramjam
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import record_section  # noqa: E402
from stator.remotewrite.decode import decode, decompress  # noqa: E402
from stator.remotewrite.schema import PROMPB  # noqa: E402
from stator.remotewrite.store import Store  # noqa: E402

GOAL = 500_000
BATCH = 500
SERIES = 20_000
T0 = 1_700_000_000_000
SERVER = """
import os, sys
from starlette.applications import Starlette
from stator.config import load_settings
from stator.remotewrite import setup_remote_write
from stator.service import Service
app = Starlette()
service = Service(load_settings(os.environ), app=app)
app.router.routes.extend(setup_remote_write(service))
sys.exit(service.run())
"""


def labels_of(n: int) -> list[tuple[str, str]]:
    route = f"/api/v{n % 3}/items/{{id{n % 50}}}"
    base = {
        "__name__": ("http_request_duration_seconds_bucket", "http_requests_total", "node_cpu_seconds_total")[n % 3],
        "instance": f"10.0.{n // 1000}.{n % 250}:9100",
        "job": ("api", "node", "db")[n % 3],
        "method": ("GET", "POST")[n % 2],
        "route": route,
        "status": ("200", "404", "500")[n % 3],
    }
    if n % 3 == 0:
        base["le"] = ("0.005", "0.01", "0.1", "1", "+Inf")[n % 5]
    base["region"] = "eu-west-1"
    return sorted(base.items())


def raw_batches() -> list[bytes]:
    out = []
    for b in range(SERIES // BATCH):
        req = PROMPB.WriteRequest()
        for n in range(b * BATCH, (b + 1) * BATCH):
            ts = req.timeseries.add()
            for name, value in labels_of(n):
                ts.labels.add(name=name, value=value)
            ts.samples.add(value=float(n % 97) * 1.5, timestamp=T0)
        out.append(req.SerializeToString())
    return out


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def bodies(raw: list[bytes], rounds: int) -> list[bytes]:
    """Compressed bodies, round r carrying timestamp T0 + r*1000 (a byte patch of the fixed-width varint)."""
    old = b"\x10" + varint(T0)
    return [
        bytes(cramjam.snappy.compress_raw(r.replace(old, b"\x10" + varint(T0 + k * 1000))))
        for k in range(rounds)
        for r in raw
    ]


def request(body: bytes) -> bytes:
    head = (
        "POST /api/v1/write HTTP/1.1\r\nHost: bench\r\nContent-Encoding: snappy\r\n"
        "Content-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n"
        f"User-Agent: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, reqs: list[bytes], seconds: float, conns: int, rate: float | None) -> tuple[int, list[float]]:
    """Send requests round-robin for ``seconds``; paced to ``rate`` requests/s when given. Returns (sent, latencies)."""
    latencies: list[float] = []
    counter = [0]
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            if rate is not None:
                due = start + counter[0] / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            data = reqs[counter[0] % len(reqs)]
            counter[0] += 1
            t = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 204"):
                raise RuntimeError(head[:200].decode(errors="replace"))
            latencies.append(time.perf_counter() - t)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return counter[0], latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def decoder_only(raw: list[bytes], reps: int) -> tuple[float, float]:
    """ns per sample: stator's decode+store vs stock protobuf parse + label tuples + dict store."""
    comp = bodies(raw, 2)
    store = Store(SERIES * 2)
    for body in comp[: len(raw)]:
        store.apply(decode(decompress(body, 1 << 26), store.aliases))
    newer = comp[len(raw) :]
    t = time.process_time()
    for _ in range(reps):
        for body in newer:
            store.apply(decode(decompress(body, 1 << 26), store.aliases))
    ours = (time.process_time() - t) / (reps * SERIES) * 1e9
    latest: dict[tuple[tuple[str, str], ...], tuple[float, int]] = {}
    t = time.process_time()
    for _ in range(reps):
        for body in newer:
            req = PROMPB.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
            for ts in req.timeseries:
                key = tuple((lab.name, lab.value) for lab in ts.labels)
                s = ts.samples[-1]
                latest[key] = (s.value, s.timestamp)
    stock = (time.process_time() - t) / (reps * SERIES) * 1e9
    return ours, stock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0
    load_before = os.getloadavg()[0]
    raw = raw_batches()
    reqs = [request(b) for b in bodies(raw, 60)]
    env = {
        **os.environ,
        "STATOR_HTTP_HOST": "127.0.0.1",
        "STATOR_HTTP_PORT": "0",
        "STATOR_REMOTE_WRITE": "true",
        "STATOR_REMOTE_WRITE_MAX_SERIES": str(SERIES * 2),
        "PYTHONPATH": str(ROOT / "src"),
    }
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[0], cpus[-1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        os.sched_setaffinity(proc.pid, {server_cpu})
        os.sched_setaffinity(0, {client_cpu})
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            record = orjson.loads(line)
            if record.get("msg") == "listening":
                port = int(str(record["address"]).rsplit(":", 1)[1])
                break
        subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)  # keep draining its log
        asyncio.run(_warm(port, reqs[: len(raw)]))
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        sent, lat = asyncio.run(load(port, reqs[len(raw) :], seconds, 4, None))
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        max_rate = sent * BATCH / wall
        per_cpu = sent * BATCH / cpu
        target = min(GOAL, 0.8 * max_rate)
        sent2, lat2 = asyncio.run(load(port, reqs[len(raw) :], seconds, 8, target / BATCH))
        paced = sent2 * BATCH / seconds
    finally:
        proc.terminate()
        proc.wait(15)
    ours, stock = decoder_only(raw, 1 if args.quick else 3)
    load_after = os.getloadavg()[0]
    met = "met" if per_cpu >= GOAL else "not met"
    body = "\n".join(
        [
            f"Receiver on one CPU, 500-series batches ({SERIES:,} series), {seconds:.0f} s per phase;"
            f" load average {load_before:.2f} before, {load_after:.2f} after (machine has {os.cpu_count()} CPUs).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| saturation, 4 connections: samples/s (wall) | {max_rate:,.0f} |",
            f"| saturation: samples per receiver CPU-second (goal ≥ {GOAL:,}: {met}) | {per_cpu:,.0f} |",
            f"| saturation: request latency p50 / p99 | {pct(lat, 0.5):.2f} ms / {pct(lat, 0.99):.2f} ms |",
            f"| paced at {target:,.0f} samples/s: achieved | {paced:,.0f} samples/s |",
            f"| paced: request latency p50 / p99 | {pct(lat2, 0.5):.2f} ms / {pct(lat2, 0.99):.2f} ms |",
            f"| decoder + store alone, ns per sample: stator / stock protobuf classes | {ours:,.0f} / {stock:,.0f}"
            f" ({stock / ours:.1f}× faster) |",
        ]
    )
    print(body)
    if not args.no_record:
        record_section("Remote-write receiver", body, ["protobuf", "cramjam", "uvicorn"])
    return 0


async def _warm(port: int, reqs: list[bytes]) -> None:
    """First sight of every series (full parse and validation), not part of the measurement."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for data in reqs:
        writer.write(data)
        await reader.readuntil(b"\r\n\r\n")
    writer.close()


if __name__ == "__main__":
    raise SystemExit(main())
