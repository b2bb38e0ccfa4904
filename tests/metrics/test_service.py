"""Metrics as a Service uses them: separate registries per service, add_collector, shared renders, GC hooks."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from stator.config import load_settings
from stator.logs import Logger
from stator.logs.sinks import MemorySink
from stator.metrics import ServiceMetrics
from stator.metrics.gcpause import _DISPATCHER
from stator.service import Service
from tests.metrics.conftest import call


def _service(name: str) -> Service:
    logger = Logger(app_id=name, run_id="x", sink=MemorySink())
    return Service(load_settings({"STATOR_SERVICE_NAME": name}), logger=logger)


class Named:
    def __init__(self, name: str) -> None:
        self.metric = name

    def collect(self) -> list[Metric]:
        return [GaugeMetricFamily(self.metric, "Per-service value.", value=1)]


def _check_separate(a: Service, b: Service) -> None:
    assert a.metrics is not b.metrics and a.metrics is not REGISTRY
    Counter("only_in_a", "Registered in a only.", registry=a.metrics).inc()
    a.add_collector(Named("collected_in_a"))
    b.add_collector(Named("collected_in_b"))
    text_a = a.service_metrics.render_sync().decode()
    text_b = b.service_metrics.render_sync().decode()
    assert "only_in_a_total 1.0" in text_a and "only_in_a" not in text_b
    assert "collected_in_a 1.0" in text_a and "collected_in_b" not in text_a
    assert "collected_in_b 1.0" in text_b and "collected_in_a" not in text_b
    assert 'target_info{app_id="svc-a"' in text_a and 'target_info{app_id="svc-b"' in text_b
    assert "process_cpu_seconds_total" in text_a and "process_cpu_seconds_total" in text_b
    # the global default registry is untouched
    assert REGISTRY.get_sample_value("only_in_a_total") is None


def test_two_services_outside_a_loop_keep_separate_metrics() -> None:
    a, b = _service("svc-a"), _service("svc-b")
    try:
        _check_separate(a, b)
    finally:
        a.service_metrics.close()
        b.service_metrics.close()


async def test_two_services_inside_a_running_loop_keep_separate_metrics() -> None:
    a, b = _service("svc-a"), _service("svc-b")
    try:
        _check_separate(a, b)
        body_a = (await call(a.service_metrics.endpoint())).body.decode()
        assert "collected_in_a 1.0" in body_a and "collected_in_b" not in body_a
    finally:
        a.service_metrics.close()
        b.service_metrics.close()


async def test_concurrent_scrapes_share_one_render(harness: Any) -> None:
    h = harness(defaults=False)
    release = threading.Event()
    started = threading.Semaphore(0)
    calls: list[tuple[str, bool]] = []
    original = h.metrics.render_sync

    def slow_render(fmt: Any = "text", gzipped: bool = False) -> bytes:
        calls.append((fmt, gzipped))
        started.release()
        release.wait(30)
        return original(fmt, gzipped)

    h.metrics.render_sync = slow_render
    endpoint = h.metrics.endpoint()
    scrapes = [asyncio.create_task(call(endpoint)) for _ in range(5)]
    scrapes.append(asyncio.create_task(call(endpoint, headers={"accept": "application/openmetrics-text"})))
    for _ in range(2):  # one render per representation, started in threads
        assert await asyncio.to_thread(started.acquire, timeout=30)
    await asyncio.sleep(0.05)  # give any wrongly started extra render the chance to show up
    release.set()
    responses = await asyncio.gather(*scrapes)
    assert sorted(calls) == [("openmetrics", False), ("text", False)]
    assert len({r.body for r in responses[:5]}) == 1 and responses[5].body.endswith(b"# EOF\n")
    await call(endpoint)  # a later scrape renders afresh
    assert len(calls) == 3


async def test_a_cancelled_scrape_does_not_cancel_the_shared_render(harness: Any) -> None:
    h = harness(defaults=False)
    release = threading.Event()
    original = h.metrics.render_sync

    def slow_render(fmt: Any = "text", gzipped: bool = False) -> bytes:
        release.wait(30)
        return original(fmt, gzipped)

    h.metrics.render_sync = slow_render
    first = asyncio.create_task(h.metrics.render())
    second = asyncio.create_task(h.metrics.render())
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert b"stator_collector_errors_total" in await second


def test_gc_hook_is_shared_and_removed_with_the_last_service() -> None:
    def hooks() -> int:
        return sum(1 for cb in gc.callbacks if getattr(cb, "__self__", None) is _DISPATCHER)

    def make() -> ServiceMetrics:
        from stator.lifecycle.loopmonitor import LoopMonitor

        metrics = ServiceMetrics(
            load_settings({}),
            Logger(app_id="a", run_id="b", sink=MemorySink()),
            app_id="a",
            run_id="b",
            version="1",
            loop_monitor=LoopMonitor(),
        )
        metrics.install_defaults()
        return metrics

    base = _DISPATCHER.subscribers()
    first, second = make(), make()
    assert hooks() == 1 and _DISPATCHER.subscribers() == base + 2
    first.close()
    assert _DISPATCHER.subscribers() == base + 1
    ref = weakref.ref(second)
    del second
    gc.collect()
    assert ref() is None, "the interpreter-wide GC hook must not keep a service alive"
    assert _DISPATCHER.subscribers() == base
    if base == 0:
        assert hooks() == 0


async def test_metrics_worker_binds_the_loop_and_unsubscribes_on_stop(harness: Any) -> None:
    h = harness()
    (worker,) = h.metrics.workers()
    assert worker.name == "metrics"
    base = _DISPATCHER.subscribers()
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0)
    assert "python_asyncio_tasks" in h.text()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert _DISPATCHER.subscribers() == base - 1
