"""Wiring the StatsD/DogStatsD push onto a service: ``STATOR_STATSD_ADDR`` and friends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from stator.config.settings import Settings
from stator.lifecycle.worker import Worker
from stator.statsd.bridge import RegistryBridge
from stator.statsd.client import StatsdClient, make_tags
from stator.statsd.pusher import Log, StatsdPusher
from stator.statsd.transport import Transport


class StatsdHost(Protocol):
    """What the push needs from the service (:class:`stator.service.Service` provides it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def logger(self) -> Log: ...

    @property
    def metrics(self) -> CollectorRegistry: ...

    def add_worker(self, worker: Worker) -> None: ...

    def add_monitor_section(self, name: str, section: Callable[[], Any]) -> None: ...


def setup_statsd(host: StatsdHost) -> StatsdClient | None:
    """Push the service's metrics to ``STATOR_STATSD_ADDR`` (None and nothing added when it is empty).

    Adds the flush worker, the ``statsd`` section of /monitor and the ``stator_statsd_*`` metrics. Returns the
    client, for StatsD-native observations (``client.timing(...)``, ``client.incr(...)``) sent with the rest.
    """
    s = host.settings.statsd
    if not s.addr:
        return None
    client = StatsdClient(s.max_series)
    pusher = StatsdPusher(
        client,
        Transport(s.addr),
        fmt=s.format,
        prefix=s.prefix,
        tags=make_tags(s.tags),
        flush=s.flush,
        max_packet=s.max_packet,
        histogram=s.histogram,
        bridge=RegistryBridge(host.metrics, s.exclude) if s.registry else None,
        registry=host.metrics,
        logger=host.logger,
    )
    host.add_worker(pusher)
    host.add_monitor_section("statsd", pusher.monitor)
    return client
