"""What the receiver reports about itself: metrics in the service's registry and rate-limited warning logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REASONS = (
    "bad_snappy",
    "bad_protobuf",
    "invalid_labels",
    "too_large",
    "unsupported_media_type",
    "bad_version",
    "rate_limited",
    "series_limit",
)


class Log(Protocol):
    def debug(self, msg: str, /, **kv: Any) -> None: ...
    def warning(self, msg: str, /, **kv: Any) -> None: ...


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry, store_size: Callable[[], int], max_series: int) -> None:
        self.requests = Counter(
            "stator_remote_write_requests",
            "Remote-write requests received, by outcome (ok or the rejection reason).",
            ["outcome"],
            registry=registry,
        )
        self.samples = Counter(
            "stator_remote_write_samples_received", "Samples received in accepted requests.", registry=registry
        )
        self.series = Counter(
            "stator_remote_write_series_received",
            "TimeSeries entries received in accepted requests.",
            registry=registry,
        )
        self.new_series = Counter("stator_remote_write_series_created", "Series added to the store.", registry=registry)
        self.ignored = Counter(
            "stator_remote_write_samples_ignored",
            "Samples received but not stored: out_of_order (older than the one held), native_histogram,"
            " series_limit (their series was refused).",
            ["reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "stator_remote_write_rejected",
            "Requests rejected, by reason (nothing of a rejected request is stored, except under series_limit).",
            ["reason"],
            registry=registry,
        )
        self.metadata = Counter(
            "stator_remote_write_metadata_received", "Metric metadata entries received.", registry=registry
        )
        self.decode_seconds = Histogram(
            "stator_remote_write_decode_seconds",
            "Time to decompress, parse and validate one request.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.body_bytes = Histogram(
            "stator_remote_write_request_bytes",
            "Compressed size of accepted request bodies.",
            buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
            registry=registry,
        )
        stored = Gauge("stator_remote_write_series", "Series held in the store.", registry=registry)
        stored.set_function(lambda: float(store_size()))
        limit = Gauge("stator_remote_write_series_limit", "Most series the store holds.", registry=registry)
        limit.set(max_series)
        for reason in REASONS:  # every reason present from the start: rate() needs the zero
            self.rejected.labels(reason)
        for reason in ("out_of_order", "native_histogram", "series_limit"):
            self.ignored.labels(reason)
        self.requests.labels("ok")


class RejectionLog:
    """One warning per rejection reason per ``interval``, carrying how many were not logged in between."""

    def __init__(self, logger: Log, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def rejected(self, reason: str, message: str, **fields: Any) -> None:
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        self.logger.warning("remote write rejected", reason=reason, error=message, suppressed=suppressed, **fields)
