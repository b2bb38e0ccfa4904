"""A histogram for values that arrive from callbacks (GC pauses, event-loop lag), exported as a metric family.

Why not ``prometheus_client.Histogram``: its ``observe`` takes a non-reentrant ``threading.Lock`` and scans the
buckets linearly. The GC callback runs in whatever thread happened to allocate, at any allocation point; if that
thread were inside the same histogram's ``labels()`` (which allocates under the parent's lock) the callback would
deadlock on it. Here each histogram has exactly one writer at a time (GC callbacks are serialised by the
interpreter, the lag probe runs on the event-loop thread), so plain attribute updates suffice and readers take a
copy. ``count`` is derived from the bucket counts of the same copy, so ``_count`` always equals the ``+Inf`` bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Final, cast

from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# The encoders' own number formatting, so a bucket's le label reads as prometheus_client writes it ("0.005", "1.0").
_le: Final = cast(Callable[[float], str], floatToGoString)


class Buckets:
    """Counts per bucket plus a sum; ``observe`` is O(log buckets) and allocation-free (no GC trigger)."""

    __slots__ = ("_counts", "_sum", "bounds", "labels")

    def __init__(self, bounds: Sequence[float], labels: Sequence[str] = ()) -> None:
        ordered = tuple(sorted(float(b) for b in bounds))
        if not ordered or len(set(ordered)) != len(ordered):
            raise ValueError("buckets must be non-empty and distinct")
        self.bounds = ordered
        self.labels = tuple(labels)
        self._counts = [0] * (len(ordered) + 1)  # last slot: above every bound (+Inf only)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, i.e. the smallest "le" bucket the value belongs to.
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum, from one consistent copy."""
        counts = list(self._counts)
        total = self._sum
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, counts, strict=False):
            running += count
            cumulative.append((_le(bound), float(running)))
        running += counts[-1]
        cumulative.append(("+Inf", float(running)))
        return cumulative, total


def histogram_family(
    name: str, documentation: str, unit: str, labelnames: Sequence[str], series: Iterable[Buckets]
) -> HistogramMetricFamily:
    """One histogram family (``name`` without the unit suffix) with a series per :class:`Buckets`."""
    family = HistogramMetricFamily(name, documentation, labels=list(labelnames), unit=unit)
    for item in series:
        buckets, total = item.snapshot()
        family.add_metric(list(item.labels), buckets, total)
    return family
