"""Profiling: pprof endpoints (CPU/wall with per-request labels, heap, task and thread dumps), continuous
profiling in a bounded in-memory ring, and Pyroscope push. See docs/profiling.md."""

from stator.profiling.app import ProfilingApp
from stator.profiling.attribution import RequestTable, TaskTagger, new_entry
from stator.profiling.profiler import ContinuousProfiler, Profiler, ProfilingHost, install

__all__ = [
    "ContinuousProfiler",
    "Profiler",
    "ProfilingApp",
    "ProfilingHost",
    "RequestTable",
    "TaskTagger",
    "install",
    "new_entry",
]
