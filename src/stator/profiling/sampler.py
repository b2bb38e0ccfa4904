"""The sampler: one thread that, ``rate`` times a second, records every other thread's stack with the CPU time
that thread used since the previous tick, the wall time elapsed, and the asyncio task (hence request) it ran.

One sampler per :class:`~stator.profiling.Profiler`, shared by everything that wants samples: each consumer is
a *sink* subscribed for as long as it needs them (an on-demand ``profile?seconds=N``, the continuous windows).
The thread starts with the first subscriber and ends with the last, so two concurrent profiles never mean two
samplers, and nobody pays when nobody listens.

A Python sampler needs the GIL to look at stacks, so ticks land at GIL hand-offs: against a CPU-bound thread the
achieved rate is at most ~1/``sys.getswitchinterval()`` (200 Hz). The real rate is measured and reported
(``period`` and ``duration`` in the profile, the ``stator_profiler_*`` metrics), never the requested one.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Protocol

from stator.profiling.attribution import RequestEntry, RequestTable
from stator.profiling.pprof import ProfileBuilder

MAX_DEPTH = 64
CODE_CACHE_MAX = 100_000
SAMPLE_TYPES = (("cpu-samples", "count"), ("cpu", "nanoseconds"), ("wall-samples", "count"), ("wall", "nanoseconds"))
TRUNCATED = ("<truncated>", "", 0, 0)

try:  # the table asyncio.current_task(loop) reads; asyncio's C tasks (so uvloop's too) keep it up to date
    from asyncio.tasks import _current_tasks as _CURRENT_TASKS  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters: no task attribution, thread labels only
    _CURRENT_TASKS = {}

StackKey = tuple[int, ...]  # flattened (id(code), line) pairs, leaf first
SampleKey = tuple[StackKey, str, str, int]  # stack, thread name, task name, id(request entry) or 0
FrameInfo = tuple[str, str, int, int]  # name, filename, line, first line


@dataclass(slots=True)
class Record:
    key: SampleKey
    entry: RequestEntry | None
    cpu_ns: int
    wall_ns: int


@dataclass(slots=True)
class Tick:
    """One sampling pass: when, and one record per sampled thread."""

    wall_ns: int
    records: list[Record]
    codes: dict[int, tuple[CodeType, str]]


class Sink(Protocol):
    def add(self, tick: Tick) -> None:
        """Called on the sampler thread for every tick while subscribed (keep it short)."""


class Aggregate:
    """Samples summed by (stack, thread, task, request) over a span of time; encodes to pprof."""

    def __init__(self, table: RequestTable, rate: float) -> None:
        self.table = table
        self.rate = rate
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.ticks = 0
        self.values: dict[SampleKey, list[int]] = {}
        self.entries: dict[int, RequestEntry] = {}
        # stack key -> frames, plus the code objects, kept alive so that their ids stay unique while referenced
        self.stacks: dict[StackKey, tuple[list[FrameInfo], tuple[CodeType, ...]]] = {}
        self.sampler_cpu_ns = 0
        self._lock = threading.Lock()

    def add(self, tick: Tick) -> None:
        with self._lock:
            self.ticks += 1
            self.end_ns = tick.wall_ns
            for record in tick.records:
                key = record.key
                values = self.values.get(key)
                if values is None:
                    stack = key[0]
                    if stack not in self.stacks:
                        self.stacks[stack] = _resolve(stack, tick.codes)
                    values = self.values[key] = [0, 0, 0, 0]
                    if record.entry is not None:
                        self.entries[key[3]] = record.entry
                if record.cpu_ns > 0:
                    values[0] += 1
                    values[1] += record.cpu_ns
                values[2] += 1
                values[3] += record.wall_ns

    def close(self, end_ns: int | None = None) -> None:
        with self._lock:
            self.end_ns = max(self.end_ns, end_ns if end_ns is not None else time.time_ns())

    @property
    def duration_ns(self) -> int:
        return max(0, (self.end_ns or time.time_ns()) - self.start_ns)

    @property
    def achieved_hz(self) -> float:
        duration = self.duration_ns
        return self.ticks * 1e9 / duration if duration else 0.0

    def span_ids(self) -> set[str]:
        return {str(e[0]["span_id"]) for e in self.entries.values() if e[0].get("span_id")}

    def builder(self) -> ProfileBuilder:
        with self._lock:
            duration = self.duration_ns
            period = round(duration / self.ticks) if self.ticks else round(1e9 / self.rate)
            builder = ProfileBuilder(
                SAMPLE_TYPES,
                period_type=("wall", "nanoseconds"),
                period=period,
                time_nanos=self.start_ns,
                duration_nanos=duration,
                default_sample_type="cpu",
                comments=[
                    f"stator sampler: requested {self.rate:g} Hz, achieved {self.achieved_hz:.1f} Hz"
                    f" over {self.ticks} ticks",
                ],
            )
            request_labels = {eid: self.table.labels(entry) for eid, entry in self.entries.items()}
            for (stack, thread, task, eid), values in self.values.items():
                frames = self.stacks[stack][0]
                labels: dict[str, str | int] = {"thread": thread}
                if task:
                    labels["task"] = task
                if eid:
                    labels.update(request_labels[eid])
                builder.add_stack(frames, values, labels)
            return builder

    def encode(self) -> bytes:
        return self.builder().gzipped()


def _resolve(stack: StackKey, codes: dict[int, tuple[CodeType, str]]) -> tuple[list[FrameInfo], tuple[CodeType, ...]]:
    frames: list[FrameInfo] = []
    objects: list[CodeType] = []
    for i in range(0, len(stack), 2):
        cid, line = stack[i], stack[i + 1]
        if cid == 0:
            frames.append(TRUNCATED)
            continue
        code, name = codes[cid]
        objects.append(code)
        frames.append((name, code.co_filename, line, code.co_firstlineno))
    return frames, tuple(objects)


class Sampler:
    """The sampling thread (see the module docstring)."""

    def __init__(
        self,
        table: RequestTable,
        rate: float,
        *,
        max_depth: int = MAX_DEPTH,
        name: str = "stator-profiler",
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not 0 < rate <= 1000:
            raise ValueError("rate must be in (0, 1000] Hz")
        self.table = table
        self.rate = rate
        self.max_depth = max_depth
        self.name = name
        self.on_error = on_error
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._codes: dict[int, tuple[CodeType, str]] = {}
        self._clocks: dict[int, int] = {}
        self._last_cpu: dict[int, int] = {}
        # what the metrics and /-/monitor show
        self.ticks = 0
        self.records = 0
        self.cpu_seconds = 0.0  # the sampler thread's own CPU time, all runs
        self.running_seconds = 0.0  # wall time the thread ran, all runs (finished runs)
        self.started_threads = 0
        self.achieved_hz = 0.0  # over the last second of sampling
        self.errors = 0
        self._run_started: float | None = None

    # -- subscriptions -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def subscribe(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = [*self._sinks, sink]
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name, daemon=True)
                self.started_threads += 1
                self._thread.start()

    def unsubscribe(self, sink: Sink) -> None:
        """Stop feeding ``sink``; once this returns it gets no more ticks. The last one stops the thread."""
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]
            if not self._sinks:
                self._stop.set()

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._sinks = []
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        interval = 1.0 / self.rate
        # Jittered intervals (mean 1/rate): a fixed period phase-locks with periodic work (the GIL's 5 ms switch
        # interval, a loop alternating tasks) and attributes all of it to whichever task runs at that phase.
        jitter = random.Random()
        began = time.monotonic()
        self._run_started = began
        cpu0 = time.thread_time()
        window_start, window_ticks = began, 0
        last_ns = time.perf_counter_ns()
        next_at = began
        try:
            while not stop.is_set():
                next_at += interval * (0.5 + jitter.random())
                delay = next_at - time.monotonic()
                if delay > 0:
                    if stop.wait(delay):
                        break
                else:
                    next_at = time.monotonic()  # fell behind (GIL contention): never burst to catch up
                now_ns = time.perf_counter_ns()
                try:
                    tick = self._tick(now_ns - last_ns)
                except Exception as exc:  # a sampler bug must not take the process down; it is counted
                    self.errors += 1
                    if self.on_error is not None:
                        self.on_error(exc)
                    last_ns = now_ns
                    continue
                last_ns = now_ns
                with self._lock:
                    sinks = self._sinks
                    for sink in sinks:
                        sink.add(tick)
                self.ticks += 1
                window_ticks += 1
                now = time.monotonic()
                if now - window_start >= 1.0:
                    self.achieved_hz = window_ticks / (now - window_start)
                    window_start, window_ticks = now, 0
                    self.cpu_seconds += time.thread_time() - cpu0
                    cpu0 = time.thread_time()
        finally:
            self.cpu_seconds += time.thread_time() - cpu0
            self.running_seconds += time.monotonic() - began
            self._run_started = None
            self.achieved_hz = 0.0

    def busy_seconds(self) -> float:
        """Wall seconds the sampler has been running, including the current run."""
        started = self._run_started
        return self.running_seconds + (time.monotonic() - started if started is not None else 0.0)

    def _tick(self, elapsed_ns: int) -> Tick:
        wall_ns = time.time_ns()
        frames = sys._current_frames()
        own = threading.get_ident()
        running: dict[int, asyncio.Task[Any]] = {}
        for current in list(_CURRENT_TASKS.values()):
            frame = getattr(current.get_coro(), "cr_frame", None)
            if frame is not None:
                running[id(frame)] = current
        active = self.table.active
        threads: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]  # ident -> Thread
        codes = self._codes
        if len(codes) > CODE_CACHE_MAX:
            codes = self._codes = {}
        clocks, last_cpu = self._clocks, self._last_cpu
        records: list[Record] = []
        max_depth = self.max_depth
        for ident, top in frames.items():
            if ident == own:
                continue
            stack: list[int] = []
            task: asyncio.Task[Any] | None = None
            f: FrameType | None = top
            depth = 0
            while f is not None:
                if depth < max_depth:
                    code = f.f_code
                    cid = id(code)
                    if cid not in codes:
                        codes[cid] = (code, _name(f, code))
                    stack.append(cid)
                    stack.append(f.f_lineno or 0)
                elif depth == max_depth:
                    stack.append(0)
                    stack.append(0)
                    if not running or task is not None:
                        break
                if running and task is None:
                    task = running.get(id(f))
                f = f.f_back
                depth += 1
            cpu_ns = 0
            clock = clocks.get(ident)
            try:
                if clock is None:
                    clock = clocks[ident] = time.pthread_getcpuclockid(ident)
                    last_cpu[ident] = time.clock_gettime_ns(clock)
                else:
                    now_cpu = time.clock_gettime_ns(clock)
                    before = last_cpu.get(ident, now_cpu)
                    cpu_ns = now_cpu - before if now_cpu >= before else now_cpu
                    last_cpu[ident] = now_cpu
            except (OSError, OverflowError):  # the thread ended between the two reads
                clocks.pop(ident, None)
                last_cpu.pop(ident, None)
            thread = threads.get(ident)
            thread_name = thread.name if thread is not None else f"thread-{ident}"
            entry = active.get(task) if task is not None else None
            key = (tuple(stack), thread_name, task.get_name() if task is not None else "", id(entry) if entry else 0)
            records.append(Record(key, entry, cpu_ns, elapsed_ns))
        if len(clocks) > len(frames) + 8:
            for ident in [i for i in clocks if i not in frames]:
                clocks.pop(ident, None)
                last_cpu.pop(ident, None)
        self.records += len(records)
        return Tick(wall_ns, records, codes)


def _name(frame: FrameType, code: CodeType) -> str:
    module = frame.f_globals.get("__name__")
    qualname = getattr(code, "co_qualname", code.co_name)
    return f"{module}.{qualname}" if isinstance(module, str) else qualname
