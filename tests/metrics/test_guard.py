"""Guarded collectors: a collector that raises, hangs or returns garbage costs only its own families."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stator.metrics.guard import LogLimiter

pytestmark = pytest.mark.timeout(60)


def gauge(name: str, value: float = 1.0) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, f"{name} help", value=value)


class Good:
    def __init__(self, name: str = "good_value") -> None:
        self.name_ = name
        self.calls = 0

    def collect(self) -> list[Metric]:
        self.calls += 1
        return [gauge(self.name_)]


class Failing:
    def collect(self) -> Iterator[Metric]:
        yield gauge("partial_before_error")  # families yielded before the error must not leak into the scrape
        raise RuntimeError("boom")


class Blocking:
    """Blocks in collect() until released; counts how many copies were started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self._lock = threading.Lock()

    def collect(self) -> list[Metric]:
        with self._lock:
            self.started += 1
        self.release.wait(30)
        return [gauge("slow_value")]


def errors(h: Any, collector: str) -> float:
    value = h.metrics.registry.get_sample_value("stator_collector_errors_total", {"collector": collector})
    assert value is not None
    return float(value)


def test_failing_collector_is_isolated_counted_and_logged(harness: Any) -> None:
    h = harness(defaults=False)
    h.metrics.add_collector(Good(), "good")
    h.metrics.add_collector(Failing(), "broken")
    text = h.text()
    assert "good_value 1.0" in text
    assert "partial_before_error" not in text
    assert 'stator_collector_errors_total{collector="broken"} 1.0' in text
    assert 'stator_collector_success{collector="broken"} 0.0' in text
    assert 'stator_collector_errors_total{collector="good"} 0.0' in text
    logged = h.logs("metrics collector failed")
    assert len(logged) == 1
    assert logged[0]["collector"] == "broken" and logged[0]["error"] == "boom" and logged[0]["suppressed"] == 0
    for _ in range(3):
        h.text()
    assert len(h.logs("metrics collector failed")) == 1  # rate-limited: one a minute per collector
    assert 'stator_collector_errors_total{collector="broken"} 5.0' in h.text()  # counted every time


def test_slow_collector_is_left_out_skipped_while_stuck_then_back(harness: Any) -> None:
    h = harness(defaults=False, STATOR_METRICS_COLLECTOR_TIMEOUT="50ms")
    slow = Blocking()
    h.metrics.add_collector(slow, "slow")
    h.metrics.add_collector(Good(), "good")
    try:
        text = h.text()  # returns after the 50 ms budget although the collector never finishes
        assert "good_value 1.0" in text and "slow_value" not in text
        assert 'stator_collector_errors_total{collector="slow"} 1.0' in text
        assert h.logs("metrics collector timed out")[0]["collector"] == "slow"

        text = h.text()  # still stuck: not started again, counted as skipped
        assert "slow_value" not in text
        assert slow.started == 1
        assert 'stator_collector_errors_total{collector="slow"} 2.0' in text
    finally:
        slow.release.set()
    for _ in range(200):  # wait for the abandoned thread to finish (no timing asserted)
        if h.metrics.registry.guards()[0]._run.done.wait(0.05):  # type: ignore[union-attr]
            break
    text = h.text()
    assert "slow_value 1.0" in text and slow.started == 2
    assert 'stator_collector_success{collector="slow"} 1.0' in text
    assert len(h.logs("metrics collector recovered")) == 1


class NotAFamily:
    def collect(self) -> list[Any]:
        return ["nope"]


class BadValue:
    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("bad_value", "help")
        family.add_sample("bad_value", {}, "twelve")  # type: ignore[arg-type]
        return [family]


class BadExemplar:
    def collect(self) -> list[Metric]:
        from prometheus_client.samples import Exemplar

        family = GaugeMetricFamily("gauge_with_exemplar", "help")
        family.add_sample("gauge_with_exemplar", {}, 1.0, exemplar=Exemplar({"a": "b"}, 1.0))
        return [family]


@pytest.mark.parametrize("bad", [NotAFamily(), BadValue(), BadExemplar()], ids=lambda c: type(c).__name__)
def test_invalid_families_are_dropped_not_the_scrape(harness: Any, bad: Collector) -> None:
    h = harness(defaults=False)
    h.metrics.add_collector(bad, "bad")
    h.metrics.add_collector(Good(), "good")
    for body in (h.text(), h.openmetrics()):
        assert "good_value 1.0" in body
    assert errors(h, "bad") >= 2


class Clashing:
    def collect(self) -> list[Metric]:
        return [gauge("good_value", 2.0), gauge("own_value")]


def test_clashing_family_dropped_and_blamed_on_the_later_collector(harness: Any) -> None:
    h = harness(defaults=False)
    h.metrics.add_collector(Good(), "first")
    h.metrics.add_collector(Clashing(), "second")
    text = h.text()
    assert text.count("# TYPE good_value ") == 1 and "good_value 1.0" in text and "own_value 1.0" in text
    assert errors(h, "second") >= 1


def test_concurrent_scrapes_share_one_run(harness: Any) -> None:
    h = harness(defaults=False, STATOR_METRICS_COLLECTOR_TIMEOUT="20s")
    slow = Blocking()
    h.metrics.add_collector(slow, "slow")
    guard = h.metrics.registry.guards()[0]
    joined = threading.Semaphore(0)
    begin = guard.begin

    def counting_begin() -> Any:
        run = begin()
        joined.release()
        return run

    guard.begin = counting_begin  # type: ignore[method-assign]
    bodies: list[bytes] = []
    threads = [threading.Thread(target=lambda: bodies.append(h.metrics.render_sync())) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert joined.acquire(timeout=30) and joined.acquire(timeout=30)  # both scrapes have started or joined
    slow.release.set()
    for thread in threads:
        thread.join(30)
    assert len(bodies) == 2 and all(b"slow_value 1.0" in b for b in bodies)
    assert slow.started == 1


def test_registry_register_guards_plain_collectors_and_unregister(harness: Any) -> None:
    h = harness(defaults=False)
    registry = h.metrics.registry
    collector = Failing()
    registry.register(collector)  # code that only knows prometheus_client
    Counter("plain_requests", "A plain metric is not wrapped.", registry=registry).inc()
    text = h.text()
    assert "plain_requests_total 1.0" in text
    assert 'stator_collector_errors_total{collector="Failing"} 1.0' in text
    registry.unregister(collector)
    assert "Failing" not in h.text()
    good = Good()
    h.metrics.add_collector(good)
    with pytest.raises(ValueError, match="already registered"):
        h.metrics.add_collector(good)


class Described(Good):
    def describe(self) -> list[Metric]:
        return [gauge("plain_requests")]


def test_describe_clash_refused_at_registration_and_names_made_unique(harness: Any) -> None:
    h = harness(defaults=False)
    Counter("plain_requests", "x", registry=h.metrics.registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        h.metrics.add_collector(Described(), "described")
    h.metrics.add_collector(Good("a_value"), "mine")
    h.metrics.add_collector(Good("b_value"), "mine")
    assert {g.name for g in h.metrics.registry.guards()} == {"mine", "mine-2"}


def test_log_limiter_counts_suppressed_events() -> None:
    limiter = LogLimiter(interval=60)
    assert limiter.allow(100.0) == 0
    assert limiter.allow(110.0) is None
    assert limiter.allow(150.0) is None
    assert limiter.allow(160.0) == 2
    assert limiter.allow(161.0) is None
