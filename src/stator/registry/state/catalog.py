"""The agent's services and checks, and the catalog and health views synced from them.

Two views, as in Consul: the *agent* view (``/v1/agent/*``) changes at once; the *catalog* view (what
``/v1/catalog/*`` and ``/v1/health/*`` serve, with Create/ModifyIndex) follows through "anti-entropy": a
registration or a status change is synced immediately, an output-only change is deferred (Consul waits
``check_update_interval``) so a check whose body changes on every probe does not wake every watcher.
Node-level checks (``serfHealth``, node maintenance, checks registered without a service) belong to every
service of the node: a change to one moves every service's index, as in Consul's state store.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from stator.config.durations import format_duration_ns as duration_string
from stator.registry.model import CRITICAL, PASSING, CheckDef, ServiceDef
from stator.registry.state.watch import Watch

DEFAULT_OUTPUT_MAX: Final = 4096
CONSUL_VERSION: Final = "1.15.4"
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

    def to_json(self, node: str, create_index: int = 0, modify_index: int = 0) -> JSON:
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
            "CreateIndex": create_index,
            "ModifyIndex": modify_index,
        }


@dataclass
class CatalogEntry:
    """A synced record: the view it was synced with and its Raft-like indexes."""

    view: JSON
    create_index: int
    modify_index: int


@dataclass
class RegisterResult:
    started: list[str]
    stopped: list[str]


def _lower(name: str) -> str:
    return name.lower()


class Catalog:
    """The agent's services and checks and the catalog synced from them. Drive from one event loop thread."""

    def __init__(
        self,
        watch: Watch,
        *,
        node_name: str = "stator-registry",
        datacenter: str = "dc1",
        node_address: str = "127.0.0.1",
        node_id: str | None = None,
        dcsa_min: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watch = watch
        self.node_name = node_name
        self.datacenter = datacenter
        self.node_address = node_address
        self.node_id = node_id or str(uuid.uuid4())
        # DeregisterCriticalServiceAfter below this is raised to it (Consul: check_deregister_interval_min, 1m).
        self.dcsa_min = dcsa_min
        self.clock = clock
        self.observers: list[Observer] = []
        # Per-service-name index (lower-cased name): bumped by any change to an instance or its checks.
        self._svc_index: dict[str, int] = {}

        self.agent_services: dict[str, ServiceDef] = {}
        self.agent_checks: dict[str, AgentCheck] = {}
        self._cat_services: dict[str, CatalogEntry] = {}
        self._cat_checks: dict[str, CatalogEntry] = {}
        self._node_index = 0
        self._serf_check: CatalogEntry | None = None
        # Called with checks that turned critical or went away (sessions bound to them end).
        self.on_checks_failed: Callable[[list[str]], object] | None = None
        self._bootstrap()

    # ------------------------------------------------------------------------------------------ indexes

    def _notify_changed(self) -> None:
        for obs in self.observers:
            obs.changed()

    def _failed(self, check_ids: list[str]) -> None:
        if check_ids and self.on_checks_failed is not None:
            self.on_checks_failed(check_ids)

    def check_status(self, check_id: str) -> str | None:
        """The status of a check of this node in the catalog, None when there is no such check."""
        if check_id == "serfHealth" and self._serf_check is not None:
            return str(self._serf_check.view["Status"])
        check = self.agent_checks.get(check_id)
        return check.status if check is not None else None

    def _touch(self, table: str, idx: int) -> None:
        self.watch.tables[table] = idx
        self.watch.notify((table,))

    def catalog_max_index(self) -> int:
        t = self.watch.tables
        return max(t["nodes"], t["services"], t["checks"], 1)

    def services_index(self) -> int:
        return self.watch.table("services")

    def checks_index(self) -> int:
        return self.watch.table("checks")

    def service_index(self, name: str) -> int:
        """Per-service index (Consul 1.0.7+); a service with no instances answers with the catalog's max."""
        idx = self._svc_index.get(_lower(name))
        return idx if idx is not None else self.catalog_max_index()

    # ------------------------------------------------------------------------------------------ node

    def _bootstrap(self) -> None:
        # The node, its serfHealth check and the "consul" service exist from the start, as on a real server.
        idx = self.watch.bump()
        self._node_index = idx
        self._touch("nodes", idx)
        self._serf_check = CatalogEntry(
            {
                "Node": self.node_name,
                "CheckID": "serfHealth",
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
            },
            idx,
            idx,
        )
        self._touch("checks", idx)
        consul = ServiceDef(id="consul", name="consul", port=8300)
        self._cat_services["consul"] = CatalogEntry(self._service_view(consul), idx, idx)
        self._svc_index["consul"] = idx
        self._touch("services", idx)

    def node_tagged_addresses(self) -> dict[str, str]:
        try:
            v6 = isinstance(ipaddress.ip_address(self.node_address), ipaddress.IPv6Address)
        except ValueError:
            v6 = False
        fam = "ipv6" if v6 else "ipv4"
        a = self.node_address
        return {"lan": a, f"lan_{fam}": a, "wan": a, f"wan_{fam}": a}

    def node_meta(self) -> dict[str, str]:
        return {"consul-network-segment": ""}

    def node_json(self) -> JSON:
        return {
            "ID": self.node_id,
            "Node": self.node_name,
            "Address": self.node_address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.node_tagged_addresses(),
            "Meta": self.node_meta(),
            "CreateIndex": self._node_index,
            "ModifyIndex": self._node_index,
        }

    def node_meta_matches(self, filters: dict[str, str]) -> bool:
        meta = self.node_meta()
        return all(meta.get(k) == v for k, v in filters.items())

    # ------------------------------------------------------------------------------------------ views

    @staticmethod
    def _service_view(svc: ServiceDef) -> JSON:
        """The catalog's NodeService (without indexes): what health/catalog serve and what change-detection
        compares, so a re-registration with the same definition writes nothing."""
        view: JSON = {}
        if svc.kind:
            view["Kind"] = svc.kind
        view.update(
            {
                "ID": svc.id,
                "Service": svc.name,
                "Tags": list(svc.tags),
                "Address": svc.address,
            }
        )
        if svc.tagged_addresses:
            view["TaggedAddresses"] = {k: dict(v) for k, v in svc.tagged_addresses.items()}
        view.update(
            {
                "Meta": dict(svc.meta),
                "Port": svc.port,
            }
        )
        if svc.socket_path:
            view["SocketPath"] = svc.socket_path
        view.update(
            {
                "Weights": {"Passing": svc.weights[0], "Warning": svc.weights[1]},
                "EnableTagOverride": svc.enable_tag_override,
                "Proxy": svc.proxy if svc.proxy is not None else {"Mode": "", "MeshGateway": {}, "Expose": {}},
                "Connect": svc.connect if svc.connect is not None else {},
                "PeerName": "",
            }
        )
        if svc.locality is not None:
            view["Locality"] = svc.locality
        return view

    def agent_service_json(self, svc: ServiceDef) -> JSON:
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
        out["Datacenter"] = self.datacenter
        return out

    def agent_service_with_hash(self, service_id: str) -> tuple[str, JSON] | None:
        svc = self.agent_services.get(service_id)
        if svc is None:
            return None
        out = self.agent_service_json(svc)
        digest = hashlib.blake2b(orjson.dumps(out, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
        out["ContentHash"] = digest
        return digest, out

    # ------------------------------------------------------------------------------------------ agent writes

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
        self.agent_services[svc.id] = svc
        new_ids: list[str] = []
        for i, d in enumerate(checks):
            cid = d.check_id
            if not cid:
                cid = f"service:{svc.id}"
                if len(checks) > 1:
                    cid += f":{i + 1}"
            name = d.name or f"Service '{svc.name}' check"
            status = d.status or CRITICAL
            output = ""
            if cid in previous:
                # Re-registration keeps what the check last said; it wins over a Status in the body.
                status, output = previous[cid]
            old = self.agent_checks.get(cid)
            if old is not None and old.service_id != svc.id:
                self._drop_catalog_check(cid)
            self.agent_checks[cid] = AgentCheck(
                check_id=cid,
                name=name,
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
        self._sync_service(svc.id)
        for cid in stopped:
            self._drop_catalog_check(cid, svc.name)
        self._notify_changed()
        started = new_ids + [c for c, ch in self.agent_checks.items() if ch.service_id == svc.id and c not in keep]
        for obs in self.observers:
            if stopped:
                obs.checks_stopped(stopped)
            obs.checks_started(started)
        return RegisterResult(started=started, stopped=stopped)

    def deregister_service(self, service_id: str) -> bool:
        svc = self.agent_services.pop(service_id, None)
        if svc is None:
            return False
        stopped = [cid for cid, c in self.agent_checks.items() if c.service_id == service_id]
        for cid in stopped:
            del self.agent_checks[cid]
        idx = self.watch.bump()
        lname = _lower(svc.name)
        if self._cat_services.pop(service_id, None) is not None:
            self._touch("services", idx)
        for cid in stopped:
            if self._cat_checks.pop(cid, None) is not None:
                self._touch("checks", idx)
        if any(_lower(e.view["Service"]) == lname for e in self._cat_services.values()):
            self._svc_index[lname] = idx
        else:
            # The last instance is gone: the service index disappears, readers fall back to the catalog max.
            self._svc_index.pop(lname, None)
            self._touch("services", idx)
        self.watch.notify(("svc", lname))
        self.watch.notify(("services",))
        self.watch.notify(("agentsvc", service_id))
        self._notify_changed()
        for obs in self.observers:
            if stopped:
                obs.checks_stopped(stopped)
        self._failed(stopped)
        return True

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
        self._sync_checks([check_id])
        self._notify_changed()
        if status == CRITICAL:
            self._failed([check_id])
        return "synced"

    def sync_check(self, check_id: str) -> None:
        """Flush a deferred output change to the catalog (no-op if nothing differs)."""
        if check_id in self.agent_checks:
            self._sync_checks([check_id])

    # ------------------------------------------------------------------------------------------ anti-entropy

    def _sync_service(self, service_id: str) -> None:
        svc = self.agent_services[service_id]
        view = self._service_view(svc)
        old = self._cat_services.get(service_id)
        changes: list[tuple[str, JSON]] = []
        checks = [c for c in self.agent_checks.values() if c.service_id == service_id]
        svc_changed = old is None or old.view != view
        check_views = {c.check_id: c.to_json(self.node_name) for c in checks}
        for cid, cview in check_views.items():
            entry = self._cat_checks.get(cid)
            if entry is None or entry.view != _strip_indexes(cview):
                changes.append((cid, cview))
        old_name = _lower(old.view["Service"]) if old is not None else None
        if not svc_changed and not changes:
            return
        idx = self.watch.bump()
        lname = _lower(svc.name)
        if svc_changed:
            create = old.create_index if old is not None else idx
            self._cat_services[service_id] = CatalogEntry(view, create, idx)
            self._touch("services", idx)
        for cid, cview in changes:
            entry = self._cat_checks.get(cid)
            create = entry.create_index if entry is not None else idx
            self._cat_checks[cid] = CatalogEntry(_strip_indexes(cview), create, idx)
            self._touch("checks", idx)
        self._svc_index[lname] = idx
        self.watch.notify(("svc", lname))
        if svc_changed:
            self.watch.notify(("services",))
            self.watch.notify(("agentsvc", service_id))
        if old_name is not None and old_name != lname:
            # The instance was renamed: its old service loses it.
            if any(_lower(e.view["Service"]) == old_name for e in self._cat_services.values()):
                self._svc_index[old_name] = idx
            else:
                self._svc_index.pop(old_name, None)
            self.watch.notify(("svc", old_name))

    def _sync_checks(self, check_ids: Iterable[str]) -> None:
        changes: list[tuple[str, JSON]] = []
        for cid in check_ids:
            check = self.agent_checks[cid]
            view = _strip_indexes(check.to_json(self.node_name))
            entry = self._cat_checks.get(cid)
            if entry is None or entry.view != view:
                changes.append((cid, view))
        if not changes:
            return
        idx = self.watch.bump()
        names: set[str] = set()
        for cid, view in changes:
            entry = self._cat_checks.get(cid)
            create = entry.create_index if entry is not None else idx
            self._cat_checks[cid] = CatalogEntry(view, create, idx)
            names.add(_lower(view["ServiceName"]))
        self._touch("checks", idx)
        self._services_touched(names, idx)

    def _services_touched(self, names: set[str], idx: int) -> None:
        """Move the index of the services whose health changed; a node-level check ("" service) touches all."""
        if "" in names:
            names = names | set(self._svc_index)
        for name in names:
            if name in self._svc_index:
                self._svc_index[name] = idx
            self.watch.notify(("svc", name))

    def _drop_catalog_check(self, check_id: str, service_name: str | None = None) -> None:
        entry = self._cat_checks.pop(check_id, None)
        if entry is None:
            return
        idx = self.watch.bump()
        self._touch("checks", idx)
        name = _lower(service_name if service_name is not None else entry.view["ServiceName"])
        self._services_touched({name}, idx)

    # ------------------------------------------------------------------------------------------ checks

    def register_check(self, check_id: str, name: str, service_id: str, definition: CheckDef, status: str) -> None:
        """``PUT /v1/agent/check/register``: a check of its own, on the node or bound to a service. A check with
        the same ID is replaced, keeping its status and output."""
        svc = self.agent_services.get(service_id) if service_id else None
        old = self.agent_checks.get(check_id)
        output = ""
        if old is not None:
            status, output = old.status, old.output
            if old.service_id != service_id:
                self._drop_catalog_check(check_id)
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
        self._sync_checks([check_id])
        self._notify_changed()
        for obs in self.observers:
            obs.checks_started([check_id])

    def deregister_check(self, check_id: str) -> bool:
        check = self.agent_checks.pop(check_id, None)
        if check is None:
            return False
        self._drop_catalog_check(check_id, check.service_name)
        self._notify_changed()
        for obs in self.observers:
            obs.checks_stopped([check_id])
        self._failed([check_id])
        return True

    def _add_maintenance(self, check_id: str, name: str, reason: str, svc: ServiceDef | None) -> None:
        self.agent_checks[check_id] = AgentCheck(
            check_id=check_id,
            name=name,
            service_id=svc.id if svc is not None else "",
            service_name=svc.name if svc is not None else "",
            service_tags=list(svc.tags) if svc is not None else [],
            definition=CheckDef(notes=reason),
            status=CRITICAL,
            kind="maintenance",
        )
        self._sync_checks([check_id])
        self._notify_changed()
        self._failed([check_id])

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

    # ------------------------------------------------------------------------------------------ catalog reads

    def catalog_services(
        self, node_meta: dict[str, str] | None = None, predicate: Callable[[JSON], bool] | None = None
    ) -> tuple[int, dict[str, list[str]]]:
        out: dict[str, dict[str, None]] = {}
        if not node_meta or self.node_meta_matches(node_meta):
            for entry in self._cat_services.values():
                if predicate is not None and not predicate(self._service_row(entry)):
                    continue
                tags = out.setdefault(entry.view["Service"], {})
                for tag in entry.view["Tags"]:
                    tags[tag] = None
        return self.services_index(), {name: list(tags) for name, tags in out.items()}

    def _instances(self, name: str, tags: list[str] | None, node_meta: dict[str, str] | None) -> list[CatalogEntry]:
        lname = _lower(name)
        if node_meta and not self.node_meta_matches(node_meta):
            return []
        found = []
        wanted = [t.lower() for t in tags] if tags is not None else []
        for entry in self._cat_services.values():
            if _lower(entry.view["Service"]) != lname:
                continue
            have = {t.lower() for t in entry.view["Tags"]}
            if all(t in have for t in wanted):
                found.append(entry)
        found.sort(key=lambda e: str(e.view["ID"]))
        return found

    def _service_row(self, entry: CatalogEntry) -> JSON:
        """A catalog ``ServiceNode`` row."""
        v = entry.view
        row: JSON = {
            "ID": self.node_id,
            "Node": self.node_name,
            "Address": self.node_address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.node_tagged_addresses(),
            "NodeMeta": self.node_meta(),
            "ServiceKind": v.get("Kind", ""),
            "ServiceID": v["ID"],
            "ServiceName": v["Service"],
            "ServiceTags": list(v["Tags"]),
            "ServiceAddress": v["Address"],
        }
        if "TaggedAddresses" in v:
            row["ServiceTaggedAddresses"] = v["TaggedAddresses"]
        row.update(
            {
                "ServiceWeights": v["Weights"],
                "ServiceMeta": v["Meta"],
                "ServicePort": v["Port"],
                "ServiceSocketPath": v.get("SocketPath", ""),
                "ServiceEnableTagOverride": v["EnableTagOverride"],
                "ServiceProxy": v["Proxy"],
                "ServiceConnect": v["Connect"],
                "ServicePeerName": "",
                "CreateIndex": entry.create_index,
                "ModifyIndex": entry.modify_index,
            }
        )
        return row

    def catalog_service(
        self, name: str, tags: list[str] | None = None, node_meta: dict[str, str] | None = None
    ) -> tuple[int, list[JSON]]:
        out = [self._service_row(e) for e in self._instances(name, tags, node_meta)]
        return self.service_index(name), out

    @staticmethod
    def _row(entry: CatalogEntry) -> JSON:
        return {**entry.view, "CreateIndex": entry.create_index, "ModifyIndex": entry.modify_index}

    def _checks_for(self, service_id: str) -> list[JSON]:
        """The checks that decide an instance's health: the node's own, then the service's, each by CheckID."""
        node_rows = [self._row(e) for e in self._cat_checks.values() if e.view["ServiceID"] == ""]
        if self._serf_check is not None:
            node_rows.append(self._row(self._serf_check))
        node_rows.sort(key=lambda r: str(r["CheckID"]))
        rows = [self._row(e) for e in self._cat_checks.values() if e.view["ServiceID"] == service_id]
        rows.sort(key=lambda r: str(r["CheckID"]))
        return node_rows + rows

    def all_checks(self) -> list[JSON]:
        rows = [self._row(e) for e in self._cat_checks.values()]
        if self._serf_check is not None:
            rows.append(self._row(self._serf_check))
        rows.sort(key=lambda r: (str(r["ServiceID"]), str(r["CheckID"])))
        return rows

    def health_checks(self, name: str, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        """``/v1/health/checks/:service``: the checks of the service's instances (not the node's)."""
        out: list[JSON] = []
        for entry in self._instances(name, None, node_meta):
            out.extend(
                sorted(
                    (self._row(e) for e in self._cat_checks.values() if e.view["ServiceID"] == entry.view["ID"]),
                    key=lambda r: str(r["CheckID"]),
                )
            )
        return self.service_index(name), out

    def health_state(self, state: str, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        """``/v1/health/state/:state``: every check in that state (``any``: all of them)."""
        rows: list[JSON] = []
        if not node_meta or self.node_meta_matches(node_meta):
            rows = [r for r in self.all_checks() if state == "any" or r["Status"] == state]
        return self.checks_index(), rows

    def health_node(self, node: str) -> tuple[int, list[JSON]]:
        """``/v1/health/node/:node``: the node's checks, node-level and service ones."""
        rows = self.all_checks() if node == self.node_name else []
        return self.checks_index(), rows

    def catalog_nodes(self, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        rows: list[JSON] = []
        if not node_meta or self.node_meta_matches(node_meta):
            n = self.node_json()
            rows = [{**n, "Meta": n["Meta"]}]
        return self.watch.table("nodes"), rows

    def catalog_node(self, node: str) -> tuple[int, JSON | None]:
        """``/v1/catalog/node/:node``: the node and its services by ID (``null`` for an unknown node)."""
        index = max(self.watch.tables["nodes"], self.watch.tables["services"], 1)
        if node != self.node_name:
            return index, None
        services = {sid: self._row(e) for sid, e in sorted(self._cat_services.items())}
        return index, {"Node": self.node_json(), "Services": services}

    def health_service(
        self,
        name: str,
        tags: list[str] | None = None,
        node_meta: dict[str, str] | None = None,
        passing: bool = False,
    ) -> tuple[int, list[JSON]]:
        node = self.node_json()
        out = []
        for entry in self._instances(name, tags, node_meta):
            checks = self._checks_for(entry.view["ID"])
            if passing and any(c["Status"] != PASSING for c in checks):
                continue
            service = {**entry.view, "CreateIndex": entry.create_index, "ModifyIndex": entry.modify_index}
            out.append({"Node": node, "Service": service, "Checks": checks})
        return self.service_index(name), out


def _strip_indexes(view: JSON) -> JSON:
    return {k: v for k, v in view.items() if k not in ("CreateIndex", "ModifyIndex")}
