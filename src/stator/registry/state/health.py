"""The health views of the catalog (``/v1/health/*``): instances with the checks that decide their health.

An instance's health is decided by its node's checks (``ServiceID`` empty: ``serfHealth``, node maintenance,
node-level checks) and its own, each list by ``CheckID``. Reads only: every write goes through
:class:`~stator.registry.state.catalog.Catalog`.
"""

from __future__ import annotations

from typing import Any

from stator.registry.model import PASSING
from stator.registry.state.catalog import Catalog
from stator.registry.state.records import Node

JSON = dict[str, Any]


def _by_check_id(row: JSON) -> str:
    return str(row["CheckID"])


class Health:
    """Health views over a :class:`Catalog`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _checks_for(self, node: Node, service_id: str) -> list[JSON]:
        checks = self.catalog.checks_of(node.name).values()
        node_rows = sorted((e.row() for e in checks if e.view["ServiceID"] == ""), key=_by_check_id)
        own = sorted((e.row() for e in checks if e.view["ServiceID"] == service_id), key=_by_check_id)
        return node_rows + own

    def health_service(
        self,
        name: str,
        tags: list[str] | None = None,
        node_meta: dict[str, str] | None = None,
        passing: bool = False,
    ) -> tuple[int, list[JSON]]:
        """``/v1/health/service/:name``: ``{Node, Service, Checks}`` per instance (``passing``: only instances
        whose every check passes)."""
        out = []
        node_json: dict[str, JSON] = {}
        for node, entry in self.catalog.instances(name, tags, node_meta):
            checks = self._checks_for(node, str(entry.view["ID"]))
            if passing and any(c["Status"] != PASSING for c in checks):
                continue
            if node.name not in node_json:
                node_json[node.name] = node.to_json()
            out.append({"Node": node_json[node.name], "Service": entry.row(), "Checks": checks})
        return self.catalog.service_index(name), out

    def health_checks(self, name: str, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        """``/v1/health/checks/:service``: the checks of the service's instances (not their nodes')."""
        out: list[JSON] = []
        for node, entry in self.catalog.instances(name, None, node_meta):
            sid = entry.view["ID"]
            own = (e.row() for e in self.catalog.checks_of(node.name).values() if e.view["ServiceID"] == sid)
            out.extend(sorted(own, key=_by_check_id))
        return self.catalog.service_index(name), out

    def health_state(self, state: str, node_meta: dict[str, str] | None = None) -> tuple[int, list[JSON]]:
        """``/v1/health/state/:state``: every check in that state (``any``: all of them)."""
        rows = [
            e.row()
            for node, e in self.catalog.all_checks()
            if node.meta_matches(node_meta) and (state == "any" or e.view["Status"] == state)
        ]
        rows.sort(key=_state_order)
        return self.catalog.checks_index(), rows

    def health_node(self, node: str) -> tuple[int, list[JSON]]:
        """``/v1/health/node/:node``: the node's checks, node-level and service ones (unknown node: none)."""
        rows = sorted((e.row() for e in self.catalog.checks_of(node).values()), key=_node_order)
        return self.catalog.checks_index(), rows


def _state_order(row: JSON) -> tuple[str, str, str]:
    return str(row["Node"]).lower(), str(row["ServiceID"]), str(row["CheckID"])


def _node_order(row: JSON) -> tuple[str, str]:
    return str(row["ServiceID"]), str(row["CheckID"])
