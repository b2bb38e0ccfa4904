"""The per-service registry: a ``CollectorRegistry`` that guards every collector that is not a plain metric.

``service.metrics`` is this registry. prometheus_client metrics (``Counter(..., registry=service.metrics)``) are
registered as usual: they are in-memory and cheap to collect. Anything else — ``service.add_collector(c)``, or
``service.metrics.register(c)`` by code that only knows prometheus_client — is wrapped in a
:class:`GuardedCollector`, so a broken third-party collector cannot fail or stall a scrape whichever way it was
added. ``unregister`` accepts the original collector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from stator.metrics.guard import GuardedCollector
from stator.metrics.render import exposed_names

GuardFactory = Callable[[Collector, "str | None"], GuardedCollector]


class Unguarded:
    """Mixin marking a collector as safe to collect inline (in-memory, bounded, never raises)."""

    stator_unguarded = True


class MetricsRegistry(CollectorRegistry):
    def __init__(self, make_guard: GuardFactory) -> None:
        super().__init__(auto_describe=True)
        self._make_guard = make_guard
        self._guards: dict[int, GuardedCollector] = {}  # id(original collector) -> its guard, in insertion order
        self._order: list[Collector] = []  # what collect() iterates, in the same order, for our own encoder
        self._guards_lock = threading.Lock()

    def register(self, collector: Collector) -> None:
        if isinstance(collector, (MetricWrapperBase, GuardedCollector)) or getattr(
            collector, "stator_unguarded", False
        ):
            super().register(collector)
            with self._guards_lock:
                self._order.append(collector)
                if isinstance(collector, GuardedCollector):
                    self._guards[id(collector)] = collector
            return
        self.register_guarded(collector, None)

    def register_guarded(self, collector: Collector, name: str | None) -> GuardedCollector:
        with self._guards_lock:
            if id(collector) in self._guards:
                raise ValueError(f"collector already registered: {collector!r}")
        guard = self._make_guard(collector, name)
        super().register(guard)  # raises DuplicateTimeseries when the collector's describe() clashes
        with self._guards_lock:
            self._guards[id(collector)] = guard
            self._order.append(guard)
        return guard

    def unregister(self, collector: Collector) -> None:
        with self._guards_lock:
            guard = self._guards.pop(id(collector), None)
        registered = guard if guard is not None else collector
        super().unregister(registered)
        with self._guards_lock:
            self._order = [c for c in self._order if c is not registered]

    def guards(self) -> list[GuardedCollector]:
        with self._guards_lock:
            return list(self._guards.values())

    def collectors(self) -> list[Collector]:
        """The registered collectors (guards in place of what they wrap), in ``collect()`` order."""
        with self._guards_lock:
            return list(self._order)


class ScrapeView:
    """What one scrape encodes: the registry's families minus any whose names clash with an earlier family.

    The registry refuses clashes at registration only for collectors that ``describe()`` themselves; a clash at
    scrape time would produce a second ``# TYPE`` line, and Prometheus rejects the whole scrape for that."""

    def __init__(
        self,
        registry: CollectorRegistry,
        origin: dict[int, GuardedCollector],
        on_duplicate: Callable[[Metric, GuardedCollector | None], None],
    ) -> None:
        self._registry = registry
        self._origin = origin
        self._on_duplicate = on_duplicate

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for family in self._registry.collect():
            names = exposed_names(family.name, family.type)
            if not seen.isdisjoint(names):
                self._on_duplicate(family, self._origin.get(id(family)))
                continue
            seen.update(names)
            yield family
