"""The catalog: nodes, the service instances on them and their health checks, with Raft-like indexes.

This is Consul's state store for three tables (``nodes``, ``services``, ``checks``). Two writers use it, as in
Consul: the agent's anti-entropy (:mod:`.agent`), which keeps the registry's own node in step with what was
registered through ``/v1/agent/*``, and ``PUT /v1/catalog/register|deregister``, which can write any node (the
"external services" pattern). Reads here are the ``/v1/catalog/*`` views; the health views are in
:mod:`.health`.

Index rules, as in Consul: every write that changes something takes one new index for the whole request; a
write that changes nothing takes none (so an idempotent re-registration wakes nobody). Each service name has its
own index, moved by any change to one of its instances or to their checks; a node-level check (no ``ServiceID``)
belongs to every instance on its node, so it moves the index of every service of that node. When the last
instance of a name goes, its index goes too and readers fall back to the catalog's maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from stator.registry.model import CRITICAL
from stator.registry.state.records import CatalogEntry, Node, RegisterRequest, service_row
from stator.registry.state.watch import Watch
from stator.registry.wire import go_quote

JSON = dict[str, Any]


class CatalogError(Exception):
    """A registration Consul refuses after decoding; its HTTP layer answers 500 with this text."""


class Write:
    """One write request: takes a new index only when something actually changes, and reports the checks
    that turned critical or went away once the write is complete (sessions bound to them end)."""

    __slots__ = ("_catalog", "_index", "failed")

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._index = 0
        self.failed: list[tuple[str, str]] = []

    @property
    def index(self) -> int:
        if not self._index:
            self._index = self._catalog.watch.bump()
        return self._index

    @property
    def changed(self) -> bool:
        return self._index != 0

    def table(self, name: str) -> None:
        watch = self._catalog.watch
        watch.tables[name] = self.index
        watch.notify((name,))

    def __enter__(self) -> Write:
        return self

    def __exit__(self, *exc: object) -> None:
        hook = self._catalog.on_checks_failed
        if self.failed and hook is not None:
            failed, self.failed = self.failed, []
            hook(failed)


class Catalog:
    """Nodes, services and checks of one datacenter. Drive from one event loop thread."""

    def __init__(self, watch: Watch, datacenter: str) -> None:
        self.watch = watch
        self.datacenter = datacenter
        # All keyed by the lower-cased node name (node names are case-insensitive in Consul).
        self._nodes: dict[str, Node] = {}
        self._services: dict[str, dict[str, CatalogEntry]] = {}
        self._checks: dict[str, dict[str, CatalogEntry]] = {}
        # Per-service-name index (lower-cased name).
        self._svc_index: dict[str, int] = {}
        # Called with (node, check ID) pairs of checks that turned critical or were removed.
        self.on_checks_failed: Callable[[list[tuple[str, str]]], object] | None = None

    def write(self) -> Write:
        return Write(self)

    # ------------------------------------------------------------------------------------------ indexes

    def catalog_max_index(self) -> int:
        t = self.watch.tables
        return max(t["nodes"], t["services"], t["checks"], 1)

    def services_index(self) -> int:
        return self.watch.table("services")

    def checks_index(self) -> int:
        return self.watch.table("checks")

    def nodes_index(self) -> int:
        return self.watch.table("nodes")

    def service_index(self, name: str) -> int:
        """Per-service index (Consul 1.0.7+); a service with no instances answers with the catalog's max."""
        idx = self._svc_index.get(name.lower())
        return idx if idx is not None else self.catalog_max_index()

    # ------------------------------------------------------------------------------------------ lookups

    def node(self, name: str) -> Node | None:
        return self._nodes.get(name.lower())

    def nodes(self) -> list[Node]:
        return [self._nodes[k] for k in sorted(self._nodes)]

    def service(self, node: str, service_id: str) -> CatalogEntry | None:
        return self._services.get(node.lower(), {}).get(service_id)

    def services_of(self, node: str) -> dict[str, CatalogEntry]:
        return self._services.get(node.lower(), {})

    def check(self, node: str, check_id: str) -> CatalogEntry | None:
        return self._checks.get(node.lower(), {}).get(check_id)

    def checks_of(self, node: str) -> dict[str, CatalogEntry]:
        return self._checks.get(node.lower(), {})

    def instances(
        self, name: str, tags: list[str] | None = None, node_meta: dict[str, str] | None = None
    ) -> list[tuple[Node, CatalogEntry]]:
        """The instances of a service (name and tags case-insensitive, every tag required), by node then ID."""
        lname = name.lower()
        wanted = [t.lower() for t in tags] if tags else []
        found: list[tuple[Node, CatalogEntry]] = []
        for key in sorted(self._services):
            node = self._nodes[key]
            if not node.meta_matches(node_meta):
                continue
            for sid in sorted(self._services[key]):
                entry = self._services[key][sid]
                if str(entry.view["Service"]).lower() != lname:
                    continue
                have = {t.lower() for t in entry.view["Tags"]}
                if all(t in have for t in wanted):
                    found.append((node, entry))
        return found

    def all_checks(self) -> Iterator[tuple[Node, CatalogEntry]]:
        for key in sorted(self._checks):
            node = self._nodes[key]
            for entry in self._checks[key].values():
                yield node, entry

    def _has_instances(self, lname: str) -> bool:
        return any(str(e.view["Service"]).lower() == lname for svcs in self._services.values() for e in svcs.values())

    # ------------------------------------------------------------------------------------------ writes

    def ensure_node(self, w: Write, node: Node) -> bool:
        """Insert or update a node; nothing is written when it is the same."""
        key = node.name.lower()
        old = self._nodes.get(key)
        if old is not None and old.same(node):
            return False
        idx = w.index
        node.create_index = old.create_index if old is not None else idx
        node.modify_index = idx
        self._nodes[key] = node
        self._services.setdefault(key, {})
        self._checks.setdefault(key, {})
        w.table("nodes")
        return True

    def put_service(self, w: Write, node: str, view: JSON) -> bool:
        """Insert or update a service instance on an existing node; nothing is written when it is the same."""
        key = node.lower()
        services = self._services[key]
        sid = str(view["ID"])
        old = services.get(sid)
        if old is not None and old.view == view:
            return False
        idx = w.index
        services[sid] = CatalogEntry(view, old.create_index if old is not None else idx, idx)
        w.table("services")
        lname = str(view["Service"]).lower()
        self._svc_index[lname] = idx
        self.watch.notify(("svc", lname))
        if old is not None:
            old_name = str(old.view["Service"]).lower()
            if old_name != lname:
                # The instance was renamed: its old service loses it.
                self._name_left(w, old_name)
        return True

    def put_check(self, w: Write, node: str, view: JSON) -> bool:
        """Insert or update a check of an existing node (``view`` carries ``Node``, no indexes)."""
        key = node.lower()
        checks = self._checks[key]
        cid = str(view["CheckID"])
        old = checks.get(cid)
        if old is not None and old.view == view:
            return False
        idx = w.index
        checks[cid] = CatalogEntry(view, old.create_index if old is not None else idx, idx)
        w.table("checks")
        self._health_moved(w, key, str(view["ServiceName"]))
        if old is not None and old.view.get("ServiceName") != view["ServiceName"]:
            self._health_moved(w, key, str(old.view["ServiceName"]))
        if view["Status"] == CRITICAL and old is not None and old.view["Status"] != CRITICAL:
            w.failed.append((self._nodes[key].name, cid))
        return True

    def delete_check(self, w: Write, node: str, check_id: str) -> bool:
        key = node.lower()
        entry = self._checks.get(key, {}).pop(check_id, None)
        if entry is None:
            return False
        w.table("checks")
        self._health_moved(w, key, str(entry.view["ServiceName"]))
        w.failed.append((self._nodes[key].name, check_id))
        return True

    def delete_service(self, w: Write, node: str, service_id: str) -> bool:
        """Remove a service instance and its checks."""
        key = node.lower()
        entry = self._services.get(key, {}).pop(service_id, None)
        if entry is None:
            return False
        w.table("services")
        self.watch.notify(("services",))
        for cid, check in list(self._checks[key].items()):
            if check.view["ServiceID"] == service_id:
                del self._checks[key][cid]
                w.table("checks")
                w.failed.append((self._nodes[key].name, cid))
        self._name_left(w, str(entry.view["Service"]).lower())
        return True

    def delete_node(self, w: Write, node: str) -> bool:
        """Remove a node with its services and checks."""
        key = node.lower()
        if key not in self._nodes:
            return False
        for sid in list(self._services.get(key, {})):
            self.delete_service(w, node, sid)
        for cid in list(self._checks.get(key, {})):
            self.delete_check(w, node, cid)
        del self._nodes[key]
        self._services.pop(key, None)
        self._checks.pop(key, None)
        w.table("nodes")
        return True

    def _name_left(self, w: Write, lname: str) -> None:
        """An instance of ``lname`` went away: its index moves, or disappears with the last instance."""
        if self._has_instances(lname):
            self._svc_index[lname] = w.index
        else:
            self._svc_index.pop(lname, None)
            w.table("services")
        self.watch.notify(("svc", lname))

    def _health_moved(self, w: Write, key: str, service_name: str) -> None:
        """A check changed: the services whose health it decides get a new index (a node-level check decides
        the health of every service on its node)."""
        if service_name:
            names = {service_name.lower()}
        else:
            names = {str(e.view["Service"]).lower() for e in self._services.get(key, {}).values()}
        for name in names:
            if name in self._svc_index:
                self._svc_index[name] = w.index
            self.watch.notify(("svc", name))

    # ------------------------------------------------------------------------------------------ catalog API

    def register(self, req: RegisterRequest) -> None:
        """``Catalog.Register``: the node (created, or updated unless ``SkipNodeUpdate``), the service, then
        each check, in one write. Raises :class:`CatalogError` with Consul's text, before writing anything."""
        name = req.node.name
        services = self.services_of(name)
        for check in req.checks:
            # vetRegisterWithACL runs with ACLs disabled too (an allow-all authorizer).
            if str(check["Node"]).lower() != name.lower():
                raise CatalogError(
                    f"Node '{check['Node']}' for check '{check['CheckID']}' doesn't match register request node "
                    f"'{name}'"
                )
            sid = check["ServiceID"]
            if sid and not (req.service is not None and req.service["ID"] == sid) and sid not in services:
                raise CatalogError(f"Unknown service ID '{sid}' for check ID '{check['CheckID']}'")
        existing = self.node(name)
        update_node = existing is None or (not req.skip_node_update and not existing.same(req.node))
        renamed = self._renamed_node(req.node) if update_node else None
        with self.write() as w:
            if renamed is not None:
                self.delete_node(w, renamed.name)
            if update_node:
                self.ensure_node(w, req.node)
            if req.service is not None:
                self.put_service(w, name, req.service)
            for check in req.checks:
                view = dict(check)
                sid = view["ServiceID"]
                if sid:
                    # ensureCheckTxn copies the service's name and tags into the check.
                    svc = self.services_of(name)[sid]
                    view["ServiceName"] = svc.view["Service"]
                    view["ServiceTags"] = list(svc.view["Tags"])
                self.put_check(w, name, view)

    def _renamed_node(self, node: Node) -> Node | None:
        """``ensureNodeTxn``'s node-ID rules: a known ID under a new name renames that node (returned, to be
        deleted); a name held by a live node with another ID is refused."""
        if not node.id:
            return None
        by_id = next((n for n in self._nodes.values() if n.id == node.id), None)
        if by_id is not None and by_id.name.lower() == node.name.lower():
            return None
        clash = self._name_reserved(node, allow_without_id=by_id is None)
        if clash:
            if by_id is not None:
                raise CatalogError(
                    f"failed inserting node: Error while renaming Node ID: {go_quote(node.id)} ({node.address}): "
                    f"{clash}"
                )
            raise CatalogError(f"failed inserting node: Error while renaming Node ID: {go_quote(node.id)}: {clash}")
        return by_id

    def _name_reserved(self, node: Node, allow_without_id: bool) -> str | None:
        other = self.node(node.name)
        if other is None or other.id == node.id or (allow_without_id and other.id == ""):
            return None
        serf = self.check(other.name, "serfHealth")
        # A node without a live serfHealth (an external node) can be taken over.
        if serf is None or serf.view["Status"] == CRITICAL:
            return None
        return f"Node name {node.name} is reserved by node {other.id} with name {other.name} ({other.address})"

    def deregister(self, node: str, service_id: str = "", check_id: str = "") -> None:
        """``Catalog.Deregister``: a service (with its checks), else a check, else the whole node. Removing
        something that does not exist is not an error."""
        with self.write() as w:
            if service_id:
                self.delete_service(w, node, service_id)
            elif check_id:
                self.delete_check(w, node, check_id)
            else:
                self.delete_node(w, node)

    # ------------------------------------------------------------------------------------------ reads

    def catalog_services(
        self, node_meta: dict[str, str] | None = None, predicate: Callable[[JSON], bool] | None = None
    ) -> tuple[int, dict[str, list[str]]]:
        """``/v1/catalog/services``: each name with the union of its instances' tags."""
        out: dict[str, dict[str, None]] = {}
        for key in sorted(self._services):
            node = self._nodes[key]
            if not node.meta_matches(node_meta):
                continue
            for sid in sorted(self._services[key]):
                entry = self._services[key][sid]
                if predicate is not None and not predicate(service_row(node, entry)):
                    continue
                tags = out.setdefault(entry.view["Service"], {})
                for tag in entry.view["Tags"]:
                    tags[tag] = None
        return self.services_index(), {name: list(tags) for name, tags in out.items()}

    def catalog_service(
        self, name: str, tags: list[str] | None = None, node_meta: dict[str, str] | None = None
    ) -> tuple[int, list[JSON]]:
        """``/v1/catalog/service/:name``: ``ServiceNode`` rows."""
        rows = [service_row(node, entry) for node, entry in self.instances(name, tags, node_meta)]
        return self.service_index(name), rows

    def catalog_nodes(self, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        """``/v1/catalog/nodes``: every node, by name."""
        return self.nodes_index(), [n.to_json() for n in self.nodes() if n.meta_matches(node_meta)]

    def catalog_node(self, name: str) -> tuple[int, JSON | None]:
        """``/v1/catalog/node/:node``: the node and its services by ID (``null`` for an unknown node)."""
        index = max(self.watch.tables["nodes"], self.watch.tables["services"], 1)
        node = self.node(name)
        if node is None:
            return index, None
        services = {sid: e.row() for sid, e in sorted(self.services_of(name).items())}
        return index, {"Node": node.to_json(), "Services": services}
