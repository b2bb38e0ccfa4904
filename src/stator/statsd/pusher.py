"""The flush worker: every ``STATOR_STATSD_FLUSH`` (aligned to the wall clock, like veneur), take the client's
window and the registry's changes, format them, pack datagrams and send them — all off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stator.statsd.bridge import Observations, RegistryBridge
from stator.statsd.client import StatsdClient, Window
from stator.statsd.lines import (
    Format,
    Tags,
    counter_line,
    gauge_lines,
    metric_name,
    pack,
    rate_text,
    tag_suffix,
    value_lines,
)
from stator.statsd.transport import Transport

HISTOGRAM_KIND = {"timer": "ms", "histogram": "h", "distribution": "d"}


class Log(Protocol):
    def warning(self, msg: str, /, **kv: Any) -> None: ...
    def info(self, msg: str, /, **kv: Any) -> None: ...


class PusherMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.datagrams = Counter(
            "stator_statsd_datagrams_sent", "Datagrams handed to the agent's socket.", registry=registry
        )
        self.bytes = Counter("stator_statsd_bytes_sent", "Bytes of the datagrams sent.", registry=registry)
        self.dropped = Counter(
            "stator_statsd_datagrams_dropped",
            "Datagrams not sent, by reason: refused (no agent listening), unreachable, resolve, buffer_full, error.",
            ["reason"],
            registry=registry,
        )
        self.lines_dropped = Counter(
            "stator_statsd_lines_dropped",
            "Lines not sent: oversize (longer than the datagram limit), series_limit (client window full).",
            ["reason"],
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "stator_statsd_flush_seconds",
            "Time to collect, format and send one flush (off the event loop).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.failed = Counter(
            "stator_statsd_flushes_failed",
            "Flushes that could not be formatted (a collector raised); that window is lost.",
            registry=registry,
        )
        self.last_flush = Gauge(
            "stator_statsd_last_flush_timestamp_seconds", "Unix time of the last flush.", registry=registry
        )
        for reason in ("refused", "unreachable", "resolve", "buffer_full", "error"):
            self.dropped.labels(reason)
        for reason in ("oversize", "series_limit"):
            self.lines_dropped.labels(reason)


class StatsdPusher:
    def __init__(
        self,
        client: StatsdClient,
        transport: Transport,
        *,
        fmt: Format,
        prefix: str = "",
        tags: Tags = (),
        flush: float = 10.0,
        max_packet: int = 1432,
        histogram: str = "auto",
        bridge: RegistryBridge | None = None,
        registry: CollectorRegistry | None = None,
        logger: Log | None = None,
    ) -> None:
        self.client = client
        self.transport = transport
        self.fmt: Format = fmt
        self.prefix = prefix
        self.tags = tags
        self.flush_interval = flush
        self.max_packet = max_packet
        self.histogram_kind = HISTOGRAM_KIND.get(histogram) or ("d" if fmt == "dogstatsd" else "ms")
        self.bridge = bridge
        self.logger = logger
        self.metrics = PusherMetrics(registry)
        self._names: dict[tuple[str, Tags], tuple[str, str]] = {}
        self._series_dropped_seen = 0
        self.flushes = 0
        self.sent_total = 0
        self.dropped_total = 0
        self._was_failing = False
        self._last_failure: str | None = None

    @property
    def name(self) -> str:
        return "statsd"

    async def run(self) -> None:
        try:
            while True:
                now = time.time()
                await asyncio.sleep(self.flush_interval - (now % self.flush_interval))
                window = self.client.take()  # on the loop: no observation straddles two windows
                await asyncio.to_thread(self.flush, window)
        except asyncio.CancelledError:
            # Shutdown: send what the last window gathered (non-blocking sends: this cannot hang).
            self.flush(self.client.take())
            self.transport.close()
            raise

    # -- formatting ----------------------------------------------------------------------------------------

    def _name(self, name: str, tags: Tags) -> tuple[str, str]:
        key = (name, tags)
        cached = self._names.get(key)
        if cached is None:
            all_tags = (*self.tags, *tags) if self.tags else tags
            cached = (metric_name(self.prefix, name, all_tags, self.fmt), tag_suffix(all_tags, self.fmt))
            if len(self._names) > 100_000:
                self._names.clear()
            self._names[key] = cached
        return cached

    def lines(self, window: Window, obs: Observations | None) -> Iterator[str]:
        fmt = self.fmt
        limit = self.max_packet
        for (name, tags), value in window.counters.items():
            line_name, suffix = self._name(name, tags)
            yield counter_line(line_name, value, suffix)
        for (name, tags), value in window.gauges.items():
            line_name, suffix = self._name(name, tags)
            yield from gauge_lines(line_name, value, suffix, fmt)
        for (kind, name, tags), values in window.values.items():
            line_name, suffix = self._name(name, tags)
            yield from value_lines(line_name, values, kind, suffix, fmt, limit)
        for (name, tags), members in window.sets.items():
            line_name, suffix = self._name(name, tags)
            for member in members:
                yield f"{line_name}:{member}|s{suffix}"
        if obs is None:
            return
        for name, tags, value in obs.counters:
            line_name, suffix = self._name(name, tags)
            yield counter_line(line_name, value, suffix)
        for name, tags, value in obs.gauges:
            line_name, suffix = self._name(name, tags)
            yield from gauge_lines(line_name, value, suffix, fmt)
        kind = self.histogram_kind
        for name, tags, by_rate in obs.values:
            line_name, suffix = self._name(name, tags)
            for power, values in sorted(by_rate.items()):
                yield from value_lines(line_name, values, kind, suffix, fmt, limit, rate_text(power) if power else "")

    def flush(self, window: Window) -> None:
        """Format and send one window (runs in a worker thread; never raises)."""
        started = time.perf_counter()
        try:
            obs = self.bridge.collect() if self.bridge is not None else None
            datagrams, oversize = pack(self.lines(window, obs), self.max_packet)
        except Exception as exc:  # a broken collector must not stop the pushes
            error = f"{type(exc).__name__}: {exc}"
            if self.logger is not None and error != self._last_failure:  # once per distinct failure
                self.logger.warning("statsd flush failed", error=error)
            self._last_failure = error
            self.metrics.failed.inc()
            return
        self._last_failure = None
        sent, nbytes, dropped = self.transport.send(datagrams)
        m = self.metrics
        m.datagrams.inc(sent)
        m.bytes.inc(nbytes)
        for reason, n in dropped.items():
            m.dropped.labels(reason).inc(n)
        if oversize:
            m.lines_dropped.labels("oversize").inc(oversize)
        series_dropped = self.client.dropped_series - self._series_dropped_seen
        if series_dropped:
            self._series_dropped_seen = self.client.dropped_series
            m.lines_dropped.labels("series_limit").inc(series_dropped)
        m.flush_seconds.observe(time.perf_counter() - started)
        m.last_flush.set(time.time())
        self.flushes += 1
        self.sent_total += sent
        self.dropped_total += sum(dropped.values())
        self._log_state(dropped)

    def _log_state(self, dropped: Tally[str]) -> None:
        failing = bool(dropped)
        if failing != self._was_failing and self.logger is not None:
            if failing:
                self.logger.warning(
                    "statsd agent not reachable: dropping datagrams",
                    addr=self.transport.addr,
                    reasons=dict(dropped),
                    error=self.transport.last_error,
                )
            else:
                self.logger.info("statsd agent reachable again", addr=self.transport.addr)
        self._was_failing = failing

    def monitor(self) -> dict[str, Any]:
        return {
            "addr": self.transport.addr,
            "format": self.fmt,
            "flush_seconds": self.flush_interval,
            "flushes": self.flushes,
            "datagrams_sent": self.sent_total,
            "datagrams_dropped": self.dropped_total,
            "last_error": self.transport.last_error,
        }
