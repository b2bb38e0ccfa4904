"""HTTP middleware overhead: bare Starlette vs the peer stack vs stator.instrument, over real HTTP, same run.

    .venv/bin/python bench/bench_http.py [--duration 10] [--cycles 3] [--configs bare,peer,...] [--no-record]

Method (that of ``shared/reference/peer_overhead.md``, so the "+µs/req" figures compare with its table):
  * one uvicorn worker (uvloop, httptools, ``--no-access-log``) pinned with ``taskset -c 0``; a fresh server per
    configuration and cycle; apps in ``bench/http_apps.py``;
  * ``wrk -t1 -c32 -d<duration>s --latency`` pinned to CPU 1, after a 3 s warm-up mixing both routes
    (``bench/mixed.lua``); ``/hello``, then ``/items/{id}`` with ids 1..1000 (``bench/items.lua``);
  * configurations interleaved within each cycle (bare, peer, stator, peer_full, stator_full, bare, ...);
    tables show the median of the cycles with min–max;
  * "+µs/req" = 1e6/rps − 1e6/rps_bare: with the server saturating its core, that is the CPU a configuration
    adds per request. The server's own CPU time per request (from /proc) is shown next to it: it is less
    sensitive to other load on the machine than req/s.
  * the traced rows export OTLP/HTTP to ``bench/otlp_sink.py`` (own process, CPU 1), which decodes and counts
    the spans; spans received are compared with requests served after the server has exited (exporters flush
    at shutdown).
Each server is checked once per cycle: 200s with the expected bodies, an ``X-Request-ID`` on instrumented rows,
access-log lines written (one per request), ``/metrics`` serving the request counter after the load.

Results go to bench/RESULTS.md under "## HTTP overhead" (only that section is replaced).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import record_section  # noqa: E402

CONFIGS = ["bare", "peer", "stator", "peer_full", "stator_full"]
ROUTES = {"hello": ("/hello", None), "items": ("/items/{id}", "items.lua")}
TRACED = {"peer_full", "stator_full"}
REFERENCE_US = {"peer": 102.0, "peer_full": 434.0}  # peer_overhead.md: B+D+E (52+19+31) and G on /hello
# peer_overhead.md: bare Starlette µs per request on one saturated core (25827 and 24670 req/s)
REFERENCE_BARE_US = {"hello": 1e6 / 25827, "items": 1e6 / 24670}
GOALS_US = {"stator": 20.0, "stator_full": 50.0}
PACKAGES = [
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "prometheus-client",
    "starlette-exporter",
    "asgi-correlation-id",
    "structlog",
    "orjson",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-exporter-otlp-proto-http",
    "protobuf",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rps: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    cpu_s: float  # server process CPU (all threads) during the run
    wall_s: float

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_us_per_req(self) -> float:
        return self.cpu_s * 1e6 / self.requests if self.requests else float("nan")


@dataclass
class ServerCheck:
    """What one server lifetime (one config, one cycle) showed besides speed."""

    served: int = 0  # requests wrk completed plus our own checks
    log_lines: int | None = None  # access-log lines written (None: this config logs nothing)
    spans: int | None = None  # spans the sink received (None: untraced config)
    exports: int = 0  # export requests (batches) the sink received
    problems: list[str] = field(default_factory=list)


# -- processes --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, every thread of the process


class Sink:
    def __init__(self, cpu: int, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, str(HERE / "otlp_sink.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"otlp sink did not start: {line!r}")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def _call(self, method: str, path: str) -> dict[str, int]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            data: dict[str, int] = json.loads(conn.getresponse().read())
            return data
        finally:
            conn.close()

    def reset(self) -> None:
        self._call("POST", "/reset")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/stats")

    def close(self) -> None:
        stop(self.proc, 5)


# -- wrk --------------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out: str) -> tuple[float, float, int, int, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors_m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    errors = sum(int(g) for g in errors_m.groups()) if errors_m else 0
    return rps, p99_ms, requests, non2xx, errors


def wrk(
    url: str, duration: float, connections: int, cpu: int, script: str | None, latency: bool = True
) -> tuple[str, float]:
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s"]
    if latency:
        cmd.append("--latency")
    if script:
        cmd += ["-s", str(HERE / script)]
    start = time.monotonic()
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    return out, time.monotonic() - start


# -- checks -----------------------------------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_responses(cfg: str, port: int, check: ServerCheck) -> None:
    for path, expect in (("/hello", b"hello"), ("/items/7", b'"item_id":"7"')):
        status, headers, body = get(port, path)
        check.served += 1
        if status != 200 or expect not in body:
            check.problems.append(f"GET {path}: {status} {body[:80]!r}")
        if cfg != "bare" and "x-request-id" not in headers:
            check.problems.append(f"GET {path}: no X-Request-ID in the response")


def check_metrics(cfg: str, port: int, check: ServerCheck) -> None:
    if cfg == "bare":
        return
    status, _, body = get(port, "/metrics")
    if cfg.startswith("peer"):
        check.served += 1  # starlette-exporter's /metrics is an ordinary route: logged (and traced) like others
    family = b"starlette_requests_total" if cfg.startswith("peer") else b"http_requests_total"
    if status != 200 or family not in body:
        check.problems.append(f"/metrics: {status}, {family.decode()} missing")


def count_lines(path: Path, needle: bytes) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if needle in line)


# -- one server lifetime ----------------------------------------------------------------------------------------


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    server_cpu: int
    client_cpu: int
    tmp: Path


def run_server(
    cfg: str, cycle: int, opts: Options, sink: Sink | None, stator_trace_env: dict[str, str]
) -> tuple[dict[str, Run], ServerCheck]:
    port = free_port()
    stem = opts.tmp / f"{cfg}-c{cycle}"
    peer_log = Path(f"{stem}.access.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATOR_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["BENCH_LOG_FILE"] = str(peer_log)
    if sink is not None:
        env["BENCH_OTLP_ENDPOINT"] = sink.endpoint
        sink.reset()
    if cfg == "stator_full":
        env.update(stator_trace_env)
    cmd = [
        "taskset",
        "-c",
        str(opts.server_cpu),
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"http_apps:{cfg}",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    check = ServerCheck()
    runs: dict[str, Run] = {}
    with open(f"{stem}.stdout", "wb") as out, open(f"{stem}.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        try:
            wait_listening(port, proc)
            check_responses(cfg, port, check)
            base = f"http://127.0.0.1:{port}"
            warm, _ = wrk(f"{base}/", opts.warmup, opts.connections, opts.client_cpu, "mixed.lua", latency=False)
            check.served += parse_wrk(warm)[2]
            for route, (path, script) in ROUTES.items():
                cpu0 = cpu_seconds(proc.pid)
                url = base + ("/hello" if script is None else "/")  # with a script, the script sets the path
                text, wall = wrk(url, opts.duration, opts.connections, opts.client_cpu, script)
                cpu = cpu_seconds(proc.pid) - cpu0
                rps, p99, requests, non2xx, errors = parse_wrk(text)
                check.served += requests
                runs[route] = Run(rps, p99, requests, non2xx, errors, cpu, wall)
                if non2xx or errors:
                    check.problems.append(f"{path}: {non2xx} non-2xx, {errors} socket errors")
            check_metrics(cfg, port, check)
        finally:
            stop(proc)
    if proc.returncode not in (0, -signal.SIGTERM):
        check.problems.append(f"server exit code {proc.returncode}")
    if cfg.startswith("peer"):
        check.log_lines = count_lines(peer_log, b'"event":"request"')
    elif cfg.startswith("stator"):
        check.log_lines = count_lines(Path(f"{stem}.stdout"), b'"msg":"request"')
    if check.log_lines is not None and check.log_lines < 0.99 * check.served:
        check.problems.append(f"access log: {check.log_lines} lines for {check.served} requests")
    if sink is not None and cfg in TRACED:
        time.sleep(0.2)
        stats = sink.stats()
        check.spans, check.exports = stats["spans"], stats["exports"]
        if check.spans == 0:
            check.problems.append("no spans reached the sink")
    stderr = Path(f"{stem}.stderr").read_text(errors="replace").strip()
    if stderr:
        check.problems.append("stderr: " + stderr.splitlines()[-1][:200])
    return runs, check


# -- stator tracing detection -----------------------------------------------------------------------------------


def stator_tracing_env(endpoint: str) -> tuple[dict[str, str], str | None]:
    """The STATOR_* variables turning on tracing at 100% to ``endpoint``; or why stator cannot trace yet."""
    from stator.config import describe_settings

    names = {var.name for var in describe_settings()}
    if "STATOR_OTLP_ENDPOINT" not in names:
        return {}, "stator has no STATOR_OTLP_ENDPOINT setting (tracing has not landed)"
    env = {"STATOR_OTLP_ENDPOINT": endpoint}
    ratio = sorted(n for n in names if ("OTLP" in n or "TRAC" in n) and ("SAMPL" in n or "RATIO" in n))
    if "STATOR_OTLP_SAMPLE_RATIO" in ratio:
        ratio = ["STATOR_OTLP_SAMPLE_RATIO"]
    if len(ratio) == 1:
        env[ratio[0]] = "1.0"
    elif ratio:
        return {}, f"cannot tell which sampling setting to use among {', '.join(ratio)}"
    return env, None


# -- report -----------------------------------------------------------------------------------------------------


def med_range(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    m = statistics.median(values)
    if len(values) == 1:
        return format(m, fmt)
    return f"{format(m, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def added_us(rps: float, rps_bare: float) -> float:
    return 1e6 / rps - 1e6 / rps_bare


def report(
    configs: list[str],
    results: dict[str, dict[str, list[Run]]],
    checks: dict[str, list[ServerCheck]],
    unavailable: dict[str, str],
    opts: Options,
    cycles: int,
    load: tuple[str, str],
) -> tuple[str, list[str]]:
    lines: list[str] = []
    verdicts: list[str] = []
    lines.append(
        f"One uvicorn worker (uvloop, httptools, no access log) on CPU {opts.server_cpu}; "
        f"`wrk -t1 -c{opts.connections} -d{opts.duration:g}s --latency` on CPU {opts.client_cpu} after a "
        f"{opts.warmup:g} s warm-up mixing both routes; fresh server per configuration; {cycles} interleaved "
        f"cycle(s); median (min–max). +µs/req = 1e6/rps − 1e6/rps_bare. Server CPU µs/req = the server "
        f"process's CPU time (all threads) ÷ requests, from /proc: less sensitive to other load than req/s. "
        f"Apps: `bench/http_apps.py`; method: `docs/benchmarks.md`."
    )
    medians: dict[tuple[str, str], float] = {}
    cpu_medians: dict[tuple[str, str], float] = {}
    for cfg in configs:
        for route in ROUTES:
            runs = results.get(cfg, {}).get(route, [])
            if runs and cfg not in unavailable:
                medians[(cfg, route)] = statistics.median(r.rps for r in runs)
                cpu_medians[(cfg, route)] = statistics.median(r.cpu_us_per_req for r in runs)
    for route, (path, _) in ROUTES.items():
        lines.append(f"\n### {path}\n")
        lines.append(
            "| config | req/s | p99 ms | Δ vs bare | +µs/req | server CPU µs/req | +CPU µs/req | per-core vs bare "
            "| cores |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        bare = medians.get(("bare", route))
        bare_cpu = cpu_medians.get(("bare", route))
        for cfg in configs:
            if cfg in unavailable:
                lines.append(f"| {cfg} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            runs = results.get(cfg, {}).get(route, [])
            if not runs:
                continue
            rps = medians[(cfg, route)]
            cpu = cpu_medians[(cfg, route)]
            if cfg == "bare" or bare is None or bare_cpu is None:
                delta = plus = plus_cpu = per_core = "–"
            else:
                delta = f"{(rps / bare - 1) * 100:+.1f}%"
                plus = f"+{added_us(rps, bare):.0f}"
                plus_cpu = f"+{cpu - bare_cpu:.0f}"
                per_core = f"{bare_cpu / cpu:.0%}"
            lines.append(
                f"| {cfg} | {med_range([r.rps for r in runs], '.0f')} | "
                f"{med_range([r.p99_ms for r in runs], '.2f')} | {delta} | {plus} | "
                f"{med_range([r.cpu_us_per_req for r in runs], '.1f')} | {plus_cpu} | {per_core} | "
                f"{med_range([r.cores for r in runs], '.2f')} |"
            )

    lines.append("\n### Checks (every server lifetime)\n")
    lines.append(
        "| config | requests served | access-log lines | spans received | spans/request | spans/export | problems |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for cfg in configs:
        if cfg in unavailable:
            lines.append(f"| {cfg} | – | – | – | – | – | n/a: {unavailable[cfg]} |")
            continue
        cs = checks.get(cfg, [])
        served = sum(c.served for c in cs)
        logs = sum(c.log_lines or 0 for c in cs) if any(c.log_lines is not None for c in cs) else None
        spans = sum(c.spans or 0 for c in cs) if any(c.spans is not None for c in cs) else None
        probs = "; ".join(dict.fromkeys(p for c in cs for p in c.problems)) or "none"
        log_s = "–" if logs is None else f"{logs} ({logs / served * 100:.1f}%)" if served else str(logs)
        span_s = "–" if spans is None else str(spans)
        per_req = "–" if spans is None or not served else f"{spans / served:.3f}"
        exports = sum(c.exports for c in cs)
        per_export = "–" if spans is None or not exports else f"{spans / exports:.0f}"
        lines.append(f"| {cfg} | {served} | {log_s} | {span_s} | {per_req} | {per_export} | {probs} |")

    def added(cfg: str) -> dict[str, float]:
        return {
            r: added_us(medians[(cfg, r)], medians[("bare", r)])
            for r in ROUTES
            if (cfg, r) in medians and ("bare", r) in medians
        }

    def ratio(cfg: str) -> dict[str, float]:
        return {r: medians[(cfg, r)] / medians[("bare", r)] for r in ROUTES if (cfg, r) in medians}

    def fmt(d: dict[str, float], spec: str, suffix: str = "") -> str:
        return ", ".join(f"{ROUTES[r][0]} {format(v, spec)}{suffix}" for r, v in d.items())

    def cpu_ratio(cfg: str) -> dict[str, float]:
        return {
            r: cpu_medians[(cfg, r)] / cpu_medians[("bare", r)]
            for r in ROUTES
            if (cfg, r) in cpu_medians and ("bare", r) in cpu_medians
        }

    def cpu_added(cfg: str) -> str:
        d = {
            r: cpu_medians[(cfg, r)] - cpu_medians[("bare", r)]
            for r in ROUTES
            if (cfg, r) in cpu_medians and ("bare", r) in cpu_medians
        }
        q = cpu_ratio(cfg)
        scaled = {r: (v - 1) * REFERENCE_BARE_US[r] for r, v in q.items()}
        return (
            f"{fmt(d, '+.0f', ' µs')}; per core {fmt({r: 1 / v for r, v in q.items()}, '.0%')} of bare; "
            f"scaled to the reference machine ≈ {fmt(scaled, '+.0f', ' µs')}"
        )

    lines.append("\n### Goals\n")
    if "stator" in configs and added("stator"):
        a, q = added("stator"), ratio("stator")
        met = all(v <= GOALS_US["stator"] for v in a.values()) and all(v >= 0.66 for v in q.values())
        v = (
            f"- **stator** adds {fmt(a, '+.0f', ' µs')} per request, {fmt(q, '.0%')} of bare throughput "
            f"(server CPU: {cpu_added('stator')}). Goal ≤ 20 µs and ≥ 66%: **{'met' if met else 'NOT met'}**."
        )
        lines.append(v)
        verdicts.append(v)
    if "peer" in configs and added("peer"):
        a = added("peer")
        v = (
            f"- **peer** (starlette-exporter + asgi-correlation-id + structlog access log) adds "
            f"{fmt(a, '+.0f', ' µs')} (server CPU: {cpu_added('peer')}); issue 4 expects ~100 µs "
            f"(reference B+D+E: +{REFERENCE_US['peer']:.0f} µs)."
        )
        lines.append(v)
        verdicts.append(v)
        if added("stator"):
            s = added("stator")
            lines.append(
                "- stator's added cost as a fraction of the peer stack's: "
                + fmt({r: s[r] / a[r] for r in s if r in a and a[r] > 0}, ".0%")
                + "."
            )
    if "stator_full" in configs:
        if "stator_full" in unavailable:
            v = f"- **stator_full**: n/a — {unavailable['stator_full']}. Goal ≤ 50 µs: not measurable yet."
        elif added("stator_full"):
            a = added("stator_full")
            met = all(x <= GOALS_US["stator_full"] for x in a.values())
            v = (
                f"- **stator_full** (tracing at 100% → OTLP) adds {fmt(a, '+.0f', ' µs')} "
                f"(server CPU: {cpu_added('stator_full')}). Goal ≤ 50 µs: **{'met' if met else 'NOT met'}**."
            )
        else:
            v = "- **stator_full**: no result."
        lines.append(v)
        verdicts.append(v)
    if "peer_full" in configs and added("peer_full"):
        v = (
            f"- **peer_full** (peer + OTel ASGI + OTLP/HTTP) adds {fmt(added('peer_full'), '+.0f', ' µs')} "
            f"(server CPU: {cpu_added('peer_full')}); reference G: +{REFERENCE_US['peer_full']:.0f} µs."
        )
        lines.append(v)
        verdicts.append(v)

    if ("bare", "hello") in cpu_medians:
        lines.append(
            "\nServer CPU figures in the goal lines: added CPU µs per request; per-core throughput relative to bare "
            "(bare CPU/req ÷ config CPU/req); and that ratio applied to the reference machine's bare cost "
            f"({fmt(REFERENCE_BARE_US, '.1f', ' µs')}), which assumes the slowdown of this run (bare costs "
            f"{fmt({r: cpu_medians[('bare', r)] for r in ROUTES if ('bare', r) in cpu_medians}, '.0f', ' µs')} "
            "here) applies evenly to every configuration."
        )
    lines.append(
        "\n**Noise.** The machine has 2 cores and other work (test suites of other sessions) ran during this "
        f"benchmark: load average {load[0]} at the start, {load[1]} at the end. A busy CPU 0 shows as server "
        "`cores` < 1 and lower req/s for whichever configuration ran then; CPU 1 is shared by wrk, the OTLP sink "
        "and this driver. Compare ratios and the added µs within this run, not absolute req/s across runs; the "
        "server-CPU column is the cross-check."
    )
    return "\n".join(lines) + "\n", verdicts


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/stator"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"stator at {head}" + (" with uncommitted changes in src/stator" if dirty else "")


# -- in-process diagnostic (no server, no sockets) -------------------------------------------------------------


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk/4.1.0"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _drive(app: Any, requests: int, profile: str | None) -> dict[str, float]:
    """Lifespan startup, then ``requests`` sequential GETs per route; CPU µs per request (all threads)."""
    import asyncio

    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(lifespan_scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    reply = asyncio.ensure_future(from_app.get())
    await asyncio.wait([lifespan, reply], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if reply.done() and reply.result()["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan startup: {reply.result()}")
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def path_of(route: str, i: int) -> str:
        return "/hello" if route == "hello" else f"/items/{i % 1000 + 1}"

    out: dict[str, float] = {}
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    for route in ROUTES:
        for i in range(min(2000, requests)):  # warm-up: caches, label children, lazily built objects
            await app(_scope(path_of(route, i)), receive, send)
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time()
        for i in range(requests):
            await app(_scope(path_of(route, i)), receive, send)
        out[route] = (time.process_time() - t0) * 1e6 / requests
        if profiler is not None:
            profiler.disable()
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} non-200 responses, e.g. {bad[0]}")
    if not lifespan.done():
        await to_app.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lifespan, 15)
    return out


def inproc_worker(cfg: str, requests: int, profile: str | None) -> None:
    """Runs in a subprocess (one per config: structlog and OTel keep global state); prints JSON µs/request."""
    import uvloop

    import http_apps

    # The stator logger writes to fd 1: send it to a real file like the server rows, keep our stdout for JSON.
    log = os.open(os.environ.get("BENCH_STDOUT_FILE", "/dev/null"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real_stdout = os.dup(1)
    os.dup2(log, 1)
    try:
        app = http_apps.FACTORIES[cfg]()
        result = uvloop.run(_drive(app, requests, profile))
    finally:
        os.dup2(real_stdout, 1)
    print(json.dumps(result), flush=True)


def inproc_main(args: argparse.Namespace, configs: list[str], unavailable: dict[str, str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_http_inproc.", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    sink_log = open(tmp / "sink.stderr", "wb")  # noqa: SIM115 - closed below
    sink = Sink(args.client_cpu, sink_log) if TRACED & set(configs) else None
    trace_env: dict[str, str] = {}
    if sink is not None and "stator_full" in configs:
        trace_env, why = stator_tracing_env(sink.endpoint)
        if why:
            unavailable["stator_full"] = why
    out: dict[str, dict[str, list[float]]] = {c: {r: [] for r in ROUTES} for c in configs}
    try:
        for cycle in range(args.cycles):
            for cfg in configs:
                if cfg in unavailable:
                    continue
                env = {k: v for k, v in os.environ.items() if not k.startswith(("STATOR_", "OTEL_"))}
                env["BENCH_LOG_FILE"] = str(tmp / f"{cfg}-c{cycle}.access.log")
                env["BENCH_STDOUT_FILE"] = str(tmp / f"{cfg}-c{cycle}.stdout")
                if sink is not None:
                    env["BENCH_OTLP_ENDPOINT"] = sink.endpoint
                if cfg == "stator_full":
                    env.update(trace_env)
                cmd = ["taskset", "-c", str(args.server_cpu), sys.executable, __file__]
                cmd += ["--inproc-worker", cfg, "--requests", str(args.requests)]
                if args.profile == cfg:
                    cmd += ["--profile-out", str(tmp / f"{cfg}.prof")]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                if proc.returncode != 0:
                    print(f"{cfg}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                for route, us in res.items():
                    out[cfg][route].append(us)
                print(f"[cycle {cycle + 1}] {cfg}: " + ", ".join(f"{r} {v:.1f} µs" for r, v in res.items()), flush=True)
    finally:
        if sink is not None:
            sink.close()
        sink_log.close()
    print(
        f"\nIn-process, synthetic ASGI driver, {args.requests} sequential requests per route, CPU µs/request "
        f"(process time, all threads), median of {args.cycles} (min–max):\n"
    )
    print("| config | " + " | ".join(f"{p} µs/req | +µs" for p, _ in ROUTES.values()) + " |")
    print("|---|" + "---|---|" * len(ROUTES))
    for cfg in configs:
        if cfg in unavailable:
            print(f"| {cfg} | n/a: {unavailable[cfg]} |")
            continue
        cells = []
        for route in ROUTES:
            vals = out[cfg][route]
            base = out["bare"][route]
            if not vals or not base:
                cells += ["–", "–"]
                continue
            plus = "–" if cfg == "bare" else f"+{statistics.median(vals) - statistics.median(base):.1f}"
            cells += [med_range(vals, ".1f"), plus]
        print(f"| {cfg} | " + " | ".join(cells) + " |")
    if args.profile:
        prof = tmp / f"{args.profile}.prof"
        if prof.exists():
            import pstats

            print(f"\ncProfile of {args.profile} (last cycle), top by own time:\n")
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(30)
            print(f"profile kept: {prof} (e.g. python -m pstats {prof})")
    if not args.keep and not args.profile:
        shutil.rmtree(tmp, ignore_errors=True)


# -- main -------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP middleware overhead benchmark (see the module docstring).")
    parser.add_argument("--duration", type=int, default=10, help="seconds per route per run (default 10)")
    parser.add_argument("--cycles", type=int, default=3, help="interleaved cycles (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="warm-up seconds per server (default 3; wrk takes whole seconds)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, server output)")
    parser.add_argument(
        "--inproc", action="store_true", help="diagnostic: drive each app in-process (no server, no sockets)"
    )
    parser.add_argument("--requests", type=int, default=20000, help="--inproc: requests per route (default 20000)")
    parser.add_argument("--profile", metavar="CONFIG", help="--inproc: cProfile this config, print the top costs")
    parser.add_argument("--inproc-worker", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inproc_worker:
        inproc_worker(args.inproc_worker, args.requests, args.profile_out)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    if "bare" not in configs:
        configs.insert(0, "bare")  # everything is relative to it
    if args.inproc:
        inproc_main(args, configs, {})
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install wrk)")
    os.sched_setaffinity(0, {args.client_cpu})  # the driver lives with wrk, away from the server

    tmp = Path(tempfile.mkdtemp(prefix="bench_http.", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    opts = Options(args.duration, args.warmup, args.connections, args.server_cpu, args.client_cpu, tmp)
    results: dict[str, dict[str, list[Run]]] = {c: {r: [] for r in ROUTES} for c in configs}
    checks: dict[str, list[ServerCheck]] = {c: [] for c in configs}
    unavailable: dict[str, str] = {}
    load_start = f"{os.getloadavg()[0]:.2f}"
    sink_log = open(tmp / "sink.stderr", "wb")  # noqa: SIM115 - closed below
    sink = Sink(args.client_cpu, sink_log) if TRACED & set(configs) else None
    trace_env: dict[str, str] = {}
    if "stator_full" in configs:
        assert sink is not None
        trace_env, why = stator_tracing_env(sink.endpoint)
        if why:
            unavailable["stator_full"] = why
            print(f"stator_full: n/a — {why}", flush=True)
    try:
        for cycle in range(args.cycles):
            for cfg in configs:
                if cfg in unavailable:
                    continue
                t0 = time.monotonic()
                try:
                    runs, check = run_server(cfg, cycle, opts, sink, trace_env)
                except Exception as exc:
                    print(f"[cycle {cycle + 1}] {cfg}: FAILED: {exc}", flush=True)
                    checks[cfg].append(ServerCheck(problems=[f"failed: {exc}"]))
                    if cfg == "stator_full":
                        unavailable[cfg] = f"server failed: {exc}"
                    continue
                checks[cfg].append(check)
                for route, run in runs.items():
                    results[cfg][route].append(run)
                summary = ", ".join(
                    f"{r} {run.rps:.0f} req/s p99 {run.p99_ms:.2f} ms cpu {run.cpu_us_per_req:.1f} µs/req "
                    f"({run.cores:.2f} cores)"
                    for r, run in runs.items()
                )
                extra = (
                    f" spans {check.spans}/{check.served} in {check.exports} exports" if check.spans is not None else ""
                )
                logs = f" log {check.log_lines}/{check.served}" if check.log_lines is not None else ""
                probs = f" PROBLEMS: {check.problems}" if check.problems else ""
                print(
                    f"[cycle {cycle + 1}] {cfg}: {summary};{logs}{extra} ({time.monotonic() - t0:.0f}s){probs}",
                    flush=True,
                )
    finally:
        if sink is not None:
            sink.close()
        sink_log.close()
    for cfg in ("stator_full",):
        if cfg in configs and cfg not in unavailable and checks[cfg] and all(c.spans == 0 for c in checks[cfg]):
            unavailable[cfg] = (
                "the server ran but exported no spans (tracing settings present but not wired?); "
                "its throughput is not a traced row"
            )
    load_end = f"{os.getloadavg()[0]:.2f}"
    body, _ = report(configs, results, checks, unavailable, opts, args.cycles, (load_start, load_end))
    body = f"_{git_state()}._\n\n" + body
    print("\n" + body)
    if not args.no_record:
        record_section("HTTP overhead", body, PACKAGES)
        print("recorded in bench/RESULTS.md")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
