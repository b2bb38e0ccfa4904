"""Wiring discovery onto a :class:`~stator.service.Service` from its settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stator.client import consul_client, etcd_client
from stator.config.settings import Settings
from stator.discover.consul import ConsulKVPoller
from stator.discover.etcd import EtcdPoller
from stator.discover.file import FilePoller
from stator.discover.limiter import TokenBucket
from stator.discover.poller import Poller
from stator.discover.worker import Discover

if TYPE_CHECKING:
    from stator.service import Service


def build_poller(settings: Settings, client_options: Mapping[str, Any] | None = None) -> Poller | None:
    """The poller ``settings.discover`` describes (None for ``source=none``).

    ``client_options`` are the project HTTP client's keyword arguments that make it the service's (logger,
    redaction, request-id header, tracing hook): :meth:`Service.client_options`.
    """
    d = settings.discover
    options = dict(client_options or {})
    if d.source == "consul":
        return ConsulKVPoller(
            # A fresh client per worker run: closed at shutdown (or restart), created again on the next poll.
            lambda: consul_client(settings.consul, **options),
            d.key,
            wait=d.wait,
            limiter=TokenBucket(d.limit_burst, d.limit_interval),
            max_bytes=d.max_bytes,
            request_timeout=settings.consul.timeout,
        )
    if d.source == "etcd":
        return EtcdPoller(
            lambda: etcd_client(settings.etcd, **options),
            d.key,
            wait=d.wait,
            max_bytes=d.max_bytes,
        )
    if d.source == "file":
        return FilePoller(d.key, interval=d.file_interval, max_bytes=d.max_bytes)
    return None


def setup_discovery(service: Service) -> Discover | None:
    """Create the watcher ``service.settings.discover`` asks for and run it as one of the service's workers.

    Adds the ``discovery`` section to /monitor and the ``stator_discovery_*`` metrics to the service's registry.
    Returns the watcher (give it to :class:`~stator.discover.http.ServicesEndpoint`), or None for
    ``STATOR_DISCOVER_SOURCE=none``.
    """
    settings = service.settings
    poller = build_poller(settings, service.client_options())
    if poller is None:
        return None
    discover = Discover(
        poller,
        logger=service.logger,
        registry=service.metrics,
        retry_initial=settings.discover.retry_initial,
        retry_max=settings.discover.retry_max,
    )
    service.add_worker(discover)
    service.add_monitor_section("discovery", discover.monitor)
    return discover
