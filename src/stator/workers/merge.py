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

import functools
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from stator.metrics.render import RowsMetric, format_head, split_head
from stator.workers.policy import ADDITIVE, FALLBACK
from stator.workers.snapshot import ExemplarT, FamilyT

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
    """A merged family as columns; ``index`` maps a series head to its row (a dict of strings to ints: nothing
    the garbage collector tracks)."""

    __slots__ = ("doc", "exemplars", "heads", "index", "kind", "name", "plain", "policy", "recency", "sources",
                 "stamps", "unit", "values")  # fmt: skip

    def __init__(self, name: str, kind: str, doc: str, unit: str, policy: str, plain: bool) -> None:
        self.name = name
        self.kind = kind
        self.doc = doc
        self.unit = unit
        self.policy = policy
        self.plain = plain
        self.sources = 0
        self.index: dict[Any, int] = {}
        self.heads: list[Any] = []
        self.values: list[float] = []
        self.stamps: list[float | None] = []
        self.exemplars: list[ExemplarT | None] = []
        self.recency: list[float] = []

    def append(self, head: Any, value: float, stamp: float | None, exemplar: ExemplarT | None, recency: float) -> None:
        self.index[head] = len(self.heads)
        self.heads.append(head)
        self.values.append(value)
        self.stamps.append(stamp)
        self.exemplars.append(exemplar)
        self.recency.append(recency)

    def take(
        self, heads: list[Any], values: list[float], stamps: list[Any], exemplars: list[Any], taken: float = 0.0
    ) -> bool:
        """The first source's columns as they are (copied: sources stay untouched): the bulk of a merge at C speed.
        False (nothing taken) when the source repeats a series: the row-by-row merge then handles it."""
        numbers = array("d", values).tolist()  # a non-number: TypeError, the source is rejected (nothing changed)
        index = dict(zip(heads, range(len(heads)), strict=True))
        if len(index) != len(heads):
            return False
        self.index = index
        self.values = numbers
        self.heads = list(heads)
        self.stamps = list(stamps)
        self.exemplars = list(exemplars)
        self.recency = [taken if stamp is None else stamp for stamp in stamps]
        return True

    def metric(self) -> RowsMetric:
        return RowsMetric(self.name, self.doc, self.kind, self.unit, self.heads, self.values, self.stamps,
                          self.exemplars, self.plain)  # fmt: skip


def _newer(a: ExemplarT | None, b: ExemplarT) -> bool:
    """True when exemplar ``b`` should replace ``a`` (the most recent wins; one without a timestamp never does)."""
    return a is None or (b[2] is not None and (a[2] is None or b[2] >= a[2]))


def _sample_name(head: Any) -> str:
    return head.partition("{")[0] if isinstance(head, str) else str(head[0])


class Merger:
    def __init__(self, tick: Tick | None = None) -> None:
        self._tick = tick
        self._families: dict[str, _Family] = {}
        self._totals: dict[str, _Family] = {}
        self.conflicts = 0

    def add(self, source: Source) -> None:
        """Fold one source in. Raises TypeError/ValueError on malformed data; the caller drops that source."""
        for name, kind, doc, unit, policy, plain, heads, values, stamps, exemplars in source.families:
            if not (len(heads) == len(values) == len(stamps) == len(exemplars)):
                raise ValueError(f"family {name!r} has columns of different lengths")
            family = self._families.get(name)
            if family is None:
                if kind not in ADDITIVE and not source.live:
                    continue
                family = self._families[name] = _Family(name, kind, doc, unit, policy or FALLBACK, plain)
            elif family.kind != kind or family.plain != plain:
                self.conflicts += 1
                continue
            if kind in ADDITIVE:
                self._add_additive(family, heads, values, stamps, exemplars)
            elif source.live:
                self._add_gauge(family, source, heads, values, stamps, exemplars)

    def _add_additive(
        self, family: _Family, heads: list[Any], values: list[float], stamps: list[Any], exemplars: list[Any]
    ) -> None:
        if not family.heads and family.kind != "summary" and family.take(heads, values, stamps, exemplars):
            return
        numbers = array("d", values).tolist()  # every value a number, checked in C (TypeError: source rejected)
        index = family.index
        get = index.get
        acc = family.values
        created = family.name + "_created"
        size = len(created)
        plain = family.plain
        quantiles = family.kind == "summary"
        tick = self._tick
        for head, value, stamp, ex in zip(heads, numbers, stamps, exemplars, strict=True):
            if quantiles and _sample_name(head) == family.name:
                continue  # a quantile sample: not mergeable
            row = get(head)
            if row is None:
                family.append(head, value, stamp, ex, 0.0)
            else:
                if (
                    (head.startswith(created) and (len(head) == size or head[size] == "{"))
                    if plain
                    else (head[0] == created)
                ):
                    if value < acc[row]:
                        acc[row] = value
                else:
                    acc[row] += value
                if ex is not None and _newer(family.exemplars[row], ex):
                    family.exemplars[row] = ex
            if tick is not None:
                tick()

    def _add_gauge(
        self,
        family: _Family,
        source: Source,
        heads: list[Any],
        values: list[float],
        stamps: list[Any],
        exemplars: list[Any],
    ) -> None:
        policy = family.policy
        index = family.index
        acc = family.values
        tick = self._tick
        family.sources += 1
        if policy not in ("sum", "max", "min", "mostrecent", "worker", "worker+sum") and family.sources > 1:
            return  # "first": the whole family from the first live source (slot order)
        first = not family.heads and policy in ("sum", "max", "min", "mostrecent", "first")
        if first and family.take(heads, values, stamps, exemplars, source.taken):
            return
        if policy in ("worker", "worker+sum"):
            slot = str(source.slot)
            total = self._total(family) if policy == "worker+sum" else None
            for head, value, stamp, ex in zip(heads, values, stamps, exemplars, strict=True):
                value = float(value)
                family.append(_with_worker(head, slot), value, stamp, ex, 0.0)
                if total is not None:
                    thead = _renamed(head, TOTAL_PREFIX + family.name.removeprefix("process_"), family.name)
                    row = total.index.get(thead)
                    if row is None:
                        total.append(thead, value, None, None, 0.0)
                    else:
                        total.values[row] += value
                if tick is not None:
                    tick()
            return
        for head, value, stamp, ex in zip(heads, values, stamps, exemplars, strict=True):
            value = float(value)
            row = index.get(head)
            recency = stamp if stamp is not None else source.taken
            if row is None:
                family.append(head, value, stamp, ex, recency)
            else:
                cur = acc[row]
                if (
                    (policy == "max" and (value > cur or cur != cur))  # a NaN loses to any number
                    or (policy == "min" and (value < cur or cur != cur))
                    or (policy == "mostrecent" and recency > family.recency[row])
                ):
                    acc[row] = value
                    family.stamps[row] = stamp
                    family.exemplars[row] = ex
                    family.recency[row] = recency
                elif policy == "sum":
                    acc[row] = cur + value
            if tick is not None:
                tick()

    def _total(self, family: _Family) -> _Family:
        total = self._totals.get(family.name)
        if total is None:
            name = TOTAL_PREFIX + family.name.removeprefix("process_")
            doc = f"{family.doc.rstrip('.')}: total over the live workers of the group."
            total = _Family(name, family.kind, doc, family.unit, "sum", family.plain)
            self._totals[family.name] = total
        return total

    def families(self) -> list[Metric]:
        """The merged families, in first-seen order, each followed by its group total when it has one."""
        out: list[Metric] = []
        for name, family in self._families.items():
            out.append(family.metric())
            total = self._totals.get(name)
            if total is not None and total.name not in self._families:
                out.append(total.metric())
        return out


@functools.lru_cache(maxsize=1 << 15)
def _with_worker(head: Any, slot: str) -> Any:
    """``head`` with the label ``worker="<slot>"`` (replacing one it had), labels kept sorted. Cached: a worker's
    series repeat scrape after scrape, and parsing labels is the costly part of a per-worker family."""
    if isinstance(head, str):
        sname, pairs = split_head(head)
        items = [(k, v) for k, v in pairs if k != WORKER_LABEL]
        items.append((WORKER_LABEL, slot))
        items.sort()
        return format_head(sname, items)
    sname, labels = head
    items = [item for item in labels if item[0] != WORKER_LABEL]
    items.append((WORKER_LABEL, slot))
    items.sort()
    return (sname, tuple(items))


def _renamed(head: Any, new: str, old: str) -> Any:
    """``head`` of a sample of family ``old`` as the same sample of family ``new``."""
    if isinstance(head, str):
        return new + head[len(old) :] if head.startswith(old) else head
    sname, labels = head
    return (new + sname[len(old) :] if sname.startswith(old) else sname, labels)


def merge(sources: Sequence[Source], tick: Tick | None = None) -> list[Metric]:
    merger = Merger(tick)
    for source in sources:
        merger.add(source)
    return merger.families()


def fold(sources: Sequence[Source]) -> list[FamilyT]:
    """The additive families of ``sources`` summed, as snapshot columns (what ``archive.snap`` holds)."""
    merger = Merger()
    for source in sources:
        merger.add(Source(source.slot, False, source.taken, source.families))
    return [
        (f.name, f.kind, f.doc, f.unit, "", f.plain, f.heads, f.values, f.stamps, f.exemplars)
        for f in merger._families.values()
    ]
