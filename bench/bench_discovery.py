"""Discovery propagation latency: from a KV write to the change being visible in ``GET /services``.

Setup (all on loopback, all real processes): the dev registry (``python -m stator.registry.cli``) and etcd, and
one ``stator run`` per source watching the key with the *default* discovery settings (5m wait, limiter burst 3
refilling one per 100 ms). Per update: a ``/services?after=<version>&wait=10s`` long-poll is already parked on
the service when the write is sent; latency = write sent → long-poll answered with the new document. So it
covers the write itself, the registry waking the blocking query (or etcd pushing the watch event), the watcher
decoding and publishing, and the HTTP answer. Updates are spaced 100 ms apart (the limiter's sustained rate;
faster churn is deliberately paced by it — see docs/discovery.md). 20 warm-up updates, then 200 measured.

Goal: p99 <= 100 ms for both (the seed, without blocking queries, would show a change after its poll interval).
Run: .venv/bin/python bench/bench_discovery.py [--updates N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record_section

ROOT = Path(__file__).resolve().parent.parent
KEY_CONSUL = "stator/bench/services"
KEY_ETCD = "/stator/bench/services"
SPACING = 0.1
GOAL_P99_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def document(n: int) -> bytes:
    return orjson.dumps(
        [
            {"uri": "http://pool01.example/api/v2", "capabilities": [{"name": "resize", "capacity": n}]},
            {"uri": "http://pool02.example/api/v2", "capabilities": [{"name": "resize", "capacity": 23}]},
        ]
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, method: str = "GET", body: bytes = b"") -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.request(method, url, content=body, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_service(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STATOR_")}
    base.update({"STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": str(port), "STATOR_LOG_LEVEL": "warning"})
    base.update({"STATOR_HTTP_ACCESS_LOG": "false", "STATOR_WAVE_ENABLED": "false"})
    base.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stator", "run"], env=base, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_http(f"http://127.0.0.1:{port}/-/ready", proc, "stator run")
    return proc


async def measure(
    name: str, services_url: str, write: Callable[[httpx.AsyncClient, bytes], Awaitable[None]], updates: int
) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30) as writer, httpx.AsyncClient(timeout=30) as reader:
        await write(writer, document(0))
        deadline = time.monotonic() + 10
        while True:
            body = (await reader.get(services_url)).json()
            if body["services"] and body["services"][0]["capabilities"][0]["capacity"] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the watcher never showed the first document: {body}")
            await asyncio.sleep(0.05)
        version = body["version"]
        for n in range(1, updates + 21):
            poll = asyncio.create_task(reader.get(services_url, params={"after": version, "wait": "10s"}))
            await asyncio.sleep(0.005)  # the long-poll is parked on the service before the write goes out
            sent = time.perf_counter()
            await write(writer, document(n))
            while True:
                body = (await poll).json()
                if body["services"][0]["capabilities"][0]["capacity"] == n:
                    break
                poll = asyncio.create_task(reader.get(services_url, params={"after": body["version"], "wait": "10s"}))
            took = time.perf_counter() - sent
            version = body["version"]
            if n > 20:  # warm-up done
                latencies.append(took * 1000)
            await asyncio.sleep(SPACING)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    etcd_bin = shutil.which("etcd")
    if etcd_bin is None:
        raise SystemExit("etcd not found on PATH (scripts/install-system-deps.sh installs it)")
    etcd_version = subprocess.run([etcd_bin, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        try:
            reg_port, etcd_port, peer_port = free_port(), free_port(), free_port()
            registry = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stator.registry.cli",
                    "--listen",
                    f"127.0.0.1:{reg_port}",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            procs.append(registry)
            registry_url = f"http://127.0.0.1:{reg_port}"
            wait_http(f"{registry_url}/v1/agent/self", registry, "dev registry")
            etcd_url = f"http://127.0.0.1:{etcd_port}"
            peer = f"http://127.0.0.1:{peer_port}"
            etcd_args = [
                etcd_bin, "--name", "bench", "--data-dir", f"{tmp}/etcd",
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--log-level", "error",
            ]  # fmt: skip
            etcd = subprocess.Popen(etcd_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(etcd)
            wait_http(f"{etcd_url}/v3/kv/range", etcd, "etcd", "POST", b'{"key":"AA=="}')

            consul_port, etcd_svc_port = free_port(), free_port()
            procs.append(
                start_service(
                    consul_port,
                    {
                        "STATOR_DISCOVER_SOURCE": "consul",
                        "STATOR_DISCOVER_KEY": KEY_CONSUL,
                        "STATOR_CONSUL_ADDR": registry_url,
                    },
                )
            )
            procs.append(
                start_service(
                    etcd_svc_port,
                    {"STATOR_DISCOVER_SOURCE": "etcd", "STATOR_DISCOVER_KEY": KEY_ETCD, "STATOR_ETCD_ADDR": etcd_url},
                )
            )

            async def consul_put(client: httpx.AsyncClient, value: bytes) -> None:
                (await client.put(f"{registry_url}/v1/kv/{KEY_CONSUL}", content=value)).raise_for_status()

            async def etcd_put(client: httpx.AsyncClient, value: bytes) -> None:
                body = {"key": base64.b64encode(KEY_ETCD.encode()).decode(), "value": base64.b64encode(value).decode()}
                (await client.post(f"{etcd_url}/v3/kv/put", json=body)).raise_for_status()

            results = {
                "dev registry (Consul KV, blocking query)": asyncio.run(
                    measure("consul", f"http://127.0.0.1:{consul_port}/services", consul_put, args.updates)
                ),
                f"etcd {etcd_version.removeprefix('etcd Version: ')} (watch)": asyncio.run(
                    measure("etcd", f"http://127.0.0.1:{etcd_svc_port}/services", etcd_put, args.updates)
                ),
            }
        finally:
            for proc in reversed(procs):
                stop(proc)

    rows = [
        "| source | updates | p50 ms | p90 ms | p99 ms | max ms | mean ms | goal p99 <= 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    for name, values in results.items():
        p99 = pct(values, 99)
        ok &= p99 <= GOAL_P99_MS
        rows.append(
            f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 90):.1f} | {p99:.1f} | "
            f"{max(values):.1f} | {statistics.fmean(values):.1f} | {'met' if p99 <= GOAL_P99_MS else 'MISSED'} |"
        )
    table = "\n".join(rows)
    print(table)
    body = f"""Propagation latency from a KV write to the change being visible in `GET /services` of a `stator run`
watching the key with default discovery settings (wait 5m, limiter burst 3 + one per 100 ms). A
`/services?after=<version>&wait=10s` long-poll is parked before each write; latency = write sent → long-poll
answered with the new document (write + registry wake-up/watch event + decode/publish + HTTP). All processes
on loopback; {args.updates} updates per source after 20 warm-up ones, spaced {SPACING * 1000:.0f} ms apart.
`.venv/bin/python bench/bench_discovery.py`.

{table}

Without blocking queries (plain polling at the seed's 1m interval) a change would show up after up to a minute."""
    if not args.no_record:
        record_section("Discovery", body, ["httpx", "uvicorn", "starlette"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
