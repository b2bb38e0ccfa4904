"""The service's registry as StatsD observations, read with ``registry.collect()`` once per flush.

- Counters (and a summary's ``_count``/``_sum``) become StatsD counters carrying the increase since the previous
  flush (the first flush sends the whole value; a counter that went down restarted, and sends its new value).
- Gauges, info and anything else become gauges with the sample's current value (NaN and infinities skipped).
- Histograms become timer/histogram/distribution *observations* reconstructed from the buckets' increases: each
  observation in bucket ``(lo, hi]`` is sent as the bucket's midpoint (``hi/2`` for the first bucket when it starts
  at 0); those above the last finite bound share what the sum says they were (never less than that bound). The
  count is exact, values are as precise as the buckets. Up to :data:`EXPLICIT` observations of one bucket are sent
  one by one; more are sent with sample rates ``1/2**j`` (one value per set bit of the count), which the daemon
  scales back exactly.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry

from stator.statsd.lines import Tags

EXPLICIT: Final = 16


@dataclass(slots=True)
class Observations:
    counters: list[tuple[str, Tags, float]] = field(default_factory=list)
    gauges: list[tuple[str, Tags, float]] = field(default_factory=list)
    values: list[tuple[str, Tags, dict[int, list[float]]]] = field(default_factory=list)
    """Per histogram series: sample-rate power ``j`` (rate ``2**-j``) -> values sent with that rate."""


def spread(buckets: Sequence[tuple[float, float, int]], count_sum: float) -> dict[int, list[float]]:
    """Representative observations of bucket increases ``(lo, hi, n)`` grouped by sample-rate power."""
    out: dict[int, list[float]] = {}
    finite = 0.0
    for lo, hi, n in buckets:
        if n <= 0 or math.isinf(hi):
            continue
        value = (lo + hi) / 2 if math.isfinite(lo) else hi / 2 if hi > 0 else hi
        finite += value * n
        _add(out, value, n)
    for lo, hi, n in buckets:
        if n > 0 and math.isinf(hi):
            rest = (count_sum - finite) / n
            _add(out, max(lo, rest) if math.isfinite(rest) else lo, n)
    return out


def _add(out: dict[int, list[float]], value: float, n: int) -> None:
    if n <= EXPLICIT:
        out.setdefault(0, []).extend([value] * n)
        return
    power = 0
    while n:
        if n & 1:
            out.setdefault(power, []).append(value)
        n >>= 1
        power += 1


class RegistryBridge:
    def __init__(self, registry: CollectorRegistry, exclude: Iterable[str] = ()) -> None:
        self.registry = registry
        patterns = list(exclude)
        self._exclude = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
        self._last: dict[tuple[str, Tags], float] = {}

    def _delta(self, name: str, tags: Tags, value: float) -> float:
        key = (name, tags)
        previous = self._last.get(key, 0.0)
        self._last[key] = value
        return value - previous if value >= previous else value

    def collect(self) -> Observations:
        obs = Observations()
        seen: set[tuple[str, Tags]] = set()
        for family in self.registry.collect():
            if self._exclude is not None and self._exclude.fullmatch(family.name):
                continue
            kind = family.type
            if kind == "histogram":
                self._histogram(family.name, family.samples, obs, seen)
                continue
            for s in family.samples:
                if s.name.endswith("_created") or (self._exclude is not None and self._exclude.fullmatch(s.name)):
                    continue
                tags = tuple(sorted(s.labels.items()))
                value = float(s.value)
                if kind == "counter" or (kind == "summary" and s.name.endswith(("_count", "_sum"))):
                    seen.add((s.name, tags))
                    delta = self._delta(s.name, tags, value)
                    if delta and math.isfinite(delta):
                        obs.counters.append((s.name, tags, delta))
                elif math.isfinite(value):
                    obs.gauges.append((s.name, tags, value))
        for key in [k for k in self._last if k not in seen]:  # series that disappeared: forget them
            del self._last[key]
        return obs

    def _histogram(self, name: str, samples: Iterable[object], obs: Observations, seen: set[tuple[str, Tags]]) -> None:
        series: dict[Tags, dict[str, object]] = {}
        for s in samples:
            labels = dict(s.labels)  # type: ignore[attr-defined]
            le = labels.pop("le", None)
            tags = tuple(sorted(labels.items()))
            entry = series.setdefault(tags, {"buckets": []})
            sname: str = s.name  # type: ignore[attr-defined]
            if sname.endswith("_bucket") and le is not None:
                entry["buckets"].append((float(le), float(s.value)))  # type: ignore[attr-defined]
            elif sname.endswith("_sum"):
                entry["sum"] = float(s.value)  # type: ignore[attr-defined]
        for tags, entry in series.items():
            cumulative = sorted(entry["buckets"])  # type: ignore[call-overload]
            increases: list[tuple[float, float, int]] = []
            lo = -math.inf
            below = 0.0
            for hi, count in cumulative:
                key = (f"{name}_bucket", (*tags, ("le", repr(hi))))
                seen.add(key)
                n = self._delta(*key, count)  # increase of the cumulative count up to hi
                increases.append((lo if lo != -math.inf else (0.0 if hi > 0 else -math.inf), hi, int(n - below)))
                below = n
                lo = hi
            skey = (f"{name}_sum", tags)
            seen.add(skey)
            total = self._delta(*skey, float(entry.get("sum", 0.0)))  # type: ignore[arg-type]
            values = spread(increases, total)
            if values:
                obs.values.append((name, tags, values))
