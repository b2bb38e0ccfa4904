"""The agent: services and checks registered through ``/v1/agent/*``, and its anti-entropy into the catalog.

Two views, as in Consul: the *agent* view (``/v1/agent/*``) changes at once; the catalog (:mod:`.catalog`)
follows through anti-entropy: a registration or a status change is synced immediately, an output-only change is
deferred (Consul waits ``check_update_interval``) so a check whose body changes on every probe does not wake
every watcher. The registry is a server agent: its own node, with ``serfHealth`` and the ``consul`` service,
exists from the start, and a catalog write that touches the node is followed by a full sync (which is what
Consul's periodic anti-entropy does within a minute).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from stator.config.durations import format_duration_ns as duration_string
from stator.registry.model import CRITICAL, PASSING, CheckDef, ServiceDef
from stator.registry.state.catalog import Catalog, Write
from stator.registry.state.records import Node, default_tagged_addresses, service_view

DEFAULT_OUTPUT_MAX: Final = 4096
CONSUL_VERSION: Final = "1.15.4"
SERF_CHECK: Final = "serfHealth"
MAINT_SERVICE_PREFIX: Final = "_service_maintenance:"
MAINT_NODE: Final = "_node_maintenance"
DEFAULT_SERVICE_MAINT_REASON: Final = (
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)
DEFAULT_NODE_MAINT_REASON: Final = (
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
)

JSON = dict[str, Any]


class Observer(Protocol):
    """Told about changes that need work outside the state (running checks, writing snapshots)."""

    def checks_started(self, check_ids: list[str]) -> None: ...

    def checks_stopped(self, check_ids: list[str]) -> None: ...

    def changed(self) -> None: ...


@dataclass
class AgentCheck:
    """A check as the agent holds it: definition, live status and output, critical-time bookkeeping."""

    check_id: str
    name: str
    service_id: str
    service_name: str
    service_tags: list[str]
    definition: CheckDef
    status: str
    output: str = ""
    # When the check was first *recorded* critical (probe or TTL expiry), for DeregisterCriticalServiceAfter;
    # None while not critical or while critical only by its initial status.
    critical_since: float | None = None
    # Effective reap timeout in seconds (floored), None when the check does not reap.
    reap_after: float | None = None
    # Checks the agent makes itself (maintenance) have a type of their own and no definition.
    kind: str = ""

    @property
    def type(self) -> str:
        return self.kind or self.definition.type()

    def to_json(self, node: str) -> JSON:
        """``HealthCheck`` without indexes: what ``/v1/agent/checks`` lists and what is synced."""
        d = self.definition
        return {
            "Node": node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": d.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": list(self.service_tags),
            "Type": self.type,
            "Interval": duration_string(d.interval_ns) if d.interval_ns else "",
            "Timeout": duration_string(d.timeout_ns) if d.timeout_ns else "",
            "ExposedPort": 0,
            "Definition": {},
        }


@dataclass
class RegisterResult:
    started: list[str]
    stopped: list[str]


def agent_service_json(svc: ServiceDef, datacenter: str) -> JSON:
    """``api.AgentService`` as ``/v1/agent/services`` returns it."""
    out: JSON = {}
    if svc.kind:
        out["Kind"] = svc.kind
    out.update(
        {
            "ID": svc.id,
            "Service": svc.name,
            "Tags": list(svc.tags),
            "Meta": dict(svc.meta),
            "Port": svc.port,
            "Address": svc.address,
        }
    )
    if svc.socket_path:
        out["SocketPath"] = svc.socket_path
    if svc.tagged_addresses:
        out["TaggedAddresses"] = {k: dict(v) for k, v in svc.tagged_addresses.items()}
    out["Weights"] = {"Passing": svc.weights[0], "Warning": svc.weights[1]}
    out["EnableTagOverride"] = svc.enable_tag_override
    if svc.proxy is not None:
        out["Proxy"] = svc.proxy
    if svc.connect is not None:
        out["Connect"] = svc.connect
    if svc.locality is not None:
        out["Locality"] = svc.locality
    out["Datacenter"] = datacenter
    return out


_CONSUL_SERVICE: Final = ServiceDef(id="consul", name="consul", port=8300)


class Agent:
    """The agent's services and checks, synced into the catalog. Drive from one event loop thread."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        node_name: str = "stator-registry",
        node_address: str = "127.0.0.1",
        node_id: str | None = None,
        dcsa_min: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.watch = catalog.watch
        self.node_name = node_name
        self.datacenter = catalog.datacenter
        self.node_address = node_address
        self.node_id = node_id or str(uuid.uuid4())
        # DeregisterCriticalServiceAfter below this is raised to it (Consul: check_deregister_interval_min, 1m).
        self.dcsa_min = dcsa_min
        self.clock = clock
        self.observers: list[Observer] = []
        self.agent_services: dict[str, ServiceDef] = {}
        self.agent_checks: dict[str, AgentCheck] = {}
        self.anti_entropy()

    def _notify_changed(self) -> None:
        for obs in self.observers:
            obs.changed()

    # ------------------------------------------------------------------------------------------ the node

    def node_meta(self) -> dict[str, str]:
        return {"consul-network-segment": ""}

    def own_node(self) -> Node:
        return Node(
            name=self.node_name,
            address=self.node_address,
            datacenter=self.datacenter,
            id=self.node_id,
            tagged_addresses=default_tagged_addresses(self.node_address),
            meta=self.node_meta(),
        )

    def is_own_node(self, name: str) -> bool:
        return name.lower() == self.node_name.lower()

    def _serf_view(self) -> JSON:
        return {
            "Node": self.node_name,
            "CheckID": SERF_CHECK,
            "Name": "Serf Health Status",
            "Status": PASSING,
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
        }

    def check_status(self, check_id: str) -> str | None:
        """The status of a check of this node, None when there is no such check."""
        check = self.agent_checks.get(check_id)
        if check is not None:
            return check.status
        entry = self.catalog.check(self.node_name, check_id)
        return str(entry.view["Status"]) if entry is not None else None

    def anti_entropy(self) -> None:
        """A full sync: make the catalog's record of this node exactly what the agent has (the node, its
        ``serfHealth`` check and ``consul`` service, and every agent service and check, outputs included)."""
        cat = self.catalog
        name = self.node_name
        with cat.write() as w:
            cat.ensure_node(w, self.own_node())
            services = {"consul": service_view(_CONSUL_SERVICE)}
            services.update((sid, service_view(svc)) for sid, svc in self.agent_services.items())
            checks = {SERF_CHECK: self._serf_view()}
            checks.update((cid, c.to_json(name)) for cid, c in self.agent_checks.items())
            for sid in list(cat.services_of(name)):
                if sid not in services:
                    cat.delete_service(w, name, sid)
            for cid in list(cat.checks_of(name)):
                if cid not in checks:
                    cat.delete_check(w, name, cid)
            for sid, view in services.items():
                if cat.put_service(w, name, view):
                    self.watch.notify(("agentsvc", sid))
            for view in checks.values():
                cat.put_check(w, name, view)

    # ------------------------------------------------------------------------------------------ reads

    def agent_service_json(self, svc: ServiceDef) -> JSON:
        return agent_service_json(svc, self.datacenter)

    def agent_service_with_hash(self, service_id: str) -> tuple[str, JSON] | None:
        svc = self.agent_services.get(service_id)
        if svc is None:
            return None
        out = self.agent_service_json(svc)
        digest = hashlib.blake2b(orjson.dumps(out, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
        out["ContentHash"] = digest
        return digest, out

    def catalog_max_index(self) -> int:
        return self.catalog.catalog_max_index()

    # ------------------------------------------------------------------------------------------ services

    def effective_reap_after(self, dcsa_ns: int) -> float | None:
        """DeregisterCriticalServiceAfter in seconds, floored to ``dcsa_min`` (Consul warns and raises it)."""
        if dcsa_ns <= 0:
            return None
        return max(dcsa_ns / 1e9, self.dcsa_min)

    def register_service(
        self, svc: ServiceDef, checks: list[CheckDef], replace_existing_checks: bool = False
    ) -> RegisterResult:
        """``AddService`` then the anti-entropy sync: idempotent upsert by service ID."""
        previous = {cid: (c.status, c.output) for cid, c in self.agent_checks.items()}
        moved: list[str] = []
        self.agent_services[svc.id] = svc
        new_ids: list[str] = []
        for i, d in enumerate(checks):
            cid = d.check_id
            if not cid:
                cid = f"service:{svc.id}"
                if len(checks) > 1:
                    cid += f":{i + 1}"
            status = d.status or CRITICAL
            output = ""
            if cid in previous:
                # Re-registration keeps what the check last said; it wins over a Status in the body.
                status, output = previous[cid]
            old = self.agent_checks.get(cid)
            if old is not None and old.service_id != svc.id:
                moved.append(cid)
            self.agent_checks[cid] = AgentCheck(
                check_id=cid,
                name=d.name or f"Service '{svc.name}' check",
                service_id=svc.id,
                service_name=svc.name,
                service_tags=list(svc.tags),
                definition=d,
                status=status,
                output=output,
                reap_after=self.effective_reap_after(d.dcsa_ns),
            )
            new_ids.append(cid)
        stopped: list[str] = []
        keep = set(new_ids)
        for cid, check in list(self.agent_checks.items()):
            if check.service_id != svc.id or cid in keep:
                continue
            if replace_existing_checks:
                del self.agent_checks[cid]
                stopped.append(cid)
            else:
                # Kept checks follow the service's new name and tags.
                check.service_name = svc.name
                check.service_tags = list(svc.tags)
        cat, name = self.catalog, self.node_name
        with cat.write() as w:
            for cid in moved:
                cat.delete_check(w, name, cid)
            self._sync_service(w, svc.id)
            for cid in stopped:
                cat.delete_check(w, name, cid)
        self._notify_changed()
        started = new_ids + [c for c, ch in self.agent_checks.items() if ch.service_id == svc.id and c not in keep]
        for obs in self.observers:
            if stopped:
                obs.checks_stopped(stopped)
            obs.checks_started(started)
        return RegisterResult(started=started, stopped=stopped)

    def _sync_service(self, w: Write, service_id: str) -> None:
        # The service before its checks, in one write: one new index when anything differs, none otherwise.
        cat, name = self.catalog, self.node_name
        if cat.put_service(w, name, service_view(self.agent_services[service_id])):
            self.watch.notify(("agentsvc", service_id))
        for check in self.agent_checks.values():
            if check.service_id == service_id:
                cat.put_check(w, name, check.to_json(name))

    def deregister_service(self, service_id: str) -> bool:
        svc = self.agent_services.pop(service_id, None)
        if svc is None:
            return False
        stopped = [cid for cid, c in self.agent_checks.items() if c.service_id == service_id]
        for cid in stopped:
            del self.agent_checks[cid]
        with self.catalog.write() as w:
            self.catalog.delete_service(w, self.node_name, service_id)
            self.watch.notify(("agentsvc", service_id))
        self._notify_changed()
        if stopped:
            for obs in self.observers:
                obs.checks_stopped(stopped)
        return True

    # ------------------------------------------------------------------------------------------ checks

    def set_check_status(self, check_id: str, status: str, output: str) -> str:
        """Record a check result. Returns ``"unchanged"``, ``"synced"`` (status changed: catalog updated now)
        or ``"deferred"`` (only the output changed: the catalog gets it at the next :meth:`sync_check`)."""
        check = self.agent_checks.get(check_id)
        if check is None:
            return "unchanged"
        # Critical-time tracking happens before the idempotency test, as in Consul's local state.
        if status == CRITICAL:
            if check.critical_since is None:
                check.critical_since = self.clock()
        else:
            check.critical_since = None
        if check.status == status and check.output == output:
            return "unchanged"
        if check.status == status:
            check.output = output
            self._notify_changed()
            return "deferred"
        check.status = status
        check.output = output
        self.sync_check(check_id)
        self._notify_changed()
        return "synced"

    def sync_check(self, check_id: str) -> None:
        """Flush a check's current status and output to the catalog (no-op if nothing differs)."""
        check = self.agent_checks.get(check_id)
        if check is not None:
            with self.catalog.write() as w:
                self.catalog.put_check(w, self.node_name, check.to_json(self.node_name))

    def register_check(self, check_id: str, name: str, service_id: str, definition: CheckDef, status: str) -> None:
        """``PUT /v1/agent/check/register``: a check of its own, on the node or bound to a service. A check with
        the same ID is replaced, keeping its status and output."""
        svc = self.agent_services.get(service_id) if service_id else None
        old = self.agent_checks.get(check_id)
        output = ""
        if old is not None:
            status, output = old.status, old.output
        self.agent_checks[check_id] = AgentCheck(
            check_id=check_id,
            name=name,
            service_id=service_id,
            service_name=svc.name if svc is not None else "",
            service_tags=list(svc.tags) if svc is not None else [],
            definition=definition,
            status=status or CRITICAL,
            output=output,
            reap_after=self.effective_reap_after(definition.dcsa_ns) if service_id else None,
        )
        with self.catalog.write() as w:
            if old is not None and old.service_id != service_id:
                self.catalog.delete_check(w, self.node_name, check_id)
            self.catalog.put_check(w, self.node_name, self.agent_checks[check_id].to_json(self.node_name))
        self._notify_changed()
        for obs in self.observers:
            obs.checks_started([check_id])

    def deregister_check(self, check_id: str) -> bool:
        if self.agent_checks.pop(check_id, None) is None:
            return False
        with self.catalog.write() as w:
            self.catalog.delete_check(w, self.node_name, check_id)
        self._notify_changed()
        for obs in self.observers:
            obs.checks_stopped([check_id])
        return True

    # ------------------------------------------------------------------------------------------ maintenance

    def _add_maintenance(self, check_id: str, name: str, reason: str, svc: ServiceDef | None) -> None:
        check = AgentCheck(
            check_id=check_id,
            name=name,
            service_id=svc.id if svc is not None else "",
            service_name=svc.name if svc is not None else "",
            service_tags=list(svc.tags) if svc is not None else [],
            definition=CheckDef(notes=reason),
            status=CRITICAL,
            kind="maintenance",
        )
        self.agent_checks[check_id] = check
        with self.catalog.write() as w:
            self.catalog.put_check(w, self.node_name, check.to_json(self.node_name))
        self._notify_changed()

    def set_service_maintenance(self, service_id: str, enable: bool, reason: str) -> bool:
        """Consul's Enable/DisableServiceMaintenance: a critical ``_service_maintenance:<id>`` check (enabling
        twice keeps the first reason). False when the service is unknown."""
        svc = self.agent_services.get(service_id)
        if svc is None:
            return False
        check_id = MAINT_SERVICE_PREFIX + service_id
        if enable:
            if check_id not in self.agent_checks:
                self._add_maintenance(check_id, "Service Maintenance Mode", reason or DEFAULT_SERVICE_MAINT_REASON, svc)
        elif check_id in self.agent_checks:
            self.deregister_check(check_id)
        return True

    def set_node_maintenance(self, enable: bool, reason: str) -> None:
        if enable:
            if MAINT_NODE not in self.agent_checks:
                self._add_maintenance(MAINT_NODE, "Node Maintenance Mode", reason or DEFAULT_NODE_MAINT_REASON, None)
        elif MAINT_NODE in self.agent_checks:
            self.deregister_check(MAINT_NODE)

    # ------------------------------------------------------------------------------------------ reaping

    def reap_candidates(self, now: float | None = None) -> list[str]:
        """Services with a check critical for longer than its (floored) DeregisterCriticalServiceAfter."""
        now = self.clock() if now is None else now
        out: list[str] = []
        for check in self.agent_checks.values():
            if check.reap_after is None or check.critical_since is None or not check.service_id:
                continue
            if now - check.critical_since > check.reap_after and check.service_id not in out:
                out.append(check.service_id)
        return out
