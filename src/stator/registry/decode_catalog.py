"""Decoding of ``PUT /v1/catalog/register`` and ``/v1/catalog/deregister`` bodies, and the checks Consul's
``Catalog.Register``/``Catalog.Deregister`` RPC endpoints make before anything reaches the state store.

The bodies are ``structs.RegisterRequest`` and ``structs.DeregisterRequest``, decoded like every other body
(case-insensitive keys, unknown fields refused with 400 ``Request decode failed: ...``, ``null`` as unset).
Refusals after decoding are RPC errors, which Consul's HTTP layer answers with 500 and the error text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from stator.config.durations import format_duration_ns
from stator.registry.decode import (
    INT,
    SERVICE_ADDRESS,
    WEIGHTS,
    B,
    D,
    Field,
    S,
    Schema,
    _check_def,
    _header_map,
    _nested,
    _nested_list,
    _nested_map,
    _object,
    _str_list,
    _str_map,
    decode_body,
    is_any_address,
)
from stator.registry.errors import APIError
from stator.registry.model import CRITICAL, ServiceDef
from stator.registry.state.records import Node, RegisterRequest, service_view

HEALTH_CHECK_DEFINITION: Final = Schema(
    "structs.HealthCheckDefinition",
    {
        "HTTP": S,
        "TLSServerName": S,
        "TLSSkipVerify": B,
        "Header": Field(_header_map),
        "Method": S,
        "Body": S,
        "DisableRedirects": B,
        "TCP": S,
        "TCPUseTLS": B,
        "UDP": S,
        "H2PING": S,
        "H2PingUseTLS": B,
        "Interval": D,
        "OutputMaxSize": INT,
        "Timeout": D,
        "DeregisterCriticalServiceAfter": D,
        "ScriptArgs": Field(_str_list),
        "DockerContainerID": S,
        "Shell": S,
        "GRPC": S,
        "GRPCUseTLS": B,
        "OSService": S,
        "AliasNode": S,
        "AliasService": S,
        "TTL": D,
    },
)
_DEFINITION_DURATIONS: Final = frozenset({"Interval", "Timeout", "DeregisterCriticalServiceAfter", "TTL"})

HEALTH_CHECK: Final = Schema(
    "structs.HealthCheck",
    {
        "Node": S,
        "CheckID": S,
        "Name": S,
        "Status": S,
        "Notes": S,
        "Output": S,
        "ServiceID": S,
        "ServiceName": S,
        "ServiceTags": Field(_str_list),
        "Type": S,
        "Interval": S,
        "Timeout": S,
        "ExposedPort": INT,
        "Definition": Field(_nested(HEALTH_CHECK_DEFINITION)),
        "PeerName": S,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)

NODE_SERVICE: Final = Schema(
    "structs.NodeService",
    {
        "Kind": S,
        "ID": S,
        "Service": S,
        "Tags": Field(_str_list),
        "Address": S,
        "TaggedAddresses": Field(_nested_map(SERVICE_ADDRESS)),
        "Meta": Field(_str_map),
        "Port": INT,
        "SocketPath": S,
        "Weights": Field(_nested(WEIGHTS)),
        "EnableTagOverride": B,
        "Proxy": Field(_object),
        "Connect": Field(_object),
        "LocallyRegisteredAsSidecar": B,
        "PeerName": S,
        "Locality": Field(_object),
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)

REGISTER_REQUEST: Final = Schema(
    "structs.RegisterRequest",
    {
        "Datacenter": S,
        "ID": S,
        "Node": S,
        "Address": S,
        "TaggedAddresses": Field(_str_map),
        "NodeMeta": Field(_str_map),
        "Service": Field(_nested(NODE_SERVICE)),
        "Check": Field(_nested(HEALTH_CHECK)),
        "Checks": Field(_nested_list(HEALTH_CHECK)),
        "SkipNodeUpdate": B,
        "PeerName": S,
        "Locality": Field(_object),
        "Token": S,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)

DEREGISTER_REQUEST: Final = Schema(
    "structs.DeregisterRequest",
    {"Datacenter": S, "Node": S, "ServiceID": S, "CheckID": S, "PeerName": S, "Token": S},
)

_HEX_BYTES: Final = frozenset(b"0123456789abcdefABCDEF")
_DASHES: Final = (8, 13, 18, 23)


def parse_uuid_error(text: str) -> str | None:
    """``uuid.ParseUUID`` (hashicorp/go-uuid): its error text, None when ``text`` is a UUID. Go works on the
    UTF-8 bytes: the length is in bytes and a bad byte is reported as ``%#U`` of that byte."""
    raw = text.encode()
    if len(raw) != 36:
        return "uuid string is wrong length"
    if any(raw[i] != ord("-") for i in _DASHES):
        return "uuid is improperly formatted"
    for i, byte in enumerate(raw):
        if i not in _DASHES and byte not in _HEX_BYTES:
            shown = f"U+{byte:04X}"
            if chr(byte).isprintable():
                shown += f" '{chr(byte)}'"
            return f"encoding/hex: invalid byte: {shown}"
    return None


@dataclass
class DeregisterRequest:
    node: str
    service_id: str
    check_id: str


def _check_view(raw: dict[str, Any], node: str) -> dict[str, Any]:
    """A ``HealthCheck`` as the catalog stores it (``ServiceName``/``ServiceTags`` are filled from the service
    by the store). ``Definition`` is echoed with its non-empty fields, durations as Go strings."""
    definition_raw: dict[str, Any] = raw.get("Definition", {})
    definition = {
        k: (format_duration_ns(v) if k in _DEFINITION_DURATIONS else v) for k, v in definition_raw.items() if v
    }
    check_type = raw.get("Type", "") or _check_def(definition_raw).type()
    check_id = raw.get("CheckID", "") or raw.get("Name", "")
    return {
        "Node": raw.get("Node", "") or node,
        "CheckID": check_id,
        "Name": raw.get("Name", ""),
        "Status": raw.get("Status", "") or CRITICAL,
        "Notes": raw.get("Notes", ""),
        "Output": raw.get("Output", ""),
        "ServiceID": raw.get("ServiceID", ""),
        "ServiceName": "",
        "ServiceTags": [],
        "Type": check_type,
        "Interval": raw.get("Interval", ""),
        "Timeout": raw.get("Timeout", ""),
        "ExposedPort": raw.get("ExposedPort", 0),
        "Definition": definition,
    }


def _service_def(raw: dict[str, Any]) -> ServiceDef:
    weights = raw.get("Weights")
    passing, warning = 1, 1
    # NodeService.ToServiceNode: missing or invalid weights (Passing < 1) become the default 1/1.
    if weights is not None and weights.get("Passing", 0) >= 1:
        passing, warning = weights.get("Passing", 0), weights.get("Warning", 0)
    return ServiceDef(
        id=raw.get("ID", "") or raw.get("Service", ""),
        name=raw.get("Service", ""),
        tags=raw.get("Tags", []),
        address=raw.get("Address", ""),
        port=raw.get("Port", 0),
        meta=raw.get("Meta", {}),
        tagged_addresses=raw.get("TaggedAddresses", {}),
        weights=(passing, warning),
        enable_tag_override=raw.get("EnableTagOverride", False),
        kind=raw.get("Kind", ""),
        socket_path=raw.get("SocketPath", ""),
        proxy=raw.get("Proxy"),
        connect=raw.get("Connect"),
        locality=raw.get("Locality"),
    )


def _check_dc(datacenter: str, own: str) -> None:
    if datacenter and datacenter.lower() != own.lower():
        raise APIError(500, "No path to datacenter")


def decode_register(body: bytes, datacenter: str) -> RegisterRequest:
    """Decode and pre-check a catalog registration, in the order of Consul's ``Catalog.Register``."""
    raw = decode_body(body, REGISTER_REQUEST)
    _check_dc(raw.get("Datacenter", ""), datacenter)
    node_name: str = raw.get("Node", "")
    if not node_name:
        raise APIError(500, "Must provide node")
    node_id: str = raw.get("ID", "")
    if node_id:
        problem = parse_uuid_error(node_id)
        if problem:
            raise APIError(500, f"Bad node ID: {problem}")
    skip = bool(raw.get("SkipNodeUpdate", False))
    address: str = raw.get("Address", "")
    if not address and not skip:
        raise APIError(500, "Must provide address if SkipNodeUpdate is not set")
    service = None
    if "Service" in raw:
        svc_raw: dict[str, Any] = raw["Service"]
        if svc_raw.get("ID") and not svc_raw.get("Service"):
            raise APIError(500, "Must provide service name (Service.Service) when service ID is provided")
        if is_any_address(svc_raw.get("Address", "")):
            raise APIError(500, "Invalid service address")
        service = service_view(_service_def(svc_raw))
    checks = [*([raw["Check"]] if "Check" in raw else []), *raw.get("Checks", [])]
    node = Node(
        name=node_name,
        address=address,
        datacenter=datacenter,
        id=node_id,
        tagged_addresses=raw.get("TaggedAddresses", {}),
        meta=raw.get("NodeMeta", {}),
    )
    return RegisterRequest(
        node=node,
        skip_node_update=skip,
        service=service,
        checks=[_check_view(c, node_name) for c in checks],
    )


def decode_deregister(body: bytes, datacenter: str) -> DeregisterRequest:
    raw = decode_body(body, DEREGISTER_REQUEST)
    _check_dc(raw.get("Datacenter", ""), datacenter)
    node: str = raw.get("Node", "")
    if not node:
        raise APIError(500, "Must provide node")
    return DeregisterRequest(node=node, service_id=raw.get("ServiceID", ""), check_id=raw.get("CheckID", ""))
