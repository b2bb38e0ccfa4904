"""``disk_usage_*{path}``: size, available, used bytes and used ratio of the filesystems holding the given paths.

Definitions follow ``df``: ``size`` is the whole filesystem, ``available`` what an unprivileged user can still
write (it excludes blocks reserved for root), ``used`` is size minus free, and ``used_ratio`` is
used / (used + available) — ``df``'s Use%, which reaches 1 when users can no longer write even though the
reserved blocks are free.

A path that cannot be read (missing, permission, stale mount) drops only that path's series; it is logged once
when it starts failing and once when it recovers, not on every scrape. A path that hangs is the guard's job
(time budget).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from stator.logs import Logger


class DiskCollector:
    def __init__(self, paths: Sequence[str], logger: Logger) -> None:
        self.paths = list(dict.fromkeys(paths))  # de-duplicated, order kept
        self.logger = logger
        self._failing: set[str] = set()
        self._lock = threading.Lock()  # guards may overlap (a late run and a new one): keep the set consistent

    def collect(self) -> list[Metric]:
        size = GaugeMetricFamily(
            "disk_usage_size_bytes", "Size of the filesystem holding the path.", labels=["path"], unit="bytes"
        )
        available = GaugeMetricFamily(
            "disk_usage_available_bytes",
            "Bytes an unprivileged user can still write on the filesystem holding the path.",
            labels=["path"],
            unit="bytes",
        )
        used = GaugeMetricFamily(
            "disk_usage_used_bytes", "Bytes in use on the filesystem holding the path.", labels=["path"], unit="bytes"
        )
        ratio = GaugeMetricFamily(
            "disk_usage_used_ratio",
            "used / (used + available), as df's Use%: 1 means users cannot write any more.",
            labels=["path"],
            unit="ratio",
        )
        for path in self.paths:
            try:
                st = os.statvfs(path)
            except OSError as exc:
                self._failed(path, exc)
                continue
            self._ok(path)
            total = st.f_blocks * st.f_frsize
            avail = st.f_bavail * st.f_frsize
            in_use = (st.f_blocks - st.f_bfree) * st.f_frsize
            size.add_metric([path], total)
            available.add_metric([path], avail)
            used.add_metric([path], in_use)
            if in_use + avail > 0:  # pseudo filesystems report 0 blocks: a ratio would be 0/0
                ratio.add_metric([path], in_use / (in_use + avail))
        return [size, available, used, ratio]

    def _failed(self, path: str, exc: OSError) -> None:
        with self._lock:
            first = path not in self._failing
            self._failing.add(path)
        if first:
            self.logger.warning(
                "disk usage unavailable, path left out", path=path, error=f"{type(exc).__name__}: {exc}"
            )

    def _ok(self, path: str) -> None:
        with self._lock:
            recovered = path in self._failing
            self._failing.discard(path)
        if recovered:
            self.logger.info("disk usage available again", path=path)
