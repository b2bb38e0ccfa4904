"""StatsD push benchmark: CPU per observation of stator's StatsD backend vs the ``datadog`` DogStatsd client
(buffered; and buffered with its client-side aggregation) and the ``statsd`` client's pipeline, same series.

    .venv/bin/python bench/bench_statsd.py [--quick] [--no-record]

Workload, identical for every contender: a pre-drawn sequence of observations over 40 counter series
(``requests`` by route x status), 20 timer series (``latency`` by route) and 5 gauges (``queue`` by shard); each
side sends its whole output over UDP to a bound loopback socket nobody reads (sends cost what they cost; the
kernel drops on the floor). Every 10,000 observations each side flushes (stator: one aggregation window, as a
service at 1,000 observations/s with the 10 s default flush; datadog: ``flush()``; statsd: ``pipeline.send()``).
Time is process CPU (``time.process_time``) over the observations and flushes, divided by the observation count;
contenders are interleaved over rounds and the median round is reported. Tags: DogStatsD tags for stator and
datadog; the ``statsd`` client has no tags, so its names carry them folded (as stator's plain format does).
Results go to bench/RESULTS.md under "## StatsD push".
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import record_section  # noqa: E402
from stator.statsd.client import StatsdClient, make_tags  # noqa: E402
from stator.statsd.pusher import StatsdPusher  # noqa: E402
from stator.statsd.transport import Transport  # noqa: E402

FLUSH_EVERY = 10_000
ROUTES = [f"/r{n}" for n in range(20)]


def workload(n: int) -> list[tuple[str, str, float, list[str]]]:
    rng = random.Random(7)
    ops: list[tuple[str, str, float, list[str]]] = []
    for _ in range(n):
        route = rng.choice(ROUTES)
        kind = rng.random()
        if kind < 0.5:
            ops.append(("c", "requests", 1.0, [f"route:{route}", f"status:{rng.choice(('200', '500'))}"]))
        elif kind < 0.95:
            ops.append(("ms", "latency", round(rng.expovariate(1 / 20), 3), [f"route:{route}"]))
        else:
            ops.append(("g", "queue", float(rng.randint(0, 100)), [f"shard:{rng.randint(0, 4)}"]))
    return ops


def run_stator(ops: list[tuple[str, str, float, list[str]]], port: int) -> float:
    client = StatsdClient(100_000)
    pusher = StatsdPusher(client, Transport(f"127.0.0.1:{port}"), fmt="dogstatsd")
    # Tags as an application passes them on a hot path: built once per series, then reused.
    cache: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
    prepared = [(k, n, v, cache.setdefault(tuple(t), make_tags(t))) for k, n, v, t in ops]
    incr, timing, gauge = client.incr, client.timing, client.gauge
    start = time.process_time()
    for i, (kind, name, value, tags) in enumerate(prepared, 1):
        if kind == "c":
            incr(name, value, tags)
        elif kind == "ms":
            timing(name, value, tags)
        else:
            gauge(name, value, tags)
        if i % FLUSH_EVERY == 0:
            pusher.flush(client.take())
    pusher.flush(client.take())
    elapsed = time.process_time() - start
    pusher.transport.close()
    return elapsed


def run_datadog(ops: list[tuple[str, str, float, list[str]]], port: int, aggregate: bool) -> float:
    from datadog.dogstatsd.base import DogStatsd

    client = DogStatsd(
        host="127.0.0.1",
        port=port,
        disable_buffering=False,
        disable_aggregation=not aggregate,
        disable_telemetry=True,
        disable_background_sender=True,
        flush_interval=0,  # no background flush thread: flushes happen where this loop says
    )
    incr, timing, gauge = client.increment, client.timing, client.gauge
    start = time.process_time()
    for i, (kind, name, value, tags) in enumerate(ops, 1):
        if kind == "c":
            incr(name, value, tags)
        elif kind == "ms":
            timing(name, value, tags)
        else:
            gauge(name, value, tags)
        if i % FLUSH_EVERY == 0:
            if aggregate:
                client.flush_aggregated_metrics()
            client.flush()
    if aggregate:
        client.flush_aggregated_metrics()
    client.flush()
    elapsed = time.process_time() - start
    client.close_socket()
    return elapsed


def run_statsd(ops: list[tuple[str, str, float, list[str]]], port: int) -> float:
    import statsd

    client = statsd.StatsClient("127.0.0.1", port, maxudpsize=1432)
    pipe = client.pipeline()
    folded = [(k, n + "".join("." + t.replace(":", ".").replace("/", "-") for t in tags), v) for k, n, v, tags in ops]
    start = time.process_time()
    for i, (kind, name, value) in enumerate(folded, 1):
        if kind == "c":
            pipe.incr(name, value)
        elif kind == "ms":
            pipe.timing(name, value)
        else:
            pipe.gauge(name, value)
        if i % FLUSH_EVERY == 0:
            pipe.send()
    pipe.send()
    elapsed = time.process_time() - start
    client.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer observations and rounds")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    n, rounds = (50_000, 3) if args.quick else (200_000, 5)
    ops = workload(n)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    contenders: dict[str, Callable[[], float]] = {
        "stator (dogstatsd, aggregated)": lambda: run_stator(ops, port),
        "datadog DogStatsd (buffered)": lambda: run_datadog(ops, port, aggregate=False),
        "datadog DogStatsd (buffered + aggregation)": lambda: run_datadog(ops, port, aggregate=True),
        "statsd (pipeline)": lambda: run_statsd(ops, port),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            times[name].append(run() / n * 1e9)
    sink.close()
    ours = statistics.median(times["stator (dogstatsd, aggregated)"])
    rows = ["| contender | ns per observation (median of rounds) | stator is N× cheaper |", "|---|---|---|"]
    for name, values in times.items():
        med = statistics.median(values)
        rows.append(f"| {name} | {med:,.0f} | {med / ours:.2f}× |")
    body = (
        f"{n:,} observations (50% counters, 45% timers, 5% gauges over 65 series), flushed every {FLUSH_EVERY:,}; "
        f"{rounds} interleaved rounds, process CPU per observation including formatting and UDP sends.\n\n"
        + "\n".join(rows)
    )
    print(body)
    if not args.no_record:
        record_section("StatsD push", body, ["datadog", "statsd"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
