"""Strict request decoding the way Consul's Go decoder does it, and the registration validation that follows.

Go's ``encoding/json`` with ``DisallowUnknownFields`` matches object keys to struct fields case-insensitively,
rejects unknown keys, treats ``null`` as "leave unset", reads only the first JSON value of the body, and reports
the first error in document order. Consul adds snake_case aliases and decodes durations from Go strings or
nanosecond numbers. The schemas below describe the accepted shapes; decoding produces plain dicts keyed by the
canonical field name, which :func:`decode_registration` turns into :class:`ServiceDef`/:class:`CheckDef`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from stator.config.durations import DurationError as GoError
from stator.config.durations import parse_duration_ns as parse_duration
from stator.registry.errors import APIError
from stator.registry.model import VALID_STATUSES, CheckDef, ServiceDef
from stator.registry.wire import go_quote

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
# Go's decoder refuses nesting deeper than this ("exceeded max depth"); Python's recursion limit is lower.
_MAX_DEPTH: Final = 10000


class DecodeError(ValueError):
    """A body that does not decode; ``str`` is the Go error text that follows ``Request decode failed: ``."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object as its ordered (key, value) pairs: keeps duplicates and order, as Go's decoder sees them."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


_DECODER = json.JSONDecoder(object_pairs_hook=Pairs, parse_constant=_reject_constant)
_WS = " \t\r\n"


def _quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


def load_json(body: bytes) -> Any:
    """The first JSON value of ``body`` (trailing data ignored, as ``json.Decoder.Decode`` does)."""
    # Go decodes invalid UTF-8 inside strings to U+FFFD instead of failing: replacing up front does the same.
    text = body.decode("utf-8", "replace")
    pos = 0
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    if pos == len(text):
        raise DecodeError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text) or exc.msg.startswith("Unterminated string"):
            raise DecodeError("unexpected EOF") from None
        raise DecodeError(f"invalid character {_quote_char(text[exc.pos])} looking for beginning of value") from None
    except RecursionError:
        raise DecodeError("exceeded max depth") from None
    except ValueError as exc:  # NaN/Infinity literals, integers beyond Python's digit limit
        bad = text[pos] if pos < len(text) else "?"
        raise DecodeError(f"invalid character {_quote_char(bad)} looking for beginning of value: {exc}") from None
    return value


def _fold(key: str) -> str:
    # Go's case folding for field names: ASCII case plus the two non-ASCII letters that fold to ASCII.
    return key.lower().replace("\u017f", "s").replace("\u212a", "k")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Pairs):
        return "object"
    return "array"


def _clean_str(value: str) -> str:
    """Go has no lone surrogates (``"\\ud800"`` decodes to U+FFFD); Python keeps them and then cannot encode."""
    for ch in value:
        if "\ud800" <= ch <= "\udfff":
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


def plain(value: Any) -> Any:
    """A decoded value with objects as dicts (last key wins) and strings cleaned: safe to store and re-encode."""
    if isinstance(value, Pairs):
        return {_clean_str(k): plain(v) for k, v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return _clean_str(value)
    return value


Decoder = Callable[[Any, str], Any]


def _type_error(value: Any, path: str, go_type: str) -> DecodeError:
    # Go names the literal only for a number that does not fit a numeric field ("number 1.5" into an int);
    # a number where a string, bool or object belongs is just "number".
    shown = _json_type(value)
    if shown == "number" and go_type == "int":
        shown = f"number {json.dumps(value)}"
    return DecodeError(f"json: cannot unmarshal {shown} into Go struct field {path} of type {go_type}")


def _str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return _clean_str(value)
    raise _type_error(value, path, "string")


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _type_error(value, path, "bool")


def _int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise _type_error(value, path, "int")


def _duration(value: Any, path: str) -> int | None:
    """Consul decodes durations into ``interface{}`` first: strings are parsed, numbers are nanoseconds, and any
    other JSON type is silently ignored (so ``"Interval": true`` means "no interval")."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except GoError as exc:
            raise DecodeError(str(exc)) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = value
        if ns != ns or ns in (float("inf"), float("-inf")):
            return None
        return max(_INT64_MIN, min(_INT64_MAX, int(ns)))
    return None


def _str_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or isinstance(value, Pairs):
        raise _type_error(value, path, "[]string")
    return ["" if v is None else _str(v, path) for v in value]


def _str_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, Pairs):
        raise _type_error(value, path, "map[string]string")
    return {_clean_str(k): ("" if v is None else _str(v, path)) for k, v in value}


def _header_map(value: Any, path: str) -> dict[str, list[str]]:
    if not isinstance(value, Pairs):
        raise _type_error(value, path, "map[string][]string")
    return {_clean_str(k): ([] if v is None else _str_list(v, path)) for k, v in value}


def _any(value: Any, path: str) -> Any:
    return plain(value)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Pairs):
        raise _type_error(value, path, "map[string]interface {}")
    return {_clean_str(k): plain(v) for k, v in value}


@dataclass(frozen=True)
class Field:
    decode: Decoder
    # Aliases (snake_case spellings) store under their canonical field and only win when it is unset/zero.
    alias_of: str | None = None


class Schema:
    """A Go struct as the decoder sees it: its type name (for messages) and its JSON field names."""

    def __init__(self, go_name: str, fields: dict[str, Field]) -> None:
        self.go_name = go_name
        self.fields = fields
        self._folded = {_fold(name): name for name in fields}

    def lookup(self, key: str) -> str | None:
        if key in self.fields:  # Go prefers an exact match, then falls back to case-insensitive
            return key
        return self._folded.get(_fold(key))

    def decode(self, value: Any, path: str | None = None) -> dict[str, Any]:
        path = path or self.go_name.rsplit(".", 1)[-1]
        if not isinstance(value, Pairs):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go value of type {self.go_name}")
        out: dict[str, Any] = {}
        for key, item in value:
            name = self.lookup(key)
            if name is None:
                raise DecodeError(f"json: unknown field {go_quote(_clean_str(key))}")
            if item is None:  # null leaves the field unset, as Go does for every non-pointer type
                continue
            spec = self.fields[name]
            decoded = spec.decode(item, f"{path}.{name}")
            if decoded is None:
                continue
            out[name] = decoded
        for name, spec in self.fields.items():
            if spec.alias_of is not None and name in out:
                alias_value = out.pop(name)
                if not out.get(spec.alias_of):
                    out[spec.alias_of] = alias_value
        return out


def _nested(schema: Schema) -> Decoder:
    def decode(value: Any, path: str) -> dict[str, Any]:
        return schema.decode(value, path)

    return decode


def _nested_list(schema: Schema) -> Decoder:
    def decode(value: Any, path: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or isinstance(value, Pairs):
            raise _type_error(value, path, f"[]*{schema.go_name}")
        # A null element is a nil *CheckType: treated like an empty check (skipped).
        return [{} if v is None else schema.decode(v, path) for v in value]

    return decode


def _nested_map(schema: Schema) -> Decoder:
    def decode(value: Any, path: str) -> dict[str, dict[str, Any]]:
        if not isinstance(value, Pairs):
            raise _type_error(value, path, f"map[string]{schema.go_name}")
        return {_clean_str(k): ({} if v is None else schema.decode(v, path)) for k, v in value}

    return decode


S, B, INT, D = Field(_str), Field(_bool), Field(_int), Field(_duration)

CHECK_TYPE: Final = Schema(
    "structs.CheckType",
    {
        "CheckID": S,
        "Name": S,
        "Status": S,
        "Notes": S,
        "ScriptArgs": Field(_str_list),
        "HTTP": S,
        "Header": Field(_header_map),
        "Method": S,
        "Body": S,
        "DisableRedirects": B,
        "TCP": S,
        "TCPUseTLS": B,
        "UDP": S,
        "Interval": D,
        "AliasNode": S,
        "AliasService": S,
        "DockerContainerID": S,
        "Shell": S,
        "GRPC": S,
        "GRPCUseTLS": B,
        "H2PING": S,
        "H2PingUseTLS": B,
        "OSService": S,
        "TLSServerName": S,
        "TLSSkipVerify": B,
        "Timeout": D,
        "TTL": D,
        "SuccessBeforePassing": INT,
        "FailuresBeforeWarning": INT,
        "FailuresBeforeCritical": INT,
        "ProxyHTTP": S,
        "ProxyGRPC": S,
        "DeregisterCriticalServiceAfter": D,
        "OutputMaxSize": INT,
        # Consul's snake_case spellings (structs.CheckType.UnmarshalJSON).
        "args": Field(_str_list, alias_of="ScriptArgs"),
        "script_args": Field(_str_list, alias_of="ScriptArgs"),
        "deregister_critical_service_after": Field(_duration, alias_of="DeregisterCriticalServiceAfter"),
        "docker_container_id": Field(_str, alias_of="DockerContainerID"),
        "tls_server_name": Field(_str, alias_of="TLSServerName"),
        "tls_skip_verify": Field(_bool, alias_of="TLSSkipVerify"),
        "grpc_use_tls": Field(_bool, alias_of="GRPCUseTLS"),
    },
)

SERVICE_ADDRESS: Final = Schema("structs.ServiceAddress", {"Address": S, "Port": INT})
WEIGHTS: Final = Schema("structs.Weights", {"Passing": INT, "Warning": INT})

SERVICE_DEFINITION: Final = Schema(
    "structs.ServiceDefinition",
    {
        "Kind": S,
        "ID": S,
        "Name": S,
        "Tags": Field(_str_list),
        "Address": S,
        "TaggedAddresses": Field(_nested_map(SERVICE_ADDRESS)),
        "Meta": Field(_str_map),
        "Port": INT,
        "SocketPath": S,
        "Check": Field(_nested(CHECK_TYPE)),
        "Checks": Field(_nested_list(CHECK_TYPE)),
        "Weights": Field(_nested(WEIGHTS)),
        "Token": S,
        "EnableTagOverride": B,
        # Connect/mesh settings are accepted and echoed back, not interpreted: the dev registry has no mesh.
        "Proxy": Field(_object),
        "Connect": Field(_object),
        "Locality": Field(_object),
        "enable_tag_override": Field(_bool, alias_of="EnableTagOverride"),
        "tagged_addresses": Field(_nested_map(SERVICE_ADDRESS), alias_of="TaggedAddresses"),
    },
)

CHECK_UPDATE: Final = Schema("agent.checkUpdate", {"Status": S, "Output": S})


def decode_body(body: bytes, schema: Schema) -> dict[str, Any]:
    """Decode a request body against ``schema``; failures become Consul's 400 ``Request decode failed: …``."""
    try:
        value = load_json(body)
        if value is None:  # JSON null into a struct: a zero value, not an error
            return {}
        return schema.decode(value)
    except DecodeError as exc:
        raise APIError(400, f"Request decode failed: {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# Registration validation (agent_endpoint.go AgentRegisterService, in Consul's order)

_META_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
META_MAX_PAIRS: Final = 64
META_KEY_MAX: Final = 128
META_VALUE_MAX: Final = 512


def is_any_address(address: str) -> bool:
    """``ipaddr.IsAny``: only these literal spellings, not every address that means "any"."""
    return address in ("0.0.0.0", "::", "[::]")


def validate_meta(meta: dict[str, str]) -> str | None:
    """``structs.ValidateServiceMetadata`` for a plain service; None when valid."""
    if len(meta) > META_MAX_PAIRS:
        # Consul shares the node-metadata validator, so the message says "Node" even for a service.
        return f"Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
    for key, value in meta.items():
        problem = None
        if key == "":
            problem = "Key cannot be blank"
        elif not _META_KEY.fullmatch(key):
            problem = "Key contains invalid characters"
        elif len(key) > META_KEY_MAX:
            problem = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif key.startswith("consul-"):
            problem = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > META_VALUE_MAX:
            problem = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        if problem:
            return f"Couldn't load metadata pair ('{key}', '{value}'): {problem}"
    return None


def _is_empty(raw: dict[str, Any]) -> bool:
    # CheckType.Empty(): a check object with nothing set is dropped, so {"Check": {}} registers no check.
    return not any(raw.values())


def _check_def(raw: dict[str, Any]) -> CheckDef:
    return CheckDef(
        check_id=raw.get("CheckID", ""),
        name=raw.get("Name", ""),
        status=raw.get("Status", ""),
        notes=raw.get("Notes", ""),
        http=raw.get("HTTP", ""),
        method=raw.get("Method", ""),
        header=raw.get("Header", {}),
        body=raw.get("Body", ""),
        disable_redirects=raw.get("DisableRedirects", False),
        tls_skip_verify=raw.get("TLSSkipVerify", False),
        tls_server_name=raw.get("TLSServerName", ""),
        tcp=raw.get("TCP", ""),
        tcp_use_tls=raw.get("TCPUseTLS", False),
        udp=raw.get("UDP", ""),
        grpc=raw.get("GRPC", ""),
        grpc_use_tls=raw.get("GRPCUseTLS", False),
        h2ping=raw.get("H2PING", ""),
        h2ping_use_tls=raw.get("H2PingUseTLS", False),
        os_service=raw.get("OSService", ""),
        alias_node=raw.get("AliasNode", ""),
        alias_service=raw.get("AliasService", ""),
        docker_container_id=raw.get("DockerContainerID", ""),
        shell=raw.get("Shell", ""),
        script_args=raw.get("ScriptArgs", []),
        interval_ns=raw.get("Interval", 0),
        timeout_ns=raw.get("Timeout", 0),
        ttl_ns=raw.get("TTL", 0),
        dcsa_ns=raw.get("DeregisterCriticalServiceAfter", 0),
        output_max_size=raw.get("OutputMaxSize", 0),
        success_before_passing=raw.get("SuccessBeforePassing", 0),
        failures_before_warning=raw.get("FailuresBeforeWarning", 0),
        failures_before_critical=raw.get("FailuresBeforeCritical", 0),
        proxy_http=raw.get("ProxyHTTP", ""),
        proxy_grpc=raw.get("ProxyGRPC", ""),
    )


def validate_check(check: CheckDef) -> str | None:
    """``CheckType.Validate``; None when valid."""
    interval_check = bool(
        check.is_script() or check.http or check.tcp or check.udp or check.grpc or check.h2ping or check.os_service
    )
    alias = bool(check.alias_service)
    if check.interval_ns > 0 and check.ttl_ns > 0:
        return "Interval and TTL cannot both be specified"
    if interval_check and check.interval_ns <= 0:
        return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    if alias and check.ttl_ns > 0:
        return "TTL must be not be set for Alias checks"
    if alias and check.interval_ns > 0:
        return "Interval cannot be set for Alias checks"
    if not interval_check and not alias and check.ttl_ns <= 0:
        return "TTL must be > 0 for TTL checks"
    return None


def decode_registration(body: bytes) -> tuple[ServiceDef, list[CheckDef]]:
    """Decode and validate ``PUT /v1/agent/service/register``; errors are Consul's, in Consul's order."""
    raw = decode_body(body, SERVICE_DEFINITION)
    name = raw.get("Name", "")
    if not name:
        raise APIError(400, "Missing service name")
    address = raw.get("Address", "")
    if is_any_address(address):
        raise APIError(400, "Invalid service address")
    weights = (1, 1)
    if "Weights" in raw:
        w = raw["Weights"]
        weights = (w.get("Passing", 0), w.get("Warning", 0))
        if weights[0] < 1:
            raise APIError(400, "Invalid Weights: Passing must be greater than 0")
        if weights[1] < 0:
            raise APIError(400, "Invalid Weights: Warning must be greater or equal than 0")
    meta = raw.get("Meta", {})
    problem = validate_meta(meta)
    if problem:
        raise APIError(400, f"Invalid Service Meta: {problem}")
    raw_checks: list[dict[str, Any]] = []
    if "Check" in raw and not _is_empty(raw["Check"]):
        raw_checks.append(raw["Check"])
    raw_checks.extend(c for c in raw.get("Checks", []) if not _is_empty(c))
    checks = [_check_def(c) for c in raw_checks]
    for check in checks:
        problem = validate_check(check)
        if problem:
            raise APIError(400, f"Invalid check: {problem}")
    for check in checks:
        if check.status and check.status not in VALID_STATUSES:
            raise APIError(400, "Status for checks must 'passing', 'warning', 'critical'")
    for check in checks:
        if check.is_script():
            # Consul's default (and its -dev mode): script checks from the HTTP API are refused, as a 500.
            raise APIError(
                500,
                "Scripts are disabled on this agent from remote calls; to enable, configure "
                "'enable_script_checks' to true",
            )
    tagged = {
        k: {"Address": v.get("Address", ""), "Port": v.get("Port", 0)}
        for k, v in raw.get("TaggedAddresses", {}).items()
    }
    svc = ServiceDef(
        id=raw.get("ID", "") or name,
        name=name,
        tags=raw.get("Tags", []),
        address=address,
        port=raw.get("Port", 0),
        meta=meta,
        tagged_addresses=tagged,
        weights=weights,
        enable_tag_override=raw.get("EnableTagOverride", False),
        kind=raw.get("Kind", ""),
        socket_path=raw.get("SocketPath", ""),
        proxy=raw.get("Proxy"),
        connect=raw.get("Connect"),
        locality=raw.get("Locality"),
    )
    _default_tagged_addresses(svc)
    return svc, checks


def _default_tagged_addresses(svc: ServiceDef) -> None:
    """An IP service address also becomes the ``lan_ipv4``/``wan_ipv4`` (or ``_ipv6``) tagged addresses."""
    try:
        ip = ipaddress.ip_address(svc.address)
    except ValueError:
        return
    v4 = isinstance(ip, ipaddress.IPv4Address) or (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None)
    suffix = "ipv4" if v4 else "ipv6"
    for prefix in ("lan", "wan"):
        svc.tagged_addresses.setdefault(f"{prefix}_{suffix}", {"Address": svc.address, "Port": svc.port})


def decode_check_update(body: bytes) -> tuple[str, str]:
    raw = decode_body(body, CHECK_UPDATE)
    return raw.get("Status", ""), raw.get("Output", "")


# ---------------------------------------------------------------------------------------------------------
# PUT /v1/agent/check/register (structs.CheckDefinition: the CheckType fields plus the check's identity)

CHECK_DEFINITION: Final = Schema(
    "structs.CheckDefinition",
    {
        **{k: v for k, v in CHECK_TYPE.fields.items() if k != "CheckID"},
        "ID": S,
        "ServiceID": S,
        "Token": S,
        "service_id": Field(_str, alias_of="ServiceID"),
    },
)


def decode_check_registration(body: bytes) -> tuple[str, str, str, CheckDef]:
    """(check ID, name, service ID, definition) with Consul's checks in order: decode, name, status, type."""
    raw = decode_body(body, CHECK_DEFINITION)
    name = raw.get("Name", "")
    if not name:
        raise APIError(400, "Missing check name")
    status = raw.get("Status", "")
    if status and status not in VALID_STATUSES:
        raise APIError(400, "Bad check status")
    check = _check_def(raw)
    problem = validate_check(check)
    if problem:
        raise APIError(400, f"Invalid check: {problem}")
    if check.is_script():
        raise APIError(
            500,
            "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true",
        )
    return raw.get("ID", "") or name, name, raw.get("ServiceID", ""), check


# ---------------------------------------------------------------------------------------------------------
# PUT /v1/session/create (structs.Session; LockDelay as a Go duration or a number, small numbers are seconds)


def _lock_delay(value: Any, path: str) -> int | None:
    if isinstance(value, str):
        try:
            ns = parse_duration(value)
        except GoError as exc:
            raise DecodeError(str(exc)) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = int(value)
    else:
        return None
    return ns * 1_000_000_000 if ns < 1000 else ns


SERVICE_CHECK: Final = Schema("structs.ServiceCheck", {"ID": S, "Namespace": S})

SESSION: Final = Schema(
    "structs.Session",
    {
        "ID": S,
        "Name": S,
        "Node": S,
        "LockDelay": Field(_lock_delay),
        "Behavior": S,
        "TTL": S,
        "NodeChecks": Field(_str_list),
        "ServiceChecks": Field(_nested_list(SERVICE_CHECK)),
        "Checks": Field(_str_list),
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)


def decode_session(body: bytes) -> dict[str, Any]:
    """The fields given in a session creation body (an empty body means every default)."""
    if not body:
        return {}
    return decode_body(body, SESSION)


# ---------------------------------------------------------------------------------------------------------
# PUT /v1/txn (api.TxnOps: KV operations)


def _b64(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise _type_error(value, path, "[]uint8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("illegal base64 data at input byte 0") from None


def _uint(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << 64):
        return value
    raise _type_error(value, path, "uint64")


TXN_KV: Final = Schema(
    "api.KVTxnOp",
    {
        "Verb": S,
        "Key": S,
        "Value": Field(_b64),
        "Flags": Field(_uint),
        "Index": Field(_uint),
        "Session": S,
        "Namespace": S,
        "Partition": S,
    },
)
TXN_OP: Final = Schema(
    "api.TxnOp",
    {
        "KV": Field(_nested(TXN_KV)),
        "Node": Field(_object),
        "Service": Field(_object),
        "Check": Field(_object),
    },
)


def decode_txn(body: bytes) -> list[dict[str, Any]]:
    """The operations of a transaction; errors are Consul's ``Failed to parse body: …`` (400)."""
    try:
        value = load_json(body)
        if value is None:
            return []
        if not isinstance(value, list) or isinstance(value, Pairs):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go value of type api.TxnOps")
        return [{} if v is None else TXN_OP.decode(v, "TxnOp") for v in value]
    except DecodeError as exc:
        raise APIError(400, f"Failed to parse body: {exc}") from None
