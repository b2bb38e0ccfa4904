"""Wiring registration into a :class:`~stator.service.Service` from its settings (``STATOR_REGISTRY`` and friends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stator.client import consul_client, etcd_client
from stator.http.ops import READY
from stator.roster.address import advertised_address
from stator.roster.consul import ConsulRegistrar
from stator.roster.etcd import EtcdRegistrar
from stator.roster.roster import Instance, Registrar, Roster
from stator.workers import LeaderOnly

if TYPE_CHECKING:
    from stator.service import Service


def build_registrar(service: Service) -> Registrar | None:
    """The registrar ``STATOR_REGISTRY`` selects, with its client built from the shared settings groups."""
    settings = service.settings
    roster = settings.roster
    # The service's logger, redaction, request-id header and tracing hook: registry calls look like its others.
    options = service.client_options()
    if roster.registry == "consul":
        return ConsulRegistrar(
            consul_client(settings.consul, **options),
            check=roster.check,
            check_interval=roster.check_interval,
            check_timeout=roster.check_timeout,
            ttl=roster.ttl,
            deregister_critical_after=roster.deregister_critical_after,
        )
    if roster.registry == "etcd":
        etcd = settings.etcd
        # A call slower than a third of the TTL would let the lease lapse while we wait for it: give up sooner.
        timeout = max(1.0, min(10.0, etcd.ttl / 3))
        return EtcdRegistrar(
            etcd_client(etcd, timeout=timeout, **options),
            prefix=etcd.prefix,
            ttl=etcd.ttl,
        )
    return None


def describe_instance(service: Service) -> Instance | None:
    """This instance as the registry should see it; None until the HTTP server listens."""
    settings = service.settings
    # Under an outside ASGI server (``uvicorn module:app``) the listening socket is read from the kernel; None
    # until the server has bound it (the lifespan starts first), and the roster waits for it.
    bound = service.listen_address()
    if bound is None:
        return None
    address = advertised_address(settings.service.address, bound[0])
    port = bound[1]
    ops_port = port
    meta = {"version": service.version, "run_id": service.run_id, "metrics_path": settings.metrics.path}
    if settings.ops.port is not None:
        if service.ops_address is None and service.serving:
            return None
        ops_port = service.ops_address[1] if service.ops_address else settings.ops.port
        # /metrics and /-/ready are on the ops port: Prometheus relabels __address__ with this.
        meta["metrics_port"] = str(ops_port)
    host = f"[{address}]" if ":" in address else address
    return Instance(
        id=service.instance_id,
        name=settings.service.name,
        address=address,
        port=port,
        tags=tuple(settings.service.tags),
        meta=meta,
        health_url=f"http://{host}:{ops_port}{READY}",
    )


async def _readiness(service: Service) -> tuple[bool, str]:
    report = await service.readiness.evaluate()
    if report.ready:
        return True, "ready"
    failed = [f"{c.name}: {c.error}" for c in report.checks if not c.ok]
    return False, "; ".join([report.reason or "not ready", *failed])


def setup_registration(service: Service) -> Roster | None:
    """Add the roster worker and its /monitor section to ``service`` if ``STATOR_REGISTRY`` asks for one."""
    registrar = build_registrar(service)
    if registrar is None:
        return None
    settings = service.settings.roster
    roster = Roster(
        registrar,
        lambda: describe_instance(service),
        lambda: _readiness(service),
        service.logger,
        service.metrics,
        interval=settings.interval,
        retry_initial=settings.retry_initial,
        retry_max=settings.retry_max,
        deregister_timeout=settings.deregister_timeout,
    )
    # Several worker processes of one instance: only the group's leader registers it (another takes over when
    # it dies), so the registry sees one instance, not one per worker.
    service.add_worker(roster if service.group is None else LeaderOnly(roster, service.group))
    service.add_monitor_section("registration", roster.snapshot)
    return roster
