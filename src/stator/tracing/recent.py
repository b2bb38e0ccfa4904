"""The spans this instance finished recently, for the tracez page (zPages' ``/debug/tracez``, with no backend).

Per span name: a count and the last :data:`PER_BUCKET` spans of each latency bucket, and the last
:data:`PER_BUCKET` errors apart; across names, the last :data:`MAX_SPANS` spans, so the spans of one trace that
this instance saw can be put back into their parent/child tree. Everything is bounded: at most :data:`MAX_NAMES`
names (later names are counted in :attr:`RecentSpans.dropped_names`, not kept).

It is fed from the tracer's end-of-span callback, on whatever thread ended the span: each call is a few deque
appends and a dict lookup, paid only while tracing is on. Readers take copies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.trace import StatusCode

from stator.tracing.spans import LightSpan

# Latency buckets (upper bounds, seconds) as zPages draws them: [0, 1ms), [1ms, 10ms), ... [10s, inf).
BOUNDS: Final = (0.001, 0.01, 0.1, 1.0, 10.0, float("inf"))
PER_BUCKET: Final = 8
MAX_NAMES: Final = 200
MAX_SPANS: Final = 2000


@dataclass
class NameStats:
    counts: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))
    errors: int = 0
    latest: list[deque[LightSpan]] = field(default_factory=lambda: [deque(maxlen=PER_BUCKET) for _ in BOUNDS])
    failed: deque[LightSpan] = field(default_factory=lambda: deque(maxlen=PER_BUCKET))


def bucket_of(seconds: float) -> int:
    for index, bound in enumerate(BOUNDS):
        if seconds < bound:
            return index
    return len(BOUNDS) - 1


def duration(span: LightSpan) -> float:
    return ((span.end_time or span.start_time) - span.start_time) / 1e9


def is_error(span: LightSpan) -> bool:
    return span.status.status_code is StatusCode.ERROR


class RecentSpans:
    def __init__(self) -> None:
        self.names: dict[str, NameStats] = {}
        self.spans: deque[LightSpan] = deque(maxlen=MAX_SPANS)
        self.dropped_names = 0

    def add(self, span: LightSpan) -> None:
        stats = self.names.get(span.name)
        if stats is None:
            if len(self.names) >= MAX_NAMES:
                self.dropped_names += 1
                return
            stats = self.names.setdefault(span.name, NameStats())
        index = bucket_of(duration(span))
        stats.counts[index] += 1
        stats.latest[index].append(span)
        if is_error(span):
            stats.errors += 1
            stats.failed.append(span)
        self.spans.append(span)

    def trace(self, trace_id: int) -> list[LightSpan]:
        """The recent spans of one trace, in start order."""
        return sorted((s for s in list(self.spans) if s.context.trace_id == trace_id), key=lambda s: s.start_time)

    def snapshot(self) -> dict[str, Any]:
        return {name: (list(s.counts), s.errors) for name, s in list(self.names.items())}
