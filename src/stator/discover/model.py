"""The services document: its schema, its decoder, and the immutable values the watcher publishes.

Schema (the seed's shape; ``docs/discovery.md`` shows it to operators)::

    [
      {"uri": "http://pool04.boxworld.org/api/v2",
       "capabilities": [{"name": "resize", "capacity": 23}]}
    ]

* the document is a JSON array of services (``{"services": [...]}``, the shape ``GET /services`` answers with, is
  accepted too, so one service's answer can seed another's source);
* ``uri``: an absolute ``http``/``https`` URL with a host, at most 2048 characters, no whitespace, control
  characters or credentials (``user:pass@`` would be republished by ``/services``); unique across the document
  (compared on scheme, host, port and path, case-insensitively where URLs are);
* ``capabilities``: an array (may be empty) of ``{"name": non-empty string of at most 256 characters without
  control characters, "capacity": integer from 0 to 2**63-1}``; names unique within a service;
* unknown keys are ignored, so producers can add fields before consumers know them; a wrong type, a missing
  required key or any invalid entry rejects the *whole* document (the watcher then keeps its last good set).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

MAX_URI: Final = 2048
MAX_NAME: Final = 256
MAX_CAPACITY: Final = 2**63 - 1
_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# The document the demo seeds (``make demo``) and the docs show: the seed blog post's photo resizers.
EXAMPLE_DOCUMENT: Final = (
    {"uri": "http://pool04.boxworld.org/api/v2", "capabilities": [{"name": "resize", "capacity": 23}]},
    {"uri": "http://pool07.boxworld.org/api/v2", "capabilities": [{"name": "resize", "capacity": 12}]},
    {
        "uri": "https://thumbs.boxworld.org:8443/api/v1",
        "capabilities": [{"name": "resize", "capacity": 40}, {"name": "thumbnail", "capacity": 200}],
    },
)


class InvalidDocument(ValueError):
    """A services document that cannot be used. ``kind`` is ``empty``, ``json`` or ``schema``."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    capacity: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "capacity": self.capacity}


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    uri: str
    capabilities: tuple[Capability, ...]

    def as_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "capabilities": [c.as_json() for c in self.capabilities]}

    def capacity(self, name: str) -> int:
        """Capacity for the named capability (0 when the service does not offer it)."""
        for cap in self.capabilities:
            if cap.name == name:
                return cap.capacity
        return 0


def _bad_text(value: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _uri_key(where: str, value: Any) -> tuple[str, tuple[str, str, int, str, str]]:
    """Validate a service URI; return it with the key duplicates are detected on."""
    if not isinstance(value, str) or not value:
        raise InvalidDocument("schema", f"{where}: must be a non-empty string")
    if len(value) > MAX_URI:
        raise InvalidDocument("schema", f"{where}: longer than {MAX_URI} characters")
    if _bad_text(value) or any(c.isspace() for c in value):
        raise InvalidDocument("schema", f"{where}: contains whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. "http://[zz]/": brackets around something that is not an IP address
        raise InvalidDocument("schema", f"{where}: not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidDocument("schema", f"{where}: scheme must be http or https, got {value!r}")
    if "@" in parts.netloc:
        raise InvalidDocument("schema", f"{where}: must not carry credentials")
    host = parts.hostname or ""
    if not host:
        raise InvalidDocument("schema", f"{where}: has no host: {value!r}")
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidDocument("schema", f"{where}: bad IPv6 address {host!r}") from None
    elif not _HOST.match(host):
        raise InvalidDocument("schema", f"{where}: bad host {host!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidDocument("schema", f"{where}: bad port in {value!r}") from None
    path = parts.path or "/"
    return value, (scheme, host, port or _DEFAULT_PORTS[scheme], path, parts.query)


def _capability(where: str, value: Any) -> Capability:
    if not isinstance(value, dict):
        raise InvalidDocument("schema", f"{where}: must be an object")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidDocument("schema", f"{where}.name: must be a non-empty string")
    if len(name) > MAX_NAME or _bad_text(name):
        raise InvalidDocument("schema", f"{where}.name: longer than {MAX_NAME} or has control characters")
    capacity = value.get("capacity")
    # bool is an int in Python but not a capacity; floats (even 3.0) are rejected rather than guessed at.
    if type(capacity) is not int:
        raise InvalidDocument("schema", f"{where}.capacity: must be an integer")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidDocument("schema", f"{where}.capacity: must be between 0 and {MAX_CAPACITY}, got {capacity}")
    return Capability(name, capacity)


def _service(where: str, value: Any) -> tuple[ServiceEntry, tuple[str, str, int, str, str]]:
    if not isinstance(value, dict):
        raise InvalidDocument("schema", f"{where}: must be an object")
    if "uri" not in value:
        raise InvalidDocument("schema", f"{where}.uri: required")
    uri, key = _uri_key(f"{where}.uri", value["uri"])
    caps_raw = value.get("capabilities")
    if not isinstance(caps_raw, list):
        raise InvalidDocument("schema", f"{where}.capabilities: required, must be an array")
    caps = tuple(_capability(f"{where}.capabilities[{i}]", c) for i, c in enumerate(caps_raw))
    names = [c.name for c in caps]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidDocument("schema", f"{where}.capabilities: duplicate name {dup!r}")
    return ServiceEntry(uri, caps), key


def decode_services(data: bytes) -> tuple[ServiceEntry, ...]:
    """Decode and validate a services document; raise :class:`InvalidDocument` saying where it is wrong."""
    if not data.strip():
        raise InvalidDocument("empty", "empty document")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument("json", f"not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "services" in doc:
        doc = doc["services"]
        top = "services"
    else:
        top = "document"
    if not isinstance(doc, list):
        raise InvalidDocument("schema", f"{top}: must be an array of services")
    seen: dict[tuple[str, str, int, str, str], int] = {}
    out = []
    for i, raw in enumerate(doc):
        entry, key = _service(f"{top}[{i}]", raw)
        if key in seen:
            raise InvalidDocument("schema", f"{top}[{i}].uri: duplicate of {top}[{seen[key]}].uri ({entry.uri!r})")
        seen[key] = i
        out.append(entry)
    return tuple(out)


def encode_services(services: tuple[ServiceEntry, ...] | list[ServiceEntry]) -> bytes:
    """The canonical document for ``services`` (what :func:`decode_services` reads back unchanged)."""
    return orjson.dumps([s.as_json() for s in services])
