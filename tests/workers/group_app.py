"""A worker group under test: ``python -m tests.workers.group_app N`` runs stator's supervisor with N forked
workers on one pre-bound loopback port. Each worker has a stator ServiceMetrics registry (a counter, a histogram
with exemplars, policy-declared gauges, a custom collector), joins the group whose master is the supervisor, and
serves with uvicorn:

- ``GET /work``: counts one unit of work; blocks the worker's loop for 20 ms so concurrent requests spread over
  the workers; answers with ``x-worker`` (slot) and ``x-pid``;
- ``GET /metrics``: the group's merged metrics (stator's endpoint, both formats);
- ``GET /roster``: the group's roster (``WorkerGroup.monitor()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator

import orjson
import uvicorn
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.asgi import Receive, Scope, Send, send_bytes
from stator.config import load_settings
from stator.ids import short_id
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.logs import Logger
from stator.metrics import ServiceMetrics
from stator.workers import Listeners, Policies, Supervisor, WorkerGroup, bind


class Custom:
    """A custom collector: prometheus_client's multiprocess mode cannot export these."""

    def __init__(self) -> None:
        self.events = 0

    def collect(self) -> list[Metric]:
        counter = CounterMetricFamily("custom_events", "Events seen by a custom collector.")
        counter.add_metric([], self.events)
        gauge = GaugeMetricFamily("custom_level", "A custom gauge merged per worker (the default).")
        gauge.add_metric([], 1.0)
        return [counter, gauge]


def run_child(listeners: Listeners, slot: int) -> int:
    settings = load_settings(os.environ)
    logger = Logger(app_id="groupapp", run_id=short_id())
    metrics = ServiceMetrics(
        settings, logger, app_id="groupapp", run_id=logger.run_id, version="0", loop_monitor=LoopMonitor(0.1)
    )
    metrics.install_defaults()
    registry = metrics.registry
    work = Counter("work", "Units of work done.", ["kind"], registry=registry)
    seconds = Histogram("work_seconds", "Time per unit.", ["kind"], buckets=(0.01, 0.1, 1.0), registry=registry)
    inflight = Gauge("work_in_flight", "Work being done (sum).", registry=registry)
    slot_max = Gauge("work_slot_max", "Highest slot index (max).", registry=registry)
    custom = Custom()
    metrics.add_collector(custom, "custom")
    policies = Policies()
    policies.declare(inflight, "sum")
    policies.declare("work_slot_max", "max")
    served = [0]
    group = WorkerGroup.join(
        mode=settings.workers.group,
        collect=metrics.collect_local,
        logger=logger,
        policies=policies,
        status=lambda: {"requests": served[0]},
        directory=settings.workers.dir,
        timeout=settings.workers.scrape_timeout,
        slot_hint=slot,
    )
    assert group is not None, "not in a group"
    logger = logger.bind(worker=group.slot)
    slot_max.set(group.slot)
    metrics.use_merged_source(group.merged_families)
    endpoint = metrics.endpoint()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            await endpoint(scope, receive, send)
        elif path == "/work":
            inflight.inc()
            started = time.perf_counter()
            time.sleep(0.02)  # hold the loop: the next connection is accepted by another worker
            work.labels("unit").inc()
            seconds.labels("unit").observe(time.perf_counter() - started, exemplar={"trace_id": f"t{group.slot}"})
            custom.events += 1
            served[0] += 1
            inflight.dec()
            headers = [(b"x-worker", str(group.slot).encode()), (b"x-pid", str(os.getpid()).encode())]
            await send_bytes(send, 200, b"ok\n", b"text/plain", headers)
        elif path == "/roster":
            section = await asyncio.to_thread(group.monitor)
            await send_bytes(send, 200, orjson.dumps(section), b"application/json")
        else:
            await send_bytes(send, 404, b"not found\n", b"text/plain")

    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = _Server(config)
    logger.info("worker serving", pid=os.getpid(), leader=group.try_lead())
    try:
        asyncio.run(server.serve(sockets=[listeners.http]))
    finally:
        group.close()
        logger.info("worker left group")
    return 0


class _Server(uvicorn.Server):
    """uvicorn re-raises the stop signal after serve() (killing the process before ``group.close()``); stop on
    SIGTERM/SIGINT through the loop instead, as stator's Service does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, setattr, self, "should_exit", True)
        yield


def main(argv: list[str]) -> int:
    workers = int(argv[0]) if argv else 2
    settings = load_settings(os.environ)
    logger = Logger(app_id="groupapp", run_id=short_id())
    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    logger.info("listening", address=f"{host}:{port}", pid=os.getpid())
    supervisor = Supervisor(
        run_child, Listeners(sock), workers=workers, logger=logger, shutdown_timeout=settings.shutdown.timeout
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
