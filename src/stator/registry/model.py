"""Definitions as a client registers them, after decoding and Consul's defaulting: plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
VALID_STATUSES: Final = frozenset({PASSING, WARNING, CRITICAL})

# Check types the dev registry runs for real; the others are stored and reported but never executed.
RUNNABLE_TYPES: Final = frozenset({"http", "tcp", "ttl"})


@dataclass
class CheckDef:
    """One ``Check``/``Checks`` entry of a service registration (Consul's ``structs.CheckType``)."""

    check_id: str = ""
    name: str = ""
    status: str = ""
    notes: str = ""
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    disable_redirects: bool = False
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    tcp: str = ""
    tcp_use_tls: bool = False
    udp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    h2ping: str = ""
    h2ping_use_tls: bool = False
    os_service: str = ""
    alias_node: str = ""
    alias_service: str = ""
    docker_container_id: str = ""
    shell: str = ""
    script_args: list[str] = field(default_factory=list)
    interval_ns: int = 0
    timeout_ns: int = 0
    ttl_ns: int = 0
    dcsa_ns: int = 0
    output_max_size: int = 0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    proxy_http: str = ""
    proxy_grpc: str = ""

    def is_script(self) -> bool:
        return bool(self.script_args)

    def type(self) -> str:
        """``CheckType.Type()``: the order of the tests is Consul's (a check with HTTP and TTL is ``http``)."""
        iv = self.interval_ns > 0
        if self.grpc and iv:
            return "grpc"
        if self.http and iv:
            return "http"
        if self.ttl_ns > 0:
            return "ttl"
        if self.tcp and iv:
            return "tcp"
        if self.udp and iv:
            return "udp"
        if self.alias_service:
            return "alias"
        if self.is_script() and self.docker_container_id and iv:
            return "docker"
        if self.is_script():
            return "script"
        if self.h2ping and iv:
            return "h2ping"
        if self.os_service and iv:
            return "os_service"
        return ""


@dataclass
class ServiceDef:
    """A service registration (Consul's ``structs.ServiceDefinition`` minus the checks)."""

    id: str
    name: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: tuple[int, int] = (1, 1)
    enable_tag_override: bool = False
    kind: str = ""
    socket_path: str = ""
    proxy: dict[str, Any] | None = None
    connect: dict[str, Any] | None = None
    locality: dict[str, Any] | None = None
