"""``process_*``: CPU, memory, file descriptors, start time and threads of this process.

Names, types and help texts are prometheus_client's ``ProcessCollector`` ones, so dashboards built for it (and
for the Go client, which uses the same names) work unchanged; ``process_threads`` is added (OS threads: the
interpreter's plus those of C extensions). Unlike prometheus_client, families carry their OpenMetrics unit.

Linux reads ``/proc/self/stat``; elsewhere CPU time comes from ``os.times()``, the fd limit from ``getrlimit`` and
what cannot be measured is left out rather than reported as 0.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

try:
    import resource
except ImportError:  # pragma: no cover - not Unix
    resource = None  # type: ignore[assignment]

PAGESIZE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - every Unix has it
        return 100.0


def _boot_time(proc: str) -> float | None:
    try:
        with open(os.path.join(proc, "stat"), "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class ProcessCollector:
    def __init__(self, proc: str = "/proc", pid: str = "self") -> None:
        self._dir = os.path.join(proc, pid)
        self._ticks = _ticks()
        self._btime = _boot_time(proc)

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        stat = self._read_stat()
        if stat is not None:
            # Fields after the ")" closing the command name; parts[0] is field 3 (state) in proc(5).
            utime, stime = float(stat[11]) / self._ticks, float(stat[12]) / self._ticks
            out.append(
                _gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(stat[20]), "bytes")
            )
            out.append(
                _gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    float(stat[21]) * PAGESIZE,
                    "bytes",
                )
            )
            if self._btime is not None:
                out.append(
                    _gauge(
                        "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        float(stat[19]) / self._ticks + self._btime,
                        "seconds",
                    )
                )
            out.append(_cpu(utime + stime))
            out.append(_gauge("process_threads", "Number of OS threads in the process.", float(stat[17])))
        else:
            times = os.times()
            out.append(_cpu(times.user + times.system))
        try:
            open_fds = len(os.listdir(os.path.join(self._dir, "fd")))
        except OSError:
            pass
        else:
            out.append(_gauge("process_open_fds", "Number of open file descriptors.", float(open_fds)))
        if resource is not None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            limit = float("inf") if soft == resource.RLIM_INFINITY else float(soft)
            out.append(_gauge("process_max_fds", "Maximum number of open file descriptors.", limit))
        return out

    def _read_stat(self) -> list[bytes] | None:
        try:
            with open(os.path.join(self._dir, "stat"), "rb") as f:
                return f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            return None


def _gauge(name: str, doc: str, value: float, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, unit=unit)


def _cpu(seconds: float) -> CounterMetricFamily:
    return CounterMetricFamily(
        "process_cpu_seconds", "Total user and system CPU time spent in seconds.", value=seconds, unit="seconds"
    )
