"""Guarded collectors: a collector that raises, hangs or returns garbage costs only its own families.

Every collector added to a service (``service.add_collector(c)`` or ``service.metrics.register(c)`` with anything
that is not a prometheus_client metric) is wrapped in a :class:`GuardedCollector`:

- ``collect()`` runs in its own daemon thread with a time budget (``STATOR_METRICS_COLLECTOR_TIMEOUT``), all of a
  scrape's collectors concurrently, so a scrape takes at most one budget however many collectors are slow;
- a collector that raises, overruns its budget or yields something the encoders would choke on (not a metric
  family, a non-numeric value, a non-string label, an exemplar on a gauge) is left out of that scrape:
  ``stator_collector_errors_total{collector}`` is incremented and an error logged (the first, then at most one a
  minute per collector with the count of the ones suppressed in between);
- ``stator_collector_duration_seconds{collector}`` and ``stator_collector_success{collector}`` are exported.

Why threads that are abandoned rather than killed: a Python thread cannot be interrupted. A collector stuck in a
``statvfs`` on a dead NFS mount stays stuck whatever we do, so the scrape simply stops waiting for it. While it is
still running no second copy is started — each scrape would otherwise leave one more thread stuck on the same
mount until the process runs out of threads — and the scrape counts it as skipped (an error). A run that is
still within its budget is shared instead: two Prometheus servers scraping at once get the same collection.
The threads are daemons so a stuck collector never blocks interpreter exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final, Literal

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stator.logs import Logger

LOG_INTERVAL: Final = 60.0
Outcome = Literal["ok", "error", "timeout"]


@dataclass(eq=False)
class Run:
    """One execution of a collector's ``collect()``."""

    started: float
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    families: list[Metric] | None = None
    error: BaseException | None = None
    finished: float | None = None
    outcome: Outcome | None = None


class LogLimiter:
    """First event logged; then at most one per ``interval``, carrying how many were suppressed meanwhile."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None
        self._suppressed = 0
        self._lock = threading.Lock()

    def allow(self, now: float) -> int | None:
        """The number of suppressed events to report if this one should be logged, else None."""
        with self._lock:
            if self._last is None or now - self._last >= self.interval:
                suppressed, self._suppressed, self._last = self._suppressed, 0, now
                return suppressed
            self._suppressed += 1
            return None


def _valid_exemplar(family: Metric, sample_name: str) -> bool:
    # The same rule as prometheus_client's OpenMetrics encoder, which raises (failing the whole scrape) otherwise.
    if family.type == "counter":
        return sample_name.endswith("_total")
    if family.type == "gaugehistogram":
        return sample_name.endswith("_bucket")
    if family.type == "histogram":
        return sample_name.endswith("_bucket") or sample_name == family.name
    return False


def check_families(families: Iterable[object]) -> list[Metric]:
    """The families, or TypeError/ValueError naming the first thing the text encoders could not render."""
    out: list[Metric] = []
    for family in families:
        if not isinstance(family, Metric):
            raise TypeError(f"collect() yielded {type(family).__name__!r}, not a metric family")
        for sample in family.samples:
            value = sample.value
            if value is None:
                if getattr(sample, "native_histogram", None) is None:
                    raise TypeError(f"{sample.name}: no value")
            else:
                try:  # what the encoders do with it; numpy scalars and Decimals pass, "abc" does not
                    float(value)
                except (TypeError, ValueError):
                    raise TypeError(f"{sample.name}: value {value!r} is not a number") from None
            for key, label in sample.labels.items():
                if type(key) is not str or type(label) is not str:
                    raise TypeError(f"{sample.name}: label {key!r}={label!r} is not a string pair")
            if sample.exemplar is not None and not _valid_exemplar(family, sample.name):
                raise ValueError(f"{sample.name}: exemplars are only allowed on counters and histogram buckets")
        out.append(family)
    return out


class GuardedCollector:
    """A collector run with a time budget, isolated from the others; see the module docstring."""

    def __init__(self, collector: Collector, name: str, budget: float, logger: Logger) -> None:
        self.collector = collector
        self.name = name
        self.budget = budget
        self.logger = logger
        self.errors = 0
        self.last_duration: float | None = None
        self.last_success: bool | None = None
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._failing = False
        self._limiter = LogLimiter()

    def __repr__(self) -> str:
        return f"GuardedCollector({self.name!r}, {self.collector!r})"

    # -- registry protocol ---------------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The wrapped collector's ``describe()`` (so the registry can refuse clashing names), else nothing.

        Never ``collect()`` here: registration must not run a possibly slow collector on the caller's thread."""
        describe = getattr(self.collector, "describe", None)
        if describe is None:
            return []
        try:
            return check_families(describe())
        except Exception as exc:
            self.logger.warning("metrics collector describe() failed", collector=self.name, error=repr(exc))
            return []

    def collect(self) -> Iterable[Metric]:
        """This scrape's families: from the current scrape round if there is one, else a guarded run now."""
        current = CURRENT_ROUND.get()
        if current is not None and self in current:
            return current[self]
        run = self.begin()
        return (self.wait(run) or []) if run is not None else []

    # -- running -------------------------------------------------------------------------------------------

    def begin(self) -> Run | None:
        """Start a run, join one still within its budget, or return None (skipped: one is stuck)."""
        now = time.monotonic()
        with self._lock:
            run = self._run
            if run is not None and run.finished is None:
                if now < run.deadline:
                    return run
                stuck = run
            else:
                stuck = None
                run = self._run = Run(now, now + self.budget)
        if stuck is not None:
            self._fail("skipped", f"still running after {now - stuck.started:.3f}s", None)
            return None
        try:
            threading.Thread(
                target=self._execute, args=(run,), name=f"stator-collector:{self.name}", daemon=True
            ).start()
        except RuntimeError as exc:  # cannot start a thread (resource limits)
            run.error = exc
            run.finished = time.monotonic()
            self._settle(run)
            run.done.set()
        return run

    def wait(self, run: Run) -> list[Metric] | None:
        """The run's families if it succeeded within its budget, else None (the failure is accounted once)."""
        run.done.wait(max(0.0, run.deadline - time.monotonic()))
        self._settle(run)
        return run.families if run.outcome == "ok" else None

    def _execute(self, run: Run) -> None:
        try:
            run.families = check_families(self.collector.collect())
        except BaseException as exc:  # a collector's SystemExit must not escape into a daemon thread either
            run.error = exc
        finally:
            run.finished = time.monotonic()
            self._settle(run)
            run.done.set()

    def _settle(self, run: Run) -> None:
        """Decide the run's outcome exactly once (by whoever sees it first: the run itself or a waiter)."""
        with self._lock:
            if run.outcome is not None:
                if run.outcome == "timeout" and run.finished is not None:
                    self.last_duration = run.finished - run.started  # a late finish: show the true duration
                return
            finished = run.finished
            if finished is not None and finished <= run.deadline:
                run.outcome = "ok" if run.error is None else "error"
                self.last_duration = finished - run.started
            else:
                run.outcome = "timeout"
                self.last_duration = time.monotonic() - run.started
            outcome = run.outcome
        if outcome == "ok":
            self.last_success = True
            if self._failing:
                self._failing = False
                self.logger.info("metrics collector recovered", collector=self.name)
        elif outcome == "error":
            self._fail("failed", None, run.error)
        else:
            self._fail("timed out", f"no result within {self.budget:g}s", None)

    def reject(self, detail: str) -> None:
        """Count and log a family dropped after collection (it clashed with an earlier family's names)."""
        self._fail("returned a clashing metric family", detail, None)

    def _fail(self, what: str, detail: str | None, exc: BaseException | None) -> None:
        with self._lock:
            self.errors += 1
            self.last_success = False
            self._failing = True
        suppressed = self._limiter.allow(time.monotonic())
        if suppressed is None:
            return
        kv: dict[str, object] = {"collector": self.name, "suppressed": suppressed}
        if detail:
            kv["detail"] = detail
        if exc is not None and not isinstance(exc, Exception):
            kv["error"] = repr(exc)  # BaseException (SystemExit, ...) from a collector: no stack needed
            exc = None
        self.logger.error(f"metrics collector {what}", exc=exc, **kv)


CURRENT_ROUND: ContextVar[dict[GuardedCollector, list[Metric]] | None] = ContextVar("stator_scrape_round", default=None)


def collect_round(guards: Sequence[GuardedCollector]) -> dict[GuardedCollector, list[Metric]]:
    """Run (or join) every guarded collector at once and wait at most one budget for all of them."""
    runs = [(guard, guard.begin()) for guard in guards]
    result: dict[GuardedCollector, list[Metric]] = {}
    for guard, run in runs:
        families = guard.wait(run) if run is not None else None
        result[guard] = families or []
    return result


class CollectorStatsCollector:
    """``stator_collector_*``: the guards' own health. Cheap and in-memory, so it is not guarded itself."""

    def __init__(self, guards: Callable[[], Sequence[GuardedCollector]]) -> None:
        self._guards = guards

    def describe(self) -> list[Metric]:
        return self._families([])

    def collect(self) -> list[Metric]:
        return self._families(list(self._guards()))

    @staticmethod
    def _families(guards: list[GuardedCollector]) -> list[Metric]:
        duration = GaugeMetricFamily(
            "stator_collector_duration_seconds",
            "How long the collector's last collect() took (the time so far when it overran its budget).",
            labels=["collector"],
            unit="seconds",
        )
        errors = CounterMetricFamily(
            "stator_collector_errors",
            "Scrapes that lacked the collector's metrics: it raised, overran its budget, returned invalid "
            "families or was still running from an earlier scrape.",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "stator_collector_success",
            "1 if the collector's last run succeeded within its budget, else 0.",
            labels=["collector"],
        )
        for guard in guards:
            errors.add_metric([guard.name], guard.errors)
            if guard.last_duration is not None:
                duration.add_metric([guard.name], guard.last_duration)
            if guard.last_success is not None:
                success.add_metric([guard.name], 1.0 if guard.last_success else 0.0)
        return [duration, errors, success]
