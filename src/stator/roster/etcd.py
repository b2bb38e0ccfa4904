"""Registration with etcd v3, through its JSON gateway (``/v3/...``) and the project HTTP client.

Why the gateway and not an etcd client library: every call registration needs (lease grant, keepalive, put,
range, revoke) is one small unary request, which the gateway serves at the same port as gRPC in every etcd since
3.4. Going through :class:`stator.client.HTTPClient` gives etcd calls the same debug logs, redaction, request ids,
timeouts and TLS as Consul calls, and no grpcio dependency (a large native wheel, with fork-safety caveats); the
maintained async libraries (``aetcd``, ``etcd3`` forks) would each bring one. The cost: a keepalive is one POST
per beat instead of a frame on a long-lived stream - at one beat per TTL/3 that is nothing.

Model: the instance lives at ``<prefix>/<service name>/<instance id>``, its value the instance as JSON, attached
to a lease of ``ttl`` seconds kept alive every ``ttl/3``. A crash stops the keepalives and etcd removes the key
when the lease lapses; a lost lease (etcd restarted empty, or the lease expired while we were cut off) is noticed
at the next keepalive and replaced: new lease, key put again. Deregistration revokes the lease, which deletes
the key with it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from stator.client import HTTPClient, expect_2xx
from stator.roster.roster import Instance

MAX_BODY = 1024 * 1024  # a range over one key: small; bigger is not etcd answering us
NOT_FOUND = 5  # gRPC status NOT_FOUND, as the gateway reports an unknown lease


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


class EtcdRegistrar:
    kind = "etcd"

    def __init__(self, client: HTTPClient, *, prefix: str = "/stator/services", ttl: float = 15.0) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        # etcd leases are whole seconds; less than 2 would expire between two beats of a third of it.
        self.ttl = max(2, round(ttl))
        self.lease: str | None = None
        self._status = "passing"

    @property
    def endpoint(self) -> str:
        return str(self.client.base_url).rstrip("/")

    @property
    def heartbeat_interval(self) -> float:
        return self.ttl / 3

    def key(self, instance: Instance) -> str:
        return f"{self.prefix}/{instance.name}/{instance.id}"

    def value(self, instance: Instance) -> bytes:
        doc = instance.as_json()
        doc["status"] = self._status
        doc["registered_at"] = time.time()
        return orjson.dumps(doc)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, json=body, max_body=MAX_BODY)
        expect_2xx(response)
        data = orjson.loads(response.content)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return data

    async def _grant(self) -> str:
        data = await self._post("/v3/lease/grant", {"TTL": str(self.ttl)})
        if data.get("error"):
            raise RuntimeError(f"lease grant failed: {data['error']}")
        lease = data.get("ID")
        if not lease:
            raise ValueError("lease grant answer without an ID")
        return str(lease)

    async def _keepalive(self, lease: str) -> bool:
        """Refresh the lease; False when etcd no longer has it."""
        data = await self._post("/v3/lease/keepalive", {"ID": lease})
        result = data.get("result")
        if not isinstance(result, dict):
            raise ValueError(f"lease keepalive answer without a result: {data.get('error') or data}")
        # An unknown or expired lease answers with TTL 0, which the gateway omits.
        return int(result.get("TTL", 0)) > 0

    async def _put(self, instance: Instance, lease: str) -> None:
        await self._post(
            "/v3/kv/put", {"key": b64(self.key(instance)), "value": b64(self.value(instance)), "lease": lease}
        )

    async def register(self, instance: Instance) -> None:
        lease = self.lease
        # Reuse a live lease (a transient failure, or the key alone went missing): one lease per instance.
        if lease is not None and not await self._keepalive(lease):
            lease = None
        if lease is None:
            lease = await self._grant()
            self.lease = lease
        await self._put(instance, lease)

    async def present(self, instance: Instance) -> bool:
        data = await self._post("/v3/kv/range", {"key": b64(self.key(instance)), "keys_only": True})
        kvs = data.get("kvs") or []
        # The key under someone else's lease (or none) would vanish with that lease: not our registration.
        return any(str(kv.get("lease", "")) == self.lease for kv in kvs if isinstance(kv, dict))

    async def heartbeat(self, instance: Instance, ready: bool, note: str) -> bool:
        lease = self.lease
        if lease is None or not await self._keepalive(lease):
            return False
        status = "passing" if ready else "critical"
        if status != self._status:
            # etcd has no health checks: readers see readiness in the value (discovery can filter on it).
            self._status = status
            await self._put(instance, lease)
        return True

    async def deregister(self, instance: Instance) -> None:
        lease = self.lease
        if lease is None:
            return
        response = await self.client.post("/v3/lease/revoke", json={"ID": lease}, max_body=MAX_BODY)
        if response.status_code == 404 or _grpc_code(response.content) == NOT_FOUND:
            self.lease = None  # already expired or etcd restarted: the key is gone with it
            return
        expect_2xx(response)
        self.lease = None

    async def aclose(self) -> None:
        await self.client.aclose()


def _grpc_code(content: bytes) -> int | None:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, int) else None
