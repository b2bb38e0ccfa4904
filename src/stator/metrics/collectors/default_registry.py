"""prometheus_client's default ``REGISTRY`` inside a service's ``/metrics``.

Libraries and existing code register metrics on the default registry (``Counter("x", "...")`` with no
``registry=``). A service's own registry never touches it, so without this collector those metrics would never
be exported. It yields what the default registry holds except the default registry's own process, platform and
GC collectors, which stator exports itself under the same names: no duplicate series.
"""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry


class DefaultRegistryCollector:
    name = "default_registry"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        own = (
            prometheus_client.PROCESS_COLLECTOR,
            prometheus_client.PLATFORM_COLLECTOR,
            prometheus_client.GC_COLLECTOR,
        )
        self.excluded = frozenset(family.name for collector in own for family in collector.collect())

    def collect(self) -> Iterator[Metric]:
        excluded = self.excluded
        for family in self.registry.collect():
            if family.name not in excluded:
                yield family
