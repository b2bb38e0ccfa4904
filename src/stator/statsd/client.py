"""StatsD-native observations with client-side aggregation: counters summed, gauges last-valued, timer /
histogram / distribution values collected, set members deduplicated — per flush window, per series.

An observation is a dict update (no formatting, no I/O); the pusher takes the window's aggregates with
:meth:`StatsdClient.take` and formats and sends them off the event loop. Calls are meant for the event loop
thread (like the rest of an asyncio service); the window is swapped there, so none is lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stator.statsd.lines import Tags

TagsArg = Mapping[str, str] | Iterable[str] | Tags | None


def make_tags(tags: TagsArg) -> Tags:
    """Normalize tags (a mapping, ``"k:v"`` strings or pairs) to sorted pairs: the form the client keys on.
    Hot paths can build them once and pass the tuple: it is then used as is."""
    if not tags:
        return ()
    if isinstance(tags, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in tags.items()))
    pairs: list[tuple[str, str]] = []
    for item in tags:
        if isinstance(item, tuple):
            pairs.append((str(item[0]), str(item[1])))
        else:
            key, _, value = str(item).partition(":")
            pairs.append((key, value))
    return tuple(sorted(pairs))


Key = tuple[str, Tags]


@dataclass(slots=True)
class Window:
    """One flush window's aggregates."""

    counters: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    values: dict[tuple[str, str, Tags], list[float]] = field(default_factory=dict)
    """(kind ``ms``/``h``/``d``, name, tags) -> observations."""
    sets: dict[Key, set[str]] = field(default_factory=dict)
    series: int = 0


class StatsdClient:
    def __init__(self, max_series: int = 10000) -> None:
        self.max_series = max_series
        self._w = Window()
        self.dropped_series = 0
        """Observations dropped because their series would have exceeded ``max_series`` in a window."""

    def _admit(self) -> bool:
        w = self._w
        if w.series >= self.max_series:
            self.dropped_series += 1
            return False
        w.series += 1
        return True

    def incr(self, name: str, value: float = 1.0, tags: TagsArg = None) -> None:
        """Add ``value`` to a counter (sent as the window's sum)."""
        key = (name, tags if tags.__class__ is tuple else make_tags(tags))
        c = self._w.counters
        v = c.get(key)
        if v is None:
            if not self._admit():
                return
            v = 0.0
        c[key] = v + value

    def decr(self, name: str, value: float = 1.0, tags: TagsArg = None) -> None:
        self.incr(name, -value, tags)

    def gauge(self, name: str, value: float, tags: TagsArg = None) -> None:
        """Set a gauge (the window's last value is sent)."""
        key = (name, tags if tags.__class__ is tuple else make_tags(tags))
        g = self._w.gauges
        if key not in g and not self._admit():
            return
        g[key] = value

    def _value(self, kind: str, name: str, value: float, tags: TagsArg) -> None:
        key = (kind, name, tags if tags.__class__ is tuple else make_tags(tags))
        values = self._w.values
        bucket = values.get(key)
        if bucket is None:
            if not self._admit():
                return
            bucket = values[key] = []
        bucket.append(value)

    def timing(self, name: str, milliseconds: float, tags: TagsArg = None) -> None:
        """A timer observation in milliseconds (``ms``)."""
        self._value("ms", name, milliseconds, tags)

    def histogram(self, name: str, value: float, tags: TagsArg = None) -> None:
        """A histogram observation (``h``; DogStatsD — plain StatsD daemons treat it as a timer)."""
        self._value("h", name, value, tags)

    def distribution(self, name: str, value: float, tags: TagsArg = None) -> None:
        """A distribution observation (``d``: aggregated server-side, global percentiles)."""
        self._value("d", name, value, tags)

    def set(self, name: str, member: object, tags: TagsArg = None) -> None:
        """Count distinct members (``s``); each distinct member is sent once per window."""
        key = (name, tags if tags.__class__ is tuple else make_tags(tags))
        sets = self._w.sets
        members = sets.get(key)
        if members is None:
            if not self._admit():
                return
            members = sets[key] = set()
        members.add(str(member))

    def take(self) -> Window:
        """The window so far, replaced by an empty one; gauges carry over (a gauge keeps its value)."""
        window = self._w
        self._w = Window(gauges=dict(window.gauges), series=len(window.gauges))
        return window
