"""Python runtime: GC counters per generation, the GC pause histogram and ``python_info``.

``python_gc_*_total`` and ``python_info`` have prometheus_client's names, types, labels and help texts (its
``GCCollector`` and ``PlatformCollector``), so existing dashboards keep working. ``python_gc_pause_seconds`` is
ours: how long each collection stopped the process, which the counters cannot show.
"""

from __future__ import annotations

import gc
import platform

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.metrics.gcpause import GcPauses


class PythonCollector:
    def __init__(self, pauses: GcPauses | None) -> None:
        self.pauses = pauses
        major, minor, patchlevel = platform.python_version_tuple()
        info = GaugeMetricFamily(
            "python_info",
            "Python platform information",
            labels=["version", "implementation", "major", "minor", "patchlevel"],
        )
        info.add_metric([platform.python_version(), platform.python_implementation(), major, minor, patchlevel], 1)
        self._info = info

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        if hasattr(gc, "get_stats"):
            collected = CounterMetricFamily(
                "python_gc_objects_collected", "Objects collected during gc", labels=["generation"]
            )
            uncollectable = CounterMetricFamily(
                "python_gc_objects_uncollectable", "Uncollectable objects found during GC", labels=["generation"]
            )
            collections = CounterMetricFamily(
                "python_gc_collections", "Number of times this generation was collected", labels=["generation"]
            )
            for generation, stats in enumerate(gc.get_stats()):
                gen = str(generation)
                collected.add_metric([gen], stats["collected"])
                uncollectable.add_metric([gen], stats["uncollectable"])
                collections.add_metric([gen], stats["collections"])
            out.extend((collected, uncollectable, collections))
        if self.pauses is not None:
            out.append(self.pauses.family())
        out.append(self._info)
        return out
