"""The registry's state: agent services and checks, the catalog view synced from them, the KV store, Raft-like
indexes, and the waiters of blocking queries. Pure logic on the event loop thread: no HTTP, no timers, no locks
(every mutation runs to completion between awaits, which is what makes a lost wake-up impossible).

Two views, as in Consul: the *agent* view (``/v1/agent/*``) changes at once; the *catalog* view (what
``/v1/catalog/*`` and ``/v1/health/*`` serve, with Create/ModifyIndex) follows through "anti-entropy": a
registration or a status change is synced immediately, an output-only change is deferred (Consul waits
``check_update_interval``) so a check whose body changes on every probe does not wake every watcher.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import ipaddress
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

import orjson

from stator.registry.model import CRITICAL, PASSING, CheckDef, ServiceDef
from stator.registry.wire import duration_string

DEFAULT_OUTPUT_MAX: Final = 4096
CONSUL_VERSION: Final = "1.15.4"

Topic = tuple[Hashable, ...]
JSON = dict[str, Any]


class Observer(Protocol):
    """Told about changes that need work outside the state (running checks, writing snapshots)."""

    def checks_started(self, check_ids: list[str]) -> None: ...

    def checks_stopped(self, check_ids: list[str]) -> None: ...

    def changed(self) -> None: ...


@dataclass
class KVEntry:
    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str = ""
    _json: JSON | None = field(default=None, repr=False, compare=False)
    _body: bytes | None = field(default=None, repr=False, compare=False)

    def body(self) -> bytes:
        """``[entry]`` encoded, cached: what a plain ``GET /v1/kv/<key>`` answers."""
        if self._body is None:
            self._body = orjson.dumps([self.to_json()])
        return self._body

    def to_json(self) -> JSON:
        # Entries are replaced, never mutated, so the encoded form can be cached: a thousand watchers woken by
        # one PUT all serve this same dict.
        if self._json is None:
            out: JSON = {
                "LockIndex": self.lock_index,
                "Key": self.key,
                "Flags": self.flags,
                "Value": base64.b64encode(self.value).decode() if self.value else None,
                "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index,
            }
            if self.session:
                out["Session"] = self.session
            self._json = out
        return self._json


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

    @property
    def type(self) -> str:
        return self.definition.type()

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
            "Type": d.type(),
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


class State:
    """All registry state. Construct, then drive from one event loop thread."""

    def __init__(
        self,
        *,
        node_name: str = "stator-registry",
        datacenter: str = "dc1",
        node_address: str = "127.0.0.1",
        node_id: str | None = None,
        dcsa_min: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self.datacenter = datacenter
        self.node_address = node_address
        self.node_id = node_id or str(uuid.uuid4())
        # DeregisterCriticalServiceAfter below this is raised to it (Consul: check_deregister_interval_min, 1m).
        self.dcsa_min = dcsa_min
        self.clock = clock
        self.observers: list[Observer] = []
        self.shutting_down = False

        self._index = 0
        # Table indexes, as in Consul's state store: the index of the last write to each table.
        self._tables: dict[str, int] = {"nodes": 0, "services": 0, "checks": 0, "kvs": 0}
        # Per-service-name index (lower-cased name): bumped by any change to an instance or its checks.
        self._svc_index: dict[str, int] = {}

        self.agent_services: dict[str, ServiceDef] = {}
        self.agent_checks: dict[str, AgentCheck] = {}
        self._cat_services: dict[str, CatalogEntry] = {}
        self._cat_checks: dict[str, CatalogEntry] = {}
        self._node_index = 0
        self._serf_check: CatalogEntry | None = None

        self._kv: dict[str, KVEntry] = {}
        self._kv_keys: list[str] = []
        self._tombstones: dict[str, tuple[int, float]] = {}
        self._tomb_keys: list[str] = []

        self._waiters: dict[Topic, set[asyncio.Future[None]]] = {}
        self._kv_prefix_topics: dict[str, int] = {}
        self._waiter_count = 0

        self._bootstrap()

    # ------------------------------------------------------------------------------------------ indexes

    @property
    def index(self) -> int:
        return self._index

    def _bump(self) -> int:
        self._index += 1
        return self._index

    def catalog_max_index(self) -> int:
        return max(self._tables["nodes"], self._tables["services"], self._tables["checks"], 1)

    def services_index(self) -> int:
        return max(self._tables["services"], 1)

    def service_index(self, name: str) -> int:
        """Per-service index (Consul 1.0.7+); a service with no instances answers with the catalog's max."""
        idx = self._svc_index.get(_lower(name))
        return idx if idx is not None else self.catalog_max_index()

    def kv_table_index(self) -> int:
        return max(self._tables["kvs"], 1)

    # ------------------------------------------------------------------------------------------ node

    def _bootstrap(self) -> None:
        # The node, its serfHealth check and the "consul" service exist from the start, as on a real server.
        idx = self._bump()
        self._node_index = idx
        self._tables["nodes"] = idx
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
        self._tables["checks"] = idx
        consul = ServiceDef(id="consul", name="consul", port=8300)
        self._cat_services["consul"] = CatalogEntry(self._service_view(consul), idx, idx)
        self._svc_index["consul"] = idx
        self._tables["services"] = idx

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
        idx = self._bump()
        lname = _lower(svc.name)
        if self._cat_services.pop(service_id, None) is not None:
            self._tables["services"] = idx
        for cid in stopped:
            if self._cat_checks.pop(cid, None) is not None:
                self._tables["checks"] = idx
        if any(_lower(e.view["Service"]) == lname for e in self._cat_services.values()):
            self._svc_index[lname] = idx
        else:
            # The last instance is gone: the service index disappears, readers fall back to the catalog max.
            self._svc_index.pop(lname, None)
            self._tables["services"] = idx
        self._notify(("svc", lname))
        self._notify(("services",))
        self._notify(("agentsvc", service_id))
        self._notify_changed()
        for obs in self.observers:
            if stopped:
                obs.checks_stopped(stopped)
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
        idx = self._bump()
        lname = _lower(svc.name)
        if svc_changed:
            create = old.create_index if old is not None else idx
            self._cat_services[service_id] = CatalogEntry(view, create, idx)
            self._tables["services"] = idx
        for cid, cview in changes:
            entry = self._cat_checks.get(cid)
            create = entry.create_index if entry is not None else idx
            self._cat_checks[cid] = CatalogEntry(_strip_indexes(cview), create, idx)
            self._tables["checks"] = idx
        self._svc_index[lname] = idx
        self._notify(("svc", lname))
        if svc_changed:
            self._notify(("services",))
            self._notify(("agentsvc", service_id))
        if old_name is not None and old_name != lname:
            # The instance was renamed: its old service loses it.
            if any(_lower(e.view["Service"]) == old_name for e in self._cat_services.values()):
                self._svc_index[old_name] = idx
            else:
                self._svc_index.pop(old_name, None)
            self._notify(("svc", old_name))

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
        idx = self._bump()
        names: set[str] = set()
        for cid, view in changes:
            entry = self._cat_checks.get(cid)
            create = entry.create_index if entry is not None else idx
            self._cat_checks[cid] = CatalogEntry(view, create, idx)
            names.add(_lower(view["ServiceName"]))
        self._tables["checks"] = idx
        for name in names:
            if name in self._svc_index:
                self._svc_index[name] = idx
            self._notify(("svc", name))

    def _drop_catalog_check(self, check_id: str, service_name: str | None = None) -> None:
        entry = self._cat_checks.pop(check_id, None)
        if entry is None:
            return
        idx = self._bump()
        self._tables["checks"] = idx
        name = _lower(service_name or entry.view["ServiceName"])
        if name in self._svc_index:
            self._svc_index[name] = idx
        self._notify(("svc", name))

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

    def _checks_for(self, service_id: str) -> list[JSON]:
        out = []
        if self._serf_check is not None:
            s = self._serf_check
            out.append({**s.view, "CreateIndex": s.create_index, "ModifyIndex": s.modify_index})
        rows = [
            {**e.view, "CreateIndex": e.create_index, "ModifyIndex": e.modify_index}
            for e in self._cat_checks.values()
            if e.view["ServiceID"] == service_id
        ]
        rows.sort(key=lambda r: str(r["CheckID"]))
        out.extend(rows)
        return out

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

    # ------------------------------------------------------------------------------------------ KV

    def kv_get(self, key: str) -> tuple[int, KVEntry | None]:
        entry = self._kv.get(key)
        if entry is not None:
            return max(entry.modify_index, 1), entry
        return self.kv_table_index(), None

    def _scan(self, keys: list[str], prefix: str) -> Iterator[str]:
        i = bisect.bisect_left(keys, prefix)
        while i < len(keys) and keys[i].startswith(prefix):
            yield keys[i]
            i += 1

    def _prefix_index(self, prefix: str, entries: list[KVEntry]) -> int:
        """Max ModifyIndex under the prefix, tombstones included (so a delete moves the index forward);
        the whole table's index for the empty prefix or when nothing is there."""
        if prefix == "":
            return self.kv_table_index()
        idx = max((e.modify_index for e in entries), default=0)
        for key in self._scan(self._tomb_keys, prefix):
            idx = max(idx, self._tombstones[key][0])
        return idx if idx else self.kv_table_index()

    def kv_list(self, prefix: str) -> tuple[int, list[KVEntry]]:
        entries = [self._kv[k] for k in self._scan(self._kv_keys, prefix)]
        return self._prefix_index(prefix, entries), entries

    def kv_keys(self, prefix: str, separator: str = "") -> tuple[int, list[str]]:
        entries = [self._kv[k] for k in self._scan(self._kv_keys, prefix)]
        keys: list[str] = []
        prev = None
        for e in entries:
            if not separator:
                keys.append(e.key)
                continue
            after = e.key[len(prefix) :]
            pos = after.find(separator)
            if pos >= 0:
                k = e.key[: len(prefix) + pos + len(separator)]
                if k != prev:
                    keys.append(k)
                    prev = k
            else:
                keys.append(e.key)
        return self._prefix_index(prefix, entries), keys

    def _kv_store(self, key: str, value: bytes | None, flags: int) -> None:
        idx = self._bump()
        old = self._kv.get(key)
        if old is None:
            bisect.insort(self._kv_keys, key)
            self._kv[key] = KVEntry(key, value, flags, idx, idx)
        else:
            self._kv[key] = KVEntry(key, value, flags, old.create_index, idx, old.lock_index, old.session)
        self._tables["kvs"] = idx
        self._kv_notify(key)
        self._notify_changed()

    def kv_set(self, key: str, value: bytes | None, flags: int = 0) -> bool:
        self._kv_store(key, value, flags)
        return True

    def kv_cas(self, key: str, value: bytes | None, flags: int, cas: int) -> bool:
        """Check-and-set: ``cas=0`` only creates; otherwise only if the ModifyIndex is exactly ``cas``."""
        old = self._kv.get(key)
        if cas == 0:
            if old is not None:
                return False
        elif old is None or old.modify_index != cas:
            return False
        self._kv_store(key, value, flags)
        return True

    def _kv_remove(self, key: str, idx: int, now: float) -> None:
        del self._kv[key]
        i = bisect.bisect_left(self._kv_keys, key)
        del self._kv_keys[i]
        if key not in self._tombstones:
            bisect.insort(self._tomb_keys, key)
        self._tombstones[key] = (idx, now)
        self._kv_notify(key)

    def kv_delete(self, key: str) -> bool:
        if key in self._kv:
            idx = self._bump()
            self._kv_remove(key, idx, self.clock())
            self._tables["kvs"] = idx
            self._notify_changed()
        return True

    def kv_delete_cas(self, key: str, cas: int) -> bool:
        entry = self._kv.get(key)
        if entry is None or entry.modify_index != cas:
            # Consul answers true for a missing key (nothing to protect), false for a mismatch.
            return entry is None
        self.kv_delete(key)
        return True

    def kv_delete_tree(self, prefix: str) -> bool:
        keys = list(self._scan(self._kv_keys, prefix))
        if keys:
            idx = self._bump()
            now = self.clock()
            for key in keys:
                self._kv_remove(key, idx, now)
            self._tables["kvs"] = idx
            self._notify_changed()
        return True

    def reap_tombstones(self, older_than: float) -> int:
        """Forget tombstones recorded before ``older_than`` (Consul's tombstone GC)."""
        dead = [k for k, (_, t) in self._tombstones.items() if t < older_than]
        for key in dead:
            del self._tombstones[key]
            i = bisect.bisect_left(self._tomb_keys, key)
            del self._tomb_keys[i]
        return len(dead)

    def kv_count(self) -> int:
        return len(self._kv)

    # ------------------------------------------------------------------------------------------ waiters

    def add_waiter(self, topic: Topic, fut: asyncio.Future[None]) -> None:
        self._waiters.setdefault(topic, set()).add(fut)
        if topic[0] == "kvp":
            prefix = str(topic[1])
            self._kv_prefix_topics[prefix] = self._kv_prefix_topics.get(prefix, 0) + 1
        self._waiter_count += 1

    def remove_waiter(self, topic: Topic, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(topic)
        if waiters is None or fut not in waiters:
            return
        waiters.discard(fut)
        if not waiters:
            del self._waiters[topic]
        if topic[0] == "kvp":
            prefix = str(topic[1])
            left = self._kv_prefix_topics[prefix] - 1
            if left:
                self._kv_prefix_topics[prefix] = left
            else:
                del self._kv_prefix_topics[prefix]
        self._waiter_count -= 1

    def waiter_count(self) -> int:
        """Blocking queries currently parked (cheap: for tests and introspection)."""
        return self._waiter_count

    def _notify(self, topic: Topic) -> None:
        waiters = self._waiters.get(topic)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _kv_notify(self, key: str) -> None:
        self._notify(("kv", key))
        for prefix in self._kv_prefix_topics:
            if key.startswith(prefix):
                self._notify(("kvp", prefix))

    def wake_all(self) -> None:
        """Release every parked query (shutdown): they answer at once with what they have."""
        self.shutting_down = True
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _notify_changed(self) -> None:
        for obs in self.observers:
            obs.changed()

    # ------------------------------------------------------------------------------------------ snapshot

    def snapshot(self) -> JSON:
        """What ``--data-dir`` keeps: the index, KV, and registrations with their checks' last status."""
        services = []
        for svc in self.agent_services.values():
            checks = [
                {"definition": asdict(c.definition), "check_id": cid, "status": c.status, "output": c.output}
                for cid, c in self.agent_checks.items()
                if c.service_id == svc.id
            ]
            services.append({"service": asdict(svc), "checks": checks})
        kv = [
            {
                "key": e.key,
                "value": base64.b64encode(e.value).decode() if e.value is not None else None,
                "flags": e.flags,
                "create_index": e.create_index,
                "modify_index": e.modify_index,
            }
            for e in self._kv.values()
        ]
        return {"version": 1, "index": self._index, "kv": kv, "services": services}

    def restore(self, snap: JSON) -> None:
        """Load a :meth:`snapshot` into a fresh state (indexes never go backwards across a restart)."""
        self._index = max(self._index, int(snap.get("index", 0)))
        for item in snap.get("kv", []):
            raw = item.get("value")
            value = base64.b64decode(raw) if raw is not None else None
            entry = KVEntry(
                item["key"], value, int(item["flags"]), int(item["create_index"]), int(item["modify_index"])
            )
            if entry.key not in self._kv:
                bisect.insort(self._kv_keys, entry.key)
            self._kv[entry.key] = entry
            self._tables["kvs"] = max(self._tables["kvs"], entry.modify_index)
        for item in snap.get("services", []):
            sd = dict(item["service"])
            sd["weights"] = tuple(sd.get("weights", (1, 1)))
            svc = ServiceDef(**sd)
            defs = []
            saved: dict[str, tuple[str, str]] = {}
            for c in item.get("checks", []):
                d = CheckDef(**c["definition"])
                d.check_id = c["check_id"]
                defs.append(d)
                saved[c["check_id"]] = (c["status"], c["output"])
            # Seed the previous statuses so registration keeps them, exactly as a re-registration would.
            for cid, (status, output) in saved.items():
                self.agent_checks[cid] = AgentCheck(cid, "", svc.id, svc.name, [], CheckDef(), status, output)
            self.register_service(svc, defs)


def _strip_indexes(view: JSON) -> JSON:
    return {k: v for k, v in view.items() if k not in ("CreateIndex", "ModifyIndex")}
