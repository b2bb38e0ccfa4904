"""The catalog's records and their wire shapes: nodes, instances and checks as Consul's state store holds them
and its HTTP API shows them (``structs.Node``, ``NodeService``, ``ServiceNode``, ``HealthCheck``), and the
registration request that writes them. Plain data: the behaviour is in :mod:`.catalog`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from stator.registry.model import ServiceDef

JSON = dict[str, Any]


@dataclass
class CatalogEntry:
    """A service instance (``NodeService`` without indexes) or a check (``HealthCheck``), with its indexes."""

    view: JSON
    create_index: int
    modify_index: int

    def row(self) -> JSON:
        return {**self.view, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index}


@dataclass
class Node:
    """A catalog node (``structs.Node``)."""

    name: str
    address: str
    datacenter: str
    id: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def same(self, other: Node) -> bool:
        """``Node.IsSame``: equal in everything but the indexes."""
        return (
            self.name == other.name
            and self.address == other.address
            and self.datacenter == other.datacenter
            and self.id == other.id
            and self.tagged_addresses == other.tagged_addresses
            and self.meta == other.meta
        )

    def to_json(self) -> JSON:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": dict(self.tagged_addresses),
            "Meta": dict(self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    def meta_matches(self, filters: dict[str, str] | None) -> bool:
        return not filters or all(self.meta.get(k) == v for k, v in filters.items())


def default_tagged_addresses(address: str) -> dict[str, str]:
    """What an agent puts in its node's ``TaggedAddresses``: lan/wan and their address family."""
    try:
        v6 = isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address)
    except ValueError:
        v6 = False
    fam = "ipv6" if v6 else "ipv4"
    return {"lan": address, f"lan_{fam}": address, "wan": address, f"wan_{fam}": address}


def service_view(svc: ServiceDef) -> JSON:
    """The catalog's ``NodeService`` (without indexes): what health/catalog serve and what change detection
    compares, so a re-registration with the same definition writes nothing."""
    view: JSON = {}
    if svc.kind:
        view["Kind"] = svc.kind
    view.update({"ID": svc.id, "Service": svc.name, "Tags": list(svc.tags), "Address": svc.address})
    if svc.tagged_addresses:
        view["TaggedAddresses"] = {k: dict(v) for k, v in svc.tagged_addresses.items()}
    view.update({"Meta": dict(svc.meta), "Port": svc.port})
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


@dataclass
class RegisterRequest:
    """A decoded ``PUT /v1/catalog/register``: the node, and optionally a service instance and checks."""

    node: Node
    skip_node_update: bool = False
    service: JSON | None = None
    checks: list[JSON] = field(default_factory=list)


def service_row(node: Node, entry: CatalogEntry) -> JSON:
    """A catalog ``ServiceNode`` row: the instance with its node's fields."""
    v = entry.view
    row: JSON = {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses),
        "NodeMeta": dict(node.meta),
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
