"""Building upstream clients for a service from its settings: ``UpstreamHub(service).get(name, **options)``.

The hub is what ``Service.upstream(name)`` delegates to: one per service, it owns that service's upstream
clients (one per name, built on first use and reused), their discovery workers, one metrics collector for all of
them and the ``upstreams`` section of ``/monitor``. :class:`ServiceLike` is everything it needs from the service.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient, consul_client, etcd_client
from stator.config.settings import Settings, UpstreamSettings
from stator.discover.limiter import TokenBucket
from stator.lifecycle.worker import Worker
from stator.logs import Logger
from stator.upstream.balancer import make_balancer
from stator.upstream.breaker import CircuitBreaker
from stator.upstream.client import Instancer, Upstream
from stator.upstream.consul import ConsulHealthPoller, decode_health
from stator.upstream.etcd import EtcdPrefixPoller, decode_roster
from stator.upstream.instancer import InstanceWatcher, StaticInstancer
from stator.upstream.instances import parse_static
from stator.upstream.limiter import ClientRateLimiter
from stator.upstream.outlier import OutlierDetector
from stator.upstream.retry import RetryBudget, RetryPolicy
from stator.upstream.telemetry import UpstreamCollector


class TracingLike(Protocol):
    @property
    def tracer(self) -> trace.Tracer: ...

    @property
    def client_hook(self) -> Callable[..., Any]: ...


class ServiceLike(Protocol):
    """What building upstreams needs from a :class:`~stator.service.Service`."""

    @property
    def settings(self) -> Settings: ...

    @property
    def logger(self) -> Logger: ...

    @property
    def metrics(self) -> CollectorRegistry: ...

    @property
    def tracing(self) -> TracingLike | None: ...

    def client_options(self) -> dict[str, Any]: ...

    def add_worker(self, worker: Worker) -> None: ...

    def add_monitor_section(self, name: str, section: Callable[[], Any]) -> None: ...


def resolve_settings(settings: Settings, options: dict[str, Any]) -> UpstreamSettings:
    """The service's upstream settings with ``options`` (field names, values as in the environment or typed)
    applied and validated: a bad option raises pydantic's ValidationError naming it."""
    if not options:
        return settings.upstream
    return UpstreamSettings.model_validate({**settings.upstream.model_dump(), **options})


def discovery_kind(settings: Settings, cfg: UpstreamSettings) -> str:
    if cfg.discovery != "auto":
        return cfg.discovery
    if cfg.instances:
        return "static"
    registry = settings.roster.registry
    return registry if registry in ("consul", "etcd") else "consul"


class UpstreamHub:
    """The upstream clients of one service."""

    def __init__(self, service: ServiceLike) -> None:
        self.service = service
        self.upstreams: dict[str, Upstream] = {}
        service.metrics.register(UpstreamCollector(lambda: self.upstreams.values()))
        service.add_monitor_section("upstreams", self.monitor)

    def get(
        self,
        name: str,
        *,
        instancer: Instancer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        **options: Any,
    ) -> Upstream:
        """The client of upstream ``name``, built on the first call from the service's ``STATOR_UPSTREAM_*``
        settings overridden by ``options`` (any :class:`~stator.config.settings.UpstreamSettings` field).

        ``instancer`` replaces discovery (anything following :class:`~stator.upstream.client.Instancer`);
        ``transport`` is httpx's (tests, custom connection handling). A second call with the same name returns
        the same client; options given then must match nothing or raise (one client, one policy).
        """
        existing = self.upstreams.get(name)
        if existing is not None:
            if options or instancer is not None or transport is not None:
                raise ValueError(f"upstream {name!r} already exists; options apply only when it is first built")
            return existing
        if not name or "/" in name:
            raise ValueError(f"bad upstream name {name!r}")
        upstream = build_upstream(self.service, name, instancer=instancer, transport=transport, rng=rng, **options)
        self.upstreams[name] = upstream
        return upstream

    def monitor(self) -> dict[str, Any]:
        return {name: up.monitor() for name, up in self.upstreams.items()}


class _Closer:
    """A worker that closes an upstream's connection pool when the service stops (after the HTTP drain, so
    requests still being forwarded finish first)."""

    def __init__(self, upstream: Upstream) -> None:
        self.name = f"upstream-pool:{upstream.name}"
        self.upstream = upstream

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.upstream.aclose()
            raise


def build_upstream(
    service: ServiceLike,
    name: str,
    *,
    instancer: Instancer | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    **options: Any,
) -> Upstream:
    """One upstream client for ``service`` (prefer :meth:`UpstreamHub.get`, which also exports its metrics and
    its /monitor section). Adds its discovery worker and pool closer to the service."""
    settings = service.settings
    cfg = resolve_settings(settings, options)
    logger = service.logger
    client_options = dict(service.client_options())
    tracing = service.tracing
    tracer = tracing.tracer if tracing is not None else None
    if tracing is not None:
        # The upstream makes its own CLIENT span per attempt (with the retry number and instance id), as a
        # child of one span per call; the generic hook would add a second CLIENT span per attempt.
        hook = tracing.client_hook
        client_options["hooks"] = [h for h in client_options.get("hooks", ()) if h != hook]
    http = HTTPClient(
        transport=transport,
        timeout=httpx.Timeout(cfg.try_timeout),
        limits=httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections),
        **client_options,
    )
    if instancer is None:
        instancer = _instancer(service, name, cfg)
    breaker = None
    if cfg.breaker_failure_rate > 0:
        breaker = CircuitBreaker(
            name,
            logger,
            failure_rate=cfg.breaker_failure_rate,
            min_calls=cfg.breaker_min_calls,
            window=cfg.breaker_window,
            open_for=cfg.breaker_open,
            half_open_calls=cfg.breaker_half_open_calls,
        )
    limiter = ClientRateLimiter(cfg.limit_rate, cfg.limit_burst, cfg.limit_max_wait) if cfg.limit_rate > 0 else None
    upstream = Upstream(
        name,
        instancer,
        http,
        logger=logger,
        balancer=make_balancer(cfg.balancer, rng),
        policy=RetryPolicy(
            attempts=cfg.attempts,
            try_timeout=cfg.try_timeout,
            deadline=cfg.deadline,
            backoff_initial=cfg.retry_backoff,
            backoff_max=max(cfg.retry_backoff, cfg.retry_backoff_max),
            statuses=frozenset(int(s) for s in cfg.retry_statuses),
            retry_non_idempotent=cfg.retry_non_idempotent,
        ),
        budget=RetryBudget(cfg.retry_budget_percent, cfg.retry_budget_min_per_second),
        outlier=OutlierDetector(
            name,
            logger,
            consecutive_failures=cfg.outlier_consecutive_failures,
            failure_rate=cfg.outlier_failure_rate,
            min_requests=cfg.outlier_min_requests,
            interval=cfg.outlier_interval,
            base_ejection=cfg.outlier_base_ejection,
            max_ejection=max(cfg.outlier_base_ejection, cfg.outlier_max_ejection),
            max_ejection_percent=cfg.outlier_max_ejection_percent,
        ),
        breaker=breaker,
        limiter=limiter,
        tracer=tracer,
        rng=rng,
    )
    if isinstance(instancer, InstanceWatcher):
        service.add_worker(instancer)
    service.add_worker(_Closer(upstream))
    return upstream


def _instancer(service: ServiceLike, name: str, cfg: UpstreamSettings) -> Instancer:
    settings = service.settings
    kind = discovery_kind(settings, cfg)
    logger = service.logger
    if kind == "static":
        if not cfg.instances:
            raise ValueError(f"upstream {name!r}: static discovery needs STATOR_UPSTREAM_INSTANCES (or instances=)")
        return StaticInstancer(name, parse_static(cfg.instances, cfg.scheme), logger)
    options = service.client_options()  # registry calls: the service's logger, redaction, request ids, spans
    if kind == "consul":
        consul = settings.consul
        poller: Any = ConsulHealthPoller(
            lambda: consul_client(consul, **options),
            name,
            tag=cfg.tag,
            wait=cfg.wait,
            limiter=TokenBucket(3, 0.1),
            request_timeout=consul.timeout,
        )
        decode = decode_health(cfg.scheme)
    else:
        etcd = settings.etcd
        poller = EtcdPrefixPoller(
            lambda: etcd_client(etcd, **options), f"{etcd.prefix.rstrip('/')}/{name}/", wait=cfg.wait
        )
        decode = decode_roster(cfg.scheme)
    return InstanceWatcher(name, poller, decode, logger, retry_initial=cfg.retry_initial, retry_max=cfg.retry_max)
