"""Continuous-profiling overhead: the reference app (as ``stator run`` serves it) under wrk, profiler off vs
stator's continuous profiler at 100 Hz vs pyroscope-io at 100 Hz vs py-spy attached at 100 Hz, in one run.

    .venv/bin/python bench/bench_profiling.py [--duration 10] [--cycles 3] [--quick] [--no-record]

Method: one server process per configuration and cycle (uvloop, pinned with ``taskset -c 0``), wrk
``-t1 -c32`` on ``/hello`` pinned to CPU 1 after a 2 s warm-up; configurations interleaved within each cycle;
the tables show medians. "kept" = req/s relative to "off" in the same cycle. The achieved sample rate is what
each profiler really recorded per second of the run: stator from ``stator_profiler_samples_total``, pyroscope-io
from the samples its agent uploaded to an in-process ingest sink, py-spy from its raw (collapsed) output. py-spy
runs outside the server (on CPU 1, beside wrk): its own CPU is not charged to the server core, only the pauses it
imposes (it reads memory without stopping the process with ``--nonblocking``).

Results go to bench/RESULTS.md under "## Profiling overhead".
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.server
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import record_section  # noqa: E402

CONFIGS = ["off", "stator", "pyroscope", "pyspy"]
PACKAGES = ["starlette", "uvicorn", "uvloop", "pyroscope-io", "py-spy"]


# -- the server (run as a subprocess: bench_profiling.py --serve CONFIG PORT [SINK_PORT]) ------------------------


def serve(config: str, port: int, sink_port: int) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from stator.app.reference import create_app
    from stator.config import load_settings
    from stator.profiling import TaskTagger, install
    from stator.service import Service

    env = {**os.environ, "STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": str(port)}
    env.update({"STATOR_HTTP_ACCESS_LOG": "false", "STATOR_LOG_LEVEL": "warning"})
    if config == "stator":
        env.update({"STATOR_PROFILE_CONTINUOUS": "true", "STATOR_PROFILE_RATE": "100"})
    settings = load_settings(env)
    if config == "pyroscope":
        import pyroscope

        pyroscope.configure(
            app_name="bench", server_address=f"http://127.0.0.1:{sink_port}", sample_rate=100, upload_interval=1
        )
    if config == "stator":
        holder: dict[str, Any] = {}

        async def tagged(scope: Any, receive: Any, send: Any) -> None:
            await holder["app"](scope, receive, send)

        service = Service(settings, app=tagged)
        profiler = install(service)
        holder["app"] = TaskTagger(create_app(), profiler.table)
    else:
        service = Service(settings, app=create_app())
    return service.run()


# -- pyroscope ingest sink ----------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.requests = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                sink.requests += 1
                sink.samples.append((time.monotonic(), _count_samples(body, self.headers.get("content-type", ""))))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.samples if start <= t <= end)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _count_samples(body: bytes, content_type: str) -> int:
    """Samples in one upload: folded text (``stack count`` lines) or pprof (multipart or raw)."""
    sys.path.insert(0, str(ROOT / "src"))
    from stator.profiling.pprof import decode

    blobs = [body]
    if content_type == "application/proto":  # Grafana Pyroscope push.v1.PushRequest (pyroscope-io >= 0.8)
        return sum(_count_samples(raw, "") for raw in _push_request_profiles(body))
    if content_type.startswith("multipart/"):
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
        blobs = [part.split(b"\r\n\r\n", 1)[-1].rstrip(b"\r\n-") for part in body.split(b"--" + boundary)]
    total = 0
    for blob in blobs:
        if blob[:2] == b"\x1f\x8b":
            blob = gzip.decompress(blob)
        try:
            text = blob.decode()
            lines = [ln.rsplit(" ", 1) for ln in text.splitlines() if ln.strip()]
            if lines and all(len(p) == 2 and p[1].isdigit() for p in lines):
                total += sum(int(p[1]) for p in lines)
                continue
        except UnicodeDecodeError:
            pass
        with contextlib.suppress(Exception):
            profile = decode(blob)
            value = sum(s.values[0] for s in profile.samples)
            nanos = profile.sample_types and profile.sample_types[0][1] == "nanoseconds" and profile.period
            total += value // profile.period if nanos else value  # cpu time in periods = samples
    return total


def _push_request_profiles(body: bytes) -> list[bytes]:
    """The raw pprof profiles in a PushRequest{series=1: {labels=1, samples=2: {raw_profile=1}}}."""
    from stator.profiling.pprof import _fields

    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    out = []
    for number, _, series in _fields(body):
        if number == 1 and isinstance(series, memoryview):
            for n, _, sample in _fields(series):
                if n == 2 and isinstance(sample, memoryview):
                    out += [bytes(v) for k, _, v in _fields(sample) if k == 1 and isinstance(v, memoryview)]
    return out


# -- driving ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=1).read()
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def wrk(port: int, duration: float) -> float:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{duration:g}s", f"http://127.0.0.1:{port}/hello"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def stator_samples(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^stator_profiler_samples_total ([\d.e+]+)", text, re.M)
    return float(match.group(1)) if match else 0.0


def run_one(config: str, duration: float, sink: Sink, tmp: Path) -> tuple[float, float | None, str]:
    port = free_port()
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "--serve", config, str(port), str(sink.port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    note = ""
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(port, proc)
        wrk(port, 2)  # warm-up
        raw = tmp / f"pyspy-{port}.txt"
        if config == "pyspy":
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy_cmd = ["taskset", "-c", "1", spy_bin, "record", "--pid", str(proc.pid), "--rate", "100"]
            spy_cmd += ["--format", "raw", "--output", str(raw), "--duration", str(int(duration)), "--nonblocking"]
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            if spy.poll() is not None:
                err = spy.stderr.read().decode(errors="replace") if spy.stderr else ""
                return float("nan"), None, f"py-spy could not attach: {err.strip()[:200]}"
        before = stator_samples(port) if config == "stator" else 0.0
        start = time.monotonic()
        rps = wrk(port, duration)
        end = time.monotonic()
        rate: float | None = None
        if config == "stator":
            rate = (stator_samples(port) - before) / (end - start)
        elif config == "pyroscope":
            time.sleep(2.5)  # the agent uploads every second; let the last upload of the run arrive
            rate = sink.between(start, end + 1.5) / (end - start)
        elif config == "pyspy" and spy is not None:
            spy.wait(duration + 30)
            if raw.exists():
                counts = [int(line.rsplit(" ", 1)[1]) for line in raw.read_text().splitlines() if line.strip()]
                rate = sum(counts) / duration
            else:
                note = "py-spy wrote no output: " + (spy.stderr.read().decode()[:200] if spy.stderr else "")
        return rps, rate, note
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(10)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 cycle of 4 s")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--serve", nargs=3, metavar=("CONFIG", "PORT", "SINK_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
    if args.quick:
        args.duration, args.cycles = 4.0, 1
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found", file=sys.stderr)
            return 2
    sink = Sink()
    results: dict[str, list[tuple[float, float | None]]] = {c: [] for c in CONFIGS}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for cycle in range(args.cycles):
                for config in CONFIGS:
                    rps, rate, note = run_one(config, args.duration, sink, Path(tmp))
                    if note:
                        notes[config] = note
                    results[config].append((rps, rate))
                    shown = f"{rate:.1f} Hz" if rate is not None else "-"
                    print(f"cycle {cycle + 1} {config:9s} {rps:9.0f} req/s  samples {shown} {note}", flush=True)
        finally:
            sink.close()
    off = [r for r, _ in results["off"]]
    rows = ["| configuration | req/s (median) | kept vs off | achieved sample rate |", "|---|---|---|---|"]
    labels = {
        "off": "profiler off (`stator run`)",
        "stator": "stator continuous, 100 Hz requested, span-labelled",
        "pyroscope": "pyroscope-io 100 Hz (in-process, per-thread tags)",
        "pyspy": "py-spy record --rate 100 (attached, ptrace)",
    }
    for config in CONFIGS:
        rps = [r for r, _ in results[config]]
        if all(r != r for r in rps):  # NaN: could not run
            rows.append(f"| {labels[config]} | — | — | {notes.get(config, 'not run')} |")
            continue
        kept = statistics.median(r / o for r, o in zip(rps, off, strict=True))
        rates = [x for _, x in results[config] if x is not None]
        rate = f"{statistics.median(rates):.1f} samples/s" if rates else "—"
        rows.append(f"| {labels[config]} | {statistics.median(rps):.0f} | {kept:.1%} | {rate} |")
    body = "\n".join(rows)
    body += (
        f"\n\n{args.cycles} cycle(s) × {args.duration:g} s of `wrk -t1 -c32` on `/hello`, server pinned to CPU 0,"
        " wrk (and py-spy) on CPU 1; goal: stator keeps ≥ 99% of the throughput."
    )
    for config, note in notes.items():
        body += f"\n\nNote ({config}): {note}"
    print(body)
    if not args.no_record:
        record_section("Profiling overhead", body, PACKAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
