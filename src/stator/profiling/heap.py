"""Heap profiles from tracemalloc, started on demand and stopped afterwards.

tracemalloc taxes every allocation of the process while it traces (pyperformance: 3.3x CPU), so it runs only
while a ``heap?seconds=N`` / ``allocs?seconds=N`` request waits: what was allocated during those N seconds and is
still live at the end is the heap profile (Go's ``heap?seconds=N`` delta). When something else already traces
(``PYTHONTRACEMALLOC``), the profile is the growth between a snapshot at the start and one at the end, and
tracing is left as it was.

CPython keeps no per-site count of *all* allocations, only of live ones, so ``allocs`` reports, per allocation
site, the peak of its live allocations over snapshots taken during the window (``alloc_space``/``alloc_objects``:
a lower bound of what the site allocated, which catches transient growth that ``heap`` at the end misses),
beside the live totals at the end.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stator.profiling.pprof import ProfileBuilder

FRAMES = 32
_OWN_FILES = (tracemalloc.__file__, __file__)

Frames = tuple[tuple[str, int], ...]  # (filename, line), leaf first


class HeapBusy(Exception):
    """Another heap profile is running (tracemalloc is process-wide)."""


@dataclass
class SiteStats:
    size: int = 0
    count: int = 0
    peak_size: int = 0
    peak_count: int = 0


class HeapProfiler:
    """One heap profile at a time per profiler; ``wait`` is how the window is spent (disconnect-aware)."""

    def __init__(self, frames: int = FRAMES) -> None:
        self.frames = frames
        self._lock = asyncio.Lock()
        self.active = False
        self.profiles = 0

    async def profile(self, seconds: float, *, allocs: bool, wait: Callable[[float], Awaitable[bool]]) -> bytes:
        """Trace for ``seconds`` (``wait(s)`` returns False when the client left early) and encode the profile."""
        if self._lock.locked():
            raise HeapBusy("a heap profile is already running")
        async with self._lock:
            self.active = True
            try:
                return await self._profile(seconds, allocs, wait)
            finally:
                self.active = False
                self.profiles += 1

    async def _profile(self, seconds: float, allocs: bool, wait: Callable[[float], Awaitable[bool]]) -> bytes:
        owned = not tracemalloc.is_tracing()
        start_ns = time.time_ns()
        baseline: dict[Frames, tuple[int, int]] = {}
        if owned:
            tracemalloc.start(self.frames)
        else:
            baseline = _by_site(tracemalloc.take_snapshot())
        sites: dict[Frames, SiteStats] = {}
        try:
            # allocs: snapshots during the window to find each site's peak; heap: only the end matters
            steps = max(1, min(20, round(seconds / 0.25))) if allocs else 1
            for step in range(steps):
                if not await wait(seconds / steps):
                    break
                if allocs and step < steps - 1:
                    _update(sites, _by_site(await asyncio.to_thread(tracemalloc.take_snapshot)), baseline, final=False)
            final = tracemalloc.take_snapshot()
        finally:
            if owned:
                tracemalloc.stop()
        _update(sites, await asyncio.to_thread(_by_site, final), baseline, final=True)
        return await asyncio.to_thread(self._encode, sites, allocs, start_ns)

    def _encode(self, sites: dict[Frames, SiteStats], allocs: bool, start_ns: int) -> bytes:
        types = [("alloc_objects", "count"), ("alloc_space", "bytes")] if allocs else []
        types += [("inuse_objects", "count"), ("inuse_space", "bytes")]
        builder = ProfileBuilder(
            types,
            period_type=("space", "bytes"),
            period=1,
            time_nanos=start_ns,
            duration_nanos=time.time_ns() - start_ns,
            default_sample_type="alloc_space" if allocs else "inuse_space",
            comments=[f"tracemalloc, {self.frames} frames; allocations live at the end of the window"],
        )
        names: dict[tuple[str, int], str] = {}
        for frames, stats in sites.items():
            if not (stats.size or stats.peak_size):
                continue
            values = [stats.peak_count, stats.peak_size] if allocs else []
            values += [stats.count, stats.size]
            stack = [(_function(names, filename, line), filename, line, 0) for filename, line in frames]
            builder.add_stack(stack, values)
        return builder.gzipped()


def _by_site(snapshot: tracemalloc.Snapshot) -> dict[Frames, tuple[int, int]]:
    """(size, count) per allocation traceback, leaf first, without tracemalloc's and our own frames."""
    out: dict[Frames, tuple[int, int]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = tuple((f.filename, f.lineno) for f in reversed(stat.traceback))  # most recent call first
        if not frames or frames[0][0] in _OWN_FILES:
            continue
        out[frames] = (stat.size, stat.count)
    return out


def _update(
    sites: dict[Frames, SiteStats],
    snapshot: dict[Frames, tuple[int, int]],
    baseline: dict[Frames, tuple[int, int]],
    *,
    final: bool,
) -> None:
    for frames, (size, count) in snapshot.items():
        base_size, base_count = baseline.get(frames, (0, 0))
        size, count = max(0, size - base_size), max(0, count - base_count)
        stats = sites.get(frames)
        if stats is None:
            stats = sites[frames] = SiteStats()
        stats.peak_size = max(stats.peak_size, size)
        stats.peak_count = max(stats.peak_count, count)
        if final:
            stats.size, stats.count = size, count


def _function(cache: dict[tuple[str, int], str], filename: str, line: int) -> str:
    """tracemalloc keeps file and line only: name the function from the source (linecache), once per site."""
    key = (filename, line)
    name = cache.get(key)
    if name is None:
        name = cache[key] = _enclosing_function(filename, line)
    return name


def _enclosing_function(filename: str, line: int) -> str:
    import linecache
    import re

    pattern = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_][A-Za-z0-9_]*)|^\s*class\s+([A-Za-z_][A-Za-z0-9_]*)")
    lines = linecache.getlines(filename)
    if not lines or line > len(lines):
        return f"{filename}:{line}"
    indent = len(lines[line - 1]) - len(lines[line - 1].lstrip())
    for text in reversed(lines[: line - 1]):
        stripped = text.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        this = len(text) - len(stripped)
        if this < indent:
            match = pattern.match(text)
            if match:
                name = match.group(1) or match.group(2)
                return f"{_module(filename)}.{name}"
            indent = this
    return f"{_module(filename)}.<module>"


def _module(filename: str) -> str:
    import os

    base = os.path.basename(filename)
    return base[:-3] if base.endswith(".py") else base
