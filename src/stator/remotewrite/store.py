"""The latest sample of each series, bounded by a series limit.

Series are keyed by their validated labels. A second index maps the *raw* encoded labels of a request onto the
series, so a series already held is found with one dict lookup and never decoded again; it is bounded (cleared
when it outgrows the series limit several times over, e.g. after senders changed encodings) and rebuilt on use.
Only the event loop mutates the store; readers get lists of the series objects.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from stator.remotewrite.decode import Batch, Labels, RawLabels
from stator.remotewrite.schema import STALE_NAN_BITS

_STALE: Final = struct.pack("<Q", STALE_NAN_BITS)
_ALIAS_FACTOR: Final = 4


class Series:
    __slots__ = ("labels", "metric", "timestamp_ms", "value")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.metric = dict(labels)
        self.value = math.nan
        self.timestamp_ms = -(2**63)

    @property
    def stale(self) -> bool:
        """The latest sample is Prometheus's staleness marker (worked out when read: writes are the hot path)."""
        return is_stale(self.value)


@dataclass(slots=True)
class Applied:
    stored: int = 0
    """Series updated with a newer sample."""
    new_series: int = 0
    refused_series: int = 0
    """New series refused by the series limit."""
    refused_samples: int = 0
    out_of_order: int = 0
    """Samples not newer than the one held (kept the held one)."""


def is_stale(value: float) -> bool:
    return value != value and struct.pack("<d", value) == _STALE


class Store:
    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self._series: dict[Labels, Series] = {}
        self._aliases: dict[RawLabels, Series] = {}
        self._by_name: dict[str, dict[Labels, Series]] = {}
        self.refused_total = 0

    def __len__(self) -> int:
        return len(self._series)

    @property
    def aliases(self) -> dict[RawLabels, Series]:
        """Raw labels already validated (``in`` is all :func:`~stator.remotewrite.decode.decode` asks)."""
        return self._aliases

    def apply(self, batch: Batch) -> Applied:
        out = Applied()
        aliases = self._aliases
        if len(aliases) > _ALIAS_FACTOR * self.max_series:
            aliases.clear()
        for raw, labels in batch.new.items():
            series = self._series.get(labels)
            if series is None:
                if len(self._series) >= self.max_series:
                    out.refused_series += 1
                    continue
                series = self._series[labels] = Series(labels)
                name = series.metric.get("__name__", "")
                self._by_name.setdefault(name, {})[labels] = series
                out.new_series += 1
            aliases[raw] = series
        get = aliases.get
        stored = out_of_order = refused = 0
        for raw, value, timestamp in zip(batch.keys, batch.values, batch.stamps, strict=True):
            series = get(raw)
            if series is None:  # refused by the limit
                refused += 1
                continue
            held = series.timestamp_ms
            if timestamp < held or (timestamp == held and value == series.value):
                out_of_order += timestamp < held  # a resent identical sample is not an error
                continue
            series.value = value
            series.timestamp_ms = timestamp
            stored += 1
        out.stored = stored
        out.out_of_order = out_of_order
        out.refused_samples = refused
        self.refused_total += out.refused_series
        return out

    def candidates(self, name: str | None) -> Iterable[Series]:
        """Series with metric name ``name`` (every series when None)."""
        if name is None:
            return list(self._series.values())
        return list(self._by_name.get(name, {}).values())

    def __iter__(self) -> Iterator[Series]:
        return iter(list(self._series.values()))
