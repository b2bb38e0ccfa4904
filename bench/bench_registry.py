"""The dev registry under load: how fast one KV PUT releases 1,000 parked blocking queries, and KV PUT/GET
throughput. The registry runs as its own process (``python -m stator.registry.cli``); this process is the client,
over loopback.

Wake-up latency: 1,000 connections each park ``GET /v1/kv/bench/hot?index=N&wait=60s``; once the registry
reports all 1,000 parked, the clock starts, one PUT is sent, and each watcher's latency is the time until its
complete response has arrived. 1 warm-up round + 5 measured rounds, 5,000 samples. Goal: p99 <= 15 ms. The same
client measures a bare uvloop fan-out server in the same run: the floor of this machine (kernel loopback sends).
Throughput: wrk (1 thread, 32 connections, 5 s) on GET and PUT, or a Python client when wrk is missing.
Run: .venv/bin/python bench/bench_registry.py [--quick] [--no-record]
(``--quick``: wake-up only, 3 measured rounds, not recorded; prints the 1-minute load average before and after.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record_section

WATCHERS = 1000
ROUNDS = 5
GOAL_P99_MS = 15.0
ROOT = Path(__file__).resolve().parent.parent


class Registry:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stator.registry.cli", "--listen", "127.0.0.1:0", "--log-level", "info"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.port = 0
        deadline = time.monotonic() + 20
        for raw in self.proc.stdout:
            line = json.loads(raw) if raw.startswith(b"{") else {}
            if line.get("msg") == "listening":
                self.port = int(line["port"])
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            raise RuntimeError("registry did not start")
        # Keep draining its log so a full pipe can never stall it.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout or []], daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


# The floor: the same fan-out with nothing but uvloop around it. It speaks just enough of the registry's wire for
# wake_latency (agent/self's parked count, a KV GET with X-Consul-Index, parking on ?index=, a PUT that answers
# every parked connection with one shared response of the registry's size), so both run the same client.
FLOOR_SERVER = r"""
import json, sys, uvloop, asyncio
index, parked = 1, []
BODY = b'[{"LockIndex":0,"Key":"bench/hot","Flags":0,"Value":"MA==","CreateIndex":1,"ModifyIndex":1}]'
def answer(body, status=b"200 OK"):
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nx-consul-index: %d\r\n"
            b"x-consul-knownleader: true\r\nx-consul-lastcontact: 0\r\ncontent-length: %d\r\n\r\n"
            % (index, len(body)) + body)
class P(asyncio.Protocol):
    buf = b""
    def connection_made(self, t): self.t = t
    def data_received(self, data):
        global index
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) if b"ength: " in head else 0
            if len(rest) < n: return
            self.buf = rest[n:]
            line = head.split(b"\r\n")[0]
            if line.startswith(b"PUT"):
                index += 1
                data = answer(BODY)
                woken, parked[:] = parked[:], []
                for t in woken: t.write(data)
                self.t.write(answer(b"true"))
            elif b"/v1/agent/self" in line:
                self.t.write(answer(json.dumps({"Stats": {"stator": {"blocked_queries": str(len(parked))}}}).encode()))
            elif b"index=" in line:
                parked.append(self.t)
            else:
                self.t.write(answer(BODY))
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
uvloop.run(main())
"""


class FloorServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(15)


class Batch:
    """The responses of one wake-up: collected without a future per watcher (see :class:`Conn`)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.results: list[tuple[float, bytes]] = []
        self.future: asyncio.Future[list[tuple[float, bytes]]] = asyncio.get_running_loop().create_future()

    def arrived(self, when: float, raw: bytes) -> None:
        self.results.append((when, raw))
        if len(self.results) == self.expected and not self.future.done():
            self.future.set_result(self.results)


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that records when each complete response arrived.

    Kept cheap on purpose: in the wake-up measurement this one process receives 1,000 responses at once, and
    whatever it spends per response is added to the latency of every watcher read after it. So the arrival
    time is taken first, the length is found without a regex when the header is in the registry's spelling,
    and a wake-up's responses go to one :class:`Batch` instead of 1,000 futures gathered."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[tuple[float, bytes]] | None = None
        self.batch: Batch | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        self.buf = b""
        assert self.transport is not None
        self.transport.write(
            f"{method} {path} HTTP/1.1\r\nHost: r\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )

    def request(self, method: str, path: str, body: bytes = b"") -> asyncio.Future[tuple[float, bytes]]:
        self.done = asyncio.get_running_loop().create_future()
        self.batch = None
        self.send(method, path, body)
        return self.done

    def request_into(self, batch: Batch, method: str, path: str) -> None:
        self.done = None
        self.batch = batch
        self.send(method, path)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        at = buf.find(b"content-length: ", 0, end)
        if at >= 0:
            length = int(buf[at + 16 : buf.index(b"\r\n", at)])
        else:
            m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:end])
            length = int(m.group(1)) if m else 0
        total = end + 4 + length
        if len(buf) < total:
            self.buf = buf
            return
        self.buf = b""
        raw = buf[:total]
        if self.batch is not None:
            batch, self.batch = self.batch, None
            batch.arrived(now, raw)
        elif self.done is not None and not self.done.done():
            self.done.set_result((now, raw))


async def connect(port: int) -> Conn:
    _, conn = await asyncio.get_running_loop().create_connection(Conn, "127.0.0.1", port)
    return conn


def header(raw: bytes, name: str) -> str:
    m = re.search(rb"(?i)" + name.encode() + rb":\s*([^\r\n]*)", raw)
    return m.group(1).decode() if m else ""


async def parked(ctl: Conn) -> int:
    _, raw = await ctl.request("GET", "/v1/agent/self")
    body = raw.split(b"\r\n\r\n", 1)[1]
    return int(json.loads(body)["Stats"]["stator"]["blocked_queries"])


def cpu_ns(pid: int) -> int | None:
    """Time the process has run on a CPU, in ns (Linux ``schedstat``): unlike wall time, it does not count the
    time other processes on a busy machine take from it."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def wake_latency(
    port: int, rounds: int = ROUNDS, pid: int | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Wake-up latencies (ms), p99 per round, and the registry's CPU time per woken watcher (µs) per round."""
    ctl = await connect(port)
    await ctl.request("PUT", "/v1/kv/bench/hot", b"0")
    watchers: list[Conn] = []
    for _ in range(0, WATCHERS, 100):
        watchers += await asyncio.gather(*(connect(port) for _ in range(100)))
    samples: list[float] = []
    round_p99: list[float] = []
    round_cpu: list[float] = []
    for rnd in range(rounds + 1):
        _, raw = await ctl.request("GET", "/v1/kv/bench/hot")
        index = int(header(raw, "X-Consul-Index"))
        batch = Batch(len(watchers))
        for w in watchers:
            w.request_into(batch, "GET", f"/v1/kv/bench/hot?index={index}&wait=60s")
        while await parked(ctl) < WATCHERS:
            await asyncio.sleep(0.01)
        cpu0 = cpu_ns(pid) if pid is not None else None
        start = time.perf_counter()
        await ctl.request("PUT", "/v1/kv/bench/hot", str(rnd).encode())
        results = await asyncio.wait_for(batch.future, 60)
        cpu1 = cpu_ns(pid) if pid is not None else None
        lat = [(t - start) * 1000 for t, raw in results]
        assert all(int(header(raw, "X-Consul-Index")) > index for _, raw in results)
        if rnd > 0:  # round 0 warms up
            samples += lat
            round_p99.append(percentile(lat, 99))
            if cpu0 is not None and cpu1 is not None:
                round_cpu.append((cpu1 - cpu0) / 1000 / len(watchers))
    for w in [*watchers, ctl]:
        assert w.transport is not None
        w.transport.close()
    return samples, round_p99, round_cpu


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[k]


def wrk_rps(port: int, method: str) -> float:
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if method == "PUT":
            f.write(
                'wrk.method = "PUT"\nwrk.body = "some-value-of-32-bytes-xxxxxxxxxx"\n'
                "request = function()\n"
                '  return wrk.format(nil, "/v1/kv/bench/k" .. math.random(1, 1000))\nend\n'
            )
        script = f.name
    try:
        out = subprocess.run(
            [wrk, "-t1", "-c32", "-d5s", "-s", script, f"http://127.0.0.1:{port}/v1/kv/bench/get"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    finally:
        os.unlink(script)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    assert m and not non2xx, out
    return float(m.group(1))


async def python_rps(port: int, method: str, seconds: float = 5.0, conns: int = 32) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        c = await connect(port)
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            if method == "PUT":
                await c.request("PUT", f"/v1/kv/bench/k{i % 1000}", b"some-value-of-32-bytes-xxxxxxxxxx")
            else:
                await c.request("GET", "/v1/kv/bench/get")
            count += 1
        assert c.transport is not None
        c.transport.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return count / seconds


async def fan_out(rounds: int) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Wake-up latency of the registry and of the bare uvloop floor, one after the other in the same run."""
    out = {}
    for name, server in (("registry", Registry), ("floor", FloorServer)):
        srv = server()
        try:
            out[name] = await wake_latency(srv.port, rounds=rounds, pid=srv.proc.pid)
        finally:
            srv.stop()
    return out


def describe(name: str, samples: list[float], round_p99: list[float], round_cpu: list[float]) -> str:
    cpu = f"; CPU per woken watcher {', '.join(f'{x:.1f}' for x in round_cpu)} us" if round_cpu else ""
    return (
        f"{name}: p50 {statistics.median(samples):.1f} ms, p99 {percentile(samples, 99):.1f} ms, "
        f"max {max(samples):.1f} ms; p99 per round {', '.join(f'{x:.1f}' for x in round_p99)} ms{cpu}"
    )


async def quick() -> None:
    """Wake-up only (3 rounds, registry then floor): a smoke run that prints its numbers and records nothing."""
    load = os.getloadavg()[0]
    runs = await fan_out(3)
    reg, floor = runs["registry"], runs["floor"]
    p99, floor_p99 = percentile(reg[0], 99), percentile(floor[0], 99)
    print(
        f"wake-up, {WATCHERS} watchers, 3 rounds; 1-minute load average {load:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end"
    )
    print("  " + describe("registry", *reg))
    print("  " + describe("floor (bare uvloop fan-out)", *floor))
    print(
        f"  registry/floor p99: {p99 / floor_p99:.2f}x; goal p99 <= {GOAL_P99_MS:.0f} ms: "
        f"{'met' if p99 <= GOAL_P99_MS else 'NOT met'}"
    )


async def main(record: bool = True) -> None:
    load = os.getloadavg()[0]
    runs = await fan_out(ROUNDS)
    samples, round_p99, round_cpu = runs["registry"]
    floor_samples, floor_p99s, floor_cpu = runs["floor"]
    registry = Registry()
    try:
        ctl = await connect(registry.port)
        await ctl.request("PUT", "/v1/kv/bench/get", b"some-value-of-32-bytes-xxxxxxxxxx")
        if shutil.which("wrk"):
            tool = "wrk -t1 -c32 -d5s"
            get_rps, put_rps = wrk_rps(registry.port, "GET"), wrk_rps(registry.port, "PUT")
        else:
            tool = "Python asyncio client, 32 connections, 5 s (wrk not installed)"
            get_rps, put_rps = await python_rps(registry.port, "GET"), await python_rps(registry.port, "PUT")
    finally:
        registry.stop()
    p50, p99 = statistics.median(samples), percentile(samples, 99)
    floor_p50, floor_p99 = statistics.median(floor_samples), percentile(floor_samples, 99)
    met = "met" if p99 <= GOAL_P99_MS else "NOT met"

    def us(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} us" if values else "n/a (no /proc schedstat)"

    body = f"""
Registry process: `python -m stator.registry.cli` (its own HTTP/1.1 server: httptools + uvloop, one event loop);
client: this process over loopback. {os.cpu_count()} CPUs shared by both (and by whatever else runs: 1-minute load
average at start {load:.2f}). A wake-up renders the answer once per distinct query and writes the same bytes to
each parked connection. The peer is the floor: a bare uvloop server that parks the same 1,000 connections and
writes one shared response of the same size to each (no HTTP parsing, no timers, no state), measured by the same
client in the same run. CPU per woken watcher is the server process's own CPU time (`/proc/PID/schedstat`)
from the PUT to the last response, divided by 1,000 (median of the rounds): unlike wall time, other processes
on a busy machine do not inflate it.

Wake-up: {WATCHERS} blocking `GET /v1/kv/bench/hot?index=N&wait=60s` parked, then one `PUT`; latency = PUT sent ->
each watcher's complete response received. {ROUNDS} rounds after a warm-up ({len(samples)} samples each).

| metric | registry | floor (bare uvloop fan-out) | registry / floor |
|---|---|---|---|
| wake-up p50 | {p50:.1f} ms | {floor_p50:.1f} ms | {p50 / floor_p50:.2f}x |
| wake-up p99 | {p99:.1f} ms | {floor_p99:.1f} ms | {p99 / floor_p99:.2f}x |
| wake-up max | {max(samples):.1f} ms | {max(floor_samples):.1f} ms | |
| p99 per round | {", ".join(f"{x:.1f}" for x in round_p99)} ms | {", ".join(f"{x:.1f}" for x in floor_p99s)} ms | |
| server CPU per woken watcher | {us(round_cpu)} | {us(floor_cpu)} | |
| KV GET throughput | {get_rps:,.0f} req/s | | |
| KV PUT throughput | {put_rps:,.0f} req/s | | |

Throughput tool: {tool}.
Goal: wake-up p99 <= {GOAL_P99_MS:.0f} ms with {WATCHERS} watchers. Result: {p99:.1f} ms ({met}).
"""
    print(body)
    if record:
        record_section("Dev registry", body, ["uvloop", "httptools", "orjson"])


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="wake-up only, 3 rounds, not recorded")
    parser.add_argument("--no-record", action="store_true", help="do not rewrite bench/RESULTS.md")
    args = parser.parse_args()
    uvloop.run(quick() if args.quick else main(record=not args.no_record))
