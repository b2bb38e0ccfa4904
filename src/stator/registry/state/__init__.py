"""The registry's state, one module per resource, all driven from the event loop thread (no locks: every
mutation runs to completion between awaits, which is what makes a lost wake-up impossible):

* :mod:`.watch` - the Raft-like indexes (global and per table) and the parked blocking queries;
* :mod:`.catalog` - nodes, service instances and checks (the catalog tables) and the catalog views, over the
  records and wire shapes of :mod:`.records`;
* :mod:`.health` - the health views over the catalog;
* :mod:`.agent` - the agent's services and checks, maintenance, reaping, and their anti-entropy into the catalog;
* :mod:`.kv` - keys, tombstones, locks and lock-delays; :mod:`.txn` - atomic KV transactions;
* :mod:`.sessions` - sessions, their TTLs and their invalidation.

:class:`State` wires them together and owns what spans them: catalog writes that touch the agent's own node,
and the snapshot for ``--data-dir``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from stator.registry.model import CheckDef, ServiceDef
from stator.registry.state.agent import CONSUL_VERSION, DEFAULT_OUTPUT_MAX, Agent, AgentCheck, Observer
from stator.registry.state.catalog import Catalog, CatalogError
from stator.registry.state.health import Health
from stator.registry.state.kv import KVEntry, KVError, KVStore
from stator.registry.state.records import Node, RegisterRequest
from stator.registry.state.sessions import Sessions
from stator.registry.state.watch import Topic, Watch

__all__ = [
    "CONSUL_VERSION",
    "DEFAULT_OUTPUT_MAX",
    "CatalogError",
    "KVEntry",
    "KVError",
    "Observer",
    "RegisterRequest",
    "State",
    "Topic",
]

JSON = dict[str, Any]


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
        session_ttl_multiplier: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.watch = Watch()
        self.store = Catalog(self.watch, datacenter)
        self.health = Health(self.store)
        self.agent = Agent(
            self.store, node_name=node_name, node_address=node_address, node_id=node_id, dcsa_min=dcsa_min, clock=clock
        )
        # The name callers used before the state was split by resource: the agent (which also answers
        # ``catalog_max_index``). New code uses ``agent``, ``store`` and ``health``.
        self.catalog = self.agent
        self.observers = self.agent.observers
        self.kv = KVStore(self.watch, clock, self._session_exists, self._changed)
        self.sessions = Sessions(
            self.watch,
            self.kv,
            node_name,
            self.agent.check_status,
            self._changed,
            ttl_multiplier=session_ttl_multiplier,
        )
        self.store.on_checks_failed = self._checks_failed

    def _checks_failed(self, checks: list[tuple[str, str]]) -> None:
        # Sessions live on this node only, so only its checks can end one.
        ids = [cid for node, cid in checks if self.agent.is_own_node(node)]
        if ids:
            self.sessions.checks_failed(ids)

    # ------------------------------------------------------------------------------------------ catalog API

    def catalog_register(self, req: RegisterRequest) -> None:
        """``PUT /v1/catalog/register``. On this registry's own node the agent then re-syncs the node at once,
        as Consul's anti-entropy does within a minute: what the agent does not know is removed, what it has
        is restored."""
        self.store.register(req)
        if self.agent.is_own_node(req.node.name):
            self.agent.anti_entropy()
        self._changed()

    def catalog_deregister(self, node: str, service_id: str = "", check_id: str = "") -> None:
        """``PUT /v1/catalog/deregister`` (a service, else a check, else the node); the agent's own node is
        restored by its anti-entropy, as in Consul."""
        self.store.deregister(node, service_id, check_id)
        if self.agent.is_own_node(node):
            self.agent.anti_entropy()
        self._changed()

    def _session_exists(self, session_id: str) -> bool:
        return self.sessions.exists(session_id)

    def _changed(self) -> None:
        for obs in self.observers:
            obs.changed()

    @property
    def index(self) -> int:
        return self.watch.index

    @property
    def shutting_down(self) -> bool:
        return self.watch.shutting_down

    def waiter_count(self) -> int:
        """Blocking queries currently parked (cheap: for tests and introspection)."""
        return self.watch.parked()

    # ------------------------------------------------------------------------------------------ snapshot

    def snapshot(self) -> JSON:
        """What ``--data-dir`` keeps: the index, KV, registrations with their checks' last status, and the nodes
        registered through the catalog API with their services and checks.
        Sessions are not kept (as after a Consul agent's restart, their holders must create new ones), so
        locks are released on restore."""
        c = self.agent
        services = []
        for svc in c.agent_services.values():
            checks = [
                {"definition": asdict(ch.definition), "check_id": cid, "status": ch.status, "output": ch.output}
                for cid, ch in c.agent_checks.items()
                if ch.service_id == svc.id
            ]
            services.append({"service": asdict(svc), "checks": checks})
        kv = [
            {
                "key": e.key,
                "value": base64.b64encode(e.value).decode() if e.value is not None else None,
                "flags": e.flags,
                "create_index": e.create_index,
                "modify_index": e.modify_index,
                "lock_index": e.lock_index,
            }
            for e in self.kv.all_entries()
        ]
        nodes = [
            {
                "node": {
                    "name": n.name,
                    "address": n.address,
                    "datacenter": n.datacenter,
                    "id": n.id,
                    "tagged_addresses": n.tagged_addresses,
                    "meta": n.meta,
                },
                "services": [e.view for e in self.store.services_of(n.name).values()],
                "checks": [e.view for e in self.store.checks_of(n.name).values()],
            }
            for n in self.store.nodes()
            if not self.agent.is_own_node(n.name)
        ]
        return {"version": 1, "index": self.watch.index, "kv": kv, "services": services, "nodes": nodes}

    def restore(self, snap: JSON) -> None:
        """Load a :meth:`snapshot` into a fresh state (indexes never go backwards across a restart)."""
        self.watch.restore_index(int(snap.get("index", 0)))
        for item in snap.get("kv", []):
            raw = item.get("value")
            value = base64.b64decode(raw) if raw is not None else None
            self.kv.restore_entry(
                KVEntry(
                    item["key"],
                    value,
                    int(item["flags"]),
                    int(item["create_index"]),
                    int(item["modify_index"]),
                    int(item.get("lock_index", 0)),
                )
            )
        # Nodes registered through /v1/catalog/register (the registry's own node is the agent's).
        for item in snap.get("nodes", []):
            node = Node(**item["node"])
            self.store.register(RegisterRequest(node=node))
            for view in item.get("services", []):
                self.store.register(RegisterRequest(node=node, skip_node_update=True, service=view))
            for view in item.get("checks", []):
                self.store.register(RegisterRequest(node=node, skip_node_update=True, checks=[view]))
        c = self.agent
        for item in snap.get("services", []):
            sd = dict(item["service"])
            sd["weights"] = tuple(sd.get("weights", (1, 1)))
            svc = ServiceDef(**sd)
            defs = []
            saved: dict[str, tuple[str, str]] = {}
            for ch in item.get("checks", []):
                d = CheckDef(**ch["definition"])
                d.check_id = ch["check_id"]
                defs.append(d)
                saved[ch["check_id"]] = (ch["status"], ch["output"])
            # Seed the previous statuses so registration keeps them, exactly as a re-registration would.
            for cid, (status, output) in saved.items():
                c.agent_checks[cid] = AgentCheck(cid, "", svc.id, svc.name, [], CheckDef(), status, output)
            c.register_service(svc, defs)
