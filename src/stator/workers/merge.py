"""Merging the snapshots of a group's workers into one set of metric families.

Additive families (counters, histograms, gauge histograms, summaries) are summed sample by sample over every
source — live workers, dead workers' last files, the archive of folded dead workers — so a counter never goes
backwards while the group lives; ``_created`` takes the earliest; each sample keeps the most recent exemplar.
Summary quantiles cannot be merged and are dropped (prometheus_client's summaries have none). Other families come
from live workers only and are merged by their policy (:mod:`stator.workers.policy`).

Samples are matched by (sample name, sorted labels): histograms merge bucket-wise, which is right only when every
worker uses the same buckets (they run the same code; a worker with other buckets adds its own ``le`` series).
A family whose type differs between workers (a rolling code change) is taken from the first worker that has it;
the others' copies are left out and counted in :attr:`Merger.conflicts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from stator.metrics.render import RowsMetric
from stator.workers.policy import ADDITIVE, FALLBACK
from stator.workers.snapshot import ExemplarT, FamilyT, Labels

WORKER_LABEL: Final = "worker"
TOTAL_PREFIX: Final = "stator_workers_"

Tick = Callable[[], None]


@dataclass(frozen=True)
class Source:
    """One input of a merge. ``slot`` is -1 for the archive; ``live`` decides whether gauges count."""

    slot: int
    live: bool
    taken: float
    families: Sequence[FamilyT]


class _Family:
    __slots__ = ("doc", "kind", "name", "policy", "samples", "sources", "unit")

    def __init__(self, name: str, kind: str, doc: str, unit: str, policy: str) -> None:
        self.name = name
        self.kind = kind
        self.doc = doc
        self.unit = unit
        self.policy = policy
        self.sources = 0
        # (sample name, labels) -> [value, timestamp, exemplar, recency]
        self.samples: dict[tuple[str, Labels], list[Any]] = {}


def _newer(a: ExemplarT | None, b: ExemplarT) -> bool:
    """True when exemplar ``b`` should replace ``a`` (the most recent wins; one without a timestamp never does)."""
    return a is None or (b[2] is not None and (a[2] is None or b[2] >= a[2]))


class Merger:
    def __init__(self, tick: Tick | None = None) -> None:
        self._tick = tick
        self._families: dict[str, _Family] = {}
        self._totals: dict[str, _Family] = {}
        self.conflicts = 0

    def add(self, source: Source) -> None:
        """Fold one source in. Raises TypeError/ValueError on malformed data; the caller drops that source."""
        for name, kind, doc, unit, policy, samples in source.families:
            family = self._families.get(name)
            if family is None:
                if kind not in ADDITIVE and not source.live:
                    continue
                family = self._families[name] = _Family(name, kind, doc, unit, policy or FALLBACK)
            elif family.kind != kind:
                self.conflicts += 1
                continue
            if kind in ADDITIVE:
                self._add_additive(family, samples)
            elif source.live:
                self._add_gauge(family, samples, source)

    def _add_additive(self, family: _Family, samples: Sequence[Any]) -> None:
        acc = family.samples
        if not acc and family.kind != "summary":  # the first source: one dict comprehension
            family.samples = {(s[0], s[1]): [s[2], s[3], s[4], 0.0] for s in samples}
            return
        created = family.name + "_created"
        quantiles = family.kind == "summary"
        tick = self._tick
        for sname, labels, value, ts, ex in samples:
            if quantiles and sname == family.name:
                continue  # a quantile sample: not mergeable
            key = (sname, labels)
            cur = acc.get(key)
            if cur is None:
                acc[key] = [value, ts, ex, 0.0]
            else:
                if sname == created:
                    if value < cur[0]:
                        cur[0] = value
                else:
                    cur[0] += value
                if ex is not None and _newer(cur[2], ex):
                    cur[2] = ex
            if tick is not None:
                tick()

    def _add_gauge(self, family: _Family, samples: Sequence[Any], source: Source) -> None:
        policy = family.policy
        acc = family.samples
        tick = self._tick
        family.sources += 1
        if policy not in ("sum", "max", "min", "mostrecent", "worker", "worker+sum") and family.sources > 1:
            return  # "first": the whole family from the first live source (slot order)
        if policy in ("worker", "worker+sum"):
            slot = str(source.slot)
            total = self._total(family) if policy == "worker+sum" else None
            for sname, labels, value, ts, ex in samples:
                acc[(sname, _with_worker(labels, slot))] = [value, ts, ex, 0.0]
                if total is not None:
                    tkey = (TOTAL_PREFIX + sname.removeprefix("process_"), labels)
                    tcur = total.samples.get(tkey)
                    if tcur is None:
                        total.samples[tkey] = [value, None, None, 0.0]
                    else:
                        tcur[0] += value
                if tick is not None:
                    tick()
            return
        for sname, labels, value, ts, ex in samples:
            key = (sname, labels)
            cur = acc.get(key)
            recency = ts if ts is not None else source.taken
            if cur is None:
                acc[key] = [value, ts, ex, recency]
            elif policy == "sum":
                cur[0] += value
            elif policy == "max":
                if value > cur[0] or cur[0] != cur[0]:  # a NaN loses to any number
                    cur[0], cur[1], cur[2] = value, ts, ex
            elif policy == "min":
                if value < cur[0] or cur[0] != cur[0]:
                    cur[0], cur[1], cur[2] = value, ts, ex
            elif policy == "mostrecent" and recency > cur[3]:
                acc[key] = [value, ts, ex, recency]
            if tick is not None:
                tick()

    def _total(self, family: _Family) -> _Family:
        total = self._totals.get(family.name)
        if total is None:
            name = TOTAL_PREFIX + family.name.removeprefix("process_")
            doc = f"{family.doc.rstrip('.')}: total over the live workers of the group."
            total = self._totals[family.name] = _Family(name, family.kind, doc, family.unit, "sum")
        return total

    def families(self) -> list[Metric]:
        """The merged families, in first-seen order, each followed by its group total when it has one."""
        out: list[Metric] = []
        for name, family in self._families.items():
            out.append(_metric(family))
            total = self._totals.get(name)
            if total is not None and total.name not in self._families:
                out.append(_metric(total))
        return out


def _with_worker(labels: Labels, slot: str) -> Labels:
    items = [item for item in labels if item[0] != WORKER_LABEL]
    items.append((WORKER_LABEL, slot))
    items.sort()
    return tuple(items)


def _metric(family: _Family) -> Metric:
    rows = [(sname, labels, cur[0], cur[1], cur[2]) for (sname, labels), cur in family.samples.items()]
    return RowsMetric(family.name, family.doc, family.kind, family.unit, rows)


def merge(sources: Sequence[Source], tick: Tick | None = None) -> list[Metric]:
    merger = Merger(tick)
    for source in sources:
        merger.add(source)
    return merger.families()


def fold(sources: Sequence[Source]) -> list[FamilyT]:
    """The additive families of ``sources`` summed, as snapshot tuples (what ``archive.snap`` holds)."""
    merger = Merger()
    for source in sources:
        merger.add(Source(source.slot, False, source.taken, source.families))
    return [
        (f.name, f.kind, f.doc, f.unit, "", [(sn, lb, cur[0], cur[1], cur[2]) for (sn, lb), cur in f.samples.items()])
        for f in merger._families.values()
    ]
