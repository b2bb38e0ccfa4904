"""An upstream's instances from Consul: ``GET /v1/health/service/<name>?passing`` with blocking queries.

The poller is the discovery watcher's Consul poller (:class:`~stator.discover.consul.ConsulKVPoller`) pointed
at the health endpoint: the same index rules (``X-Consul-Index``, reset when it goes backwards, never below 1,
an immediate read after a broken connection), the same read timeout above ``wait × 17/16``, the same token
bucket when Consul answers at once. Only the request (``passing``, an optional ``tag``) and the answer differ.
A new passing instance therefore reaches the balancer as soon as Consul answers the held query — no polling
interval — and a failing health check takes the instance out within one check interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from stator.client import HTTPClient, ResponseTooLarge, UnexpectedStatus, expect_2xx
from stator.discover.consul import ConsulKVPoller, wait_param
from stator.discover.limiter import TokenBucket
from stator.discover.poller import PollError, PollResult
from stator.upstream.instances import Instance


class ConsulHealthPoller(ConsulKVPoller):
    def __init__(
        self,
        client_factory: Callable[[], HTTPClient],
        service: str,
        *,
        tag: str = "",
        wait: float = 300.0,
        limiter: TokenBucket | None = None,
        max_bytes: int = 4 * 1_048_576,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            client_factory, service, wait=wait, limiter=limiter, max_bytes=max_bytes, request_timeout=request_timeout
        )
        self._path = "/v1/health/service/" + quote(service, safe="")
        self.tag = tag

    async def poll(self) -> PollResult:
        await self.limiter.acquire()
        if self._client is None:
            self._client = self._factory()
        blocking = self.index > 0
        params: dict[str, str | int] = {"passing": "1"}
        if self.tag:
            params["tag"] = self.tag
        if blocking:
            params["index"] = self.index
            params["wait"] = wait_param(self.wait)
        self.requests += 1
        try:
            resp = await self._client.get(
                self._path, params=params, timeout=self._timeout(blocking), max_body=self.max_bytes
            )
        except ResponseTooLarge as exc:
            raise PollError("oversize", f"Consul health answer for {self._key!r} too large: {exc}") from None
        except httpx.TimeoutException as exc:
            self.index = 0
            raise PollError("timeout", f"Consul request timed out: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            self.index = 0  # possibly a restarted registry whose indexes started over: read at once next time
            raise PollError("transport", f"Consul request failed: {type(exc).__name__}: {exc}") from None
        try:
            expect_2xx(resp)
        except UnexpectedStatus as exc:
            raise PollError("http", str(exc)) from None
        index = self._header_index(resp, fallback=0)
        went_back = self._advance(index)
        return PollResult(resp.content, max(index, 1), reset=went_back)


def decode_health(scheme: str) -> Callable[[bytes | None], tuple[Instance, ...]]:
    """A decoder of ``/v1/health/service`` answers: each entry's ``Service.ID``, the address it should be dialled
    at (``Service.Address``, else ``Node.Address``: Consul leaves the former empty when the registration did)
    and ``Service.Port``. Raises ValueError on anything that is not such a list."""

    def decode(data: bytes | None) -> tuple[Instance, ...]:
        if data is None:
            return ()
        try:
            entries = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"Consul health answer is not JSON: {exc}") from None
        if not isinstance(entries, list):
            raise ValueError("Consul health answer is not a list")
        out: dict[str, Instance] = {}
        for entry in entries:
            instance = _instance(entry, scheme)
            out[instance.id] = instance
        return tuple(sorted(out.values(), key=lambda i: i.id))

    return decode


def _instance(entry: Any, scheme: str) -> Instance:
    service = entry.get("Service") if isinstance(entry, dict) else None
    node = entry.get("Node") if isinstance(entry, dict) else None
    if not isinstance(service, dict):
        raise ValueError("Consul health entry without a Service object")
    ident, port = service.get("ID"), service.get("Port")
    address = service.get("Address") or (node.get("Address") if isinstance(node, dict) else None)
    if not isinstance(ident, str) or not ident or type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"Consul health entry with a bad ID or Port: {ident!r} {port!r}")
    if not isinstance(address, str) or not address:
        raise ValueError(f"Consul health entry {ident!r} without an address")
    tags = service.get("Tags") or []
    meta = service.get("Meta") or {}
    return Instance(
        ident,
        address,
        port,
        scheme,
        tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
    )
