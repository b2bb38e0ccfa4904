"""addsvc over HTTP (POST /sum, POST /concat), and the client side of stringsvc's HTTP transport: a
:class:`StringService` whose calls go through an upstream client (discovered, balanced, retried, broken)."""

from __future__ import annotations

from typing import Protocol

import httpx
from starlette.routing import Route

from examples.gokit.addsvc.endpoints import ConcatRequest, SumRequest, make_concat, make_sum
from examples.gokit.addsvc.service import AddService
from examples.gokit.kit import ServiceError, logging_middleware
from examples.gokit.transport_http import decoder, route
from stator.logs import Logger


def http_routes(svc: AddService, logger: Logger) -> list[Route]:
    sum_ = logging_middleware(logger, "sum", make_sum(svc))
    concat = logging_middleware(logger, "concat", make_concat(svc))
    return [route("/sum", sum_, decoder(SumRequest)), route("/concat", concat, decoder(ConcatRequest))]


class Caller(Protocol):
    """What the client needs of :class:`stator.upstream.Upstream`."""

    async def request(
        self, method: str, path: str, *, idempotent: bool | None = ..., json: object = ...
    ) -> httpx.Response: ...


class StringsClient:
    """stringsvc's methods over HTTP. Both are pure, so retries are safe (``idempotent=True``)."""

    def __init__(self, upstream: Caller) -> None:
        self.upstream = upstream

    async def _call(self, path: str, s: str) -> object:
        response = await self.upstream.request("POST", path, json={"s": s}, idempotent=True)
        body = response.json()
        if response.status_code != 200:
            error = ServiceError(f"stringsvc: {body.get('error', response.status_code)}")
            error.status_code = response.status_code if response.status_code < 500 else 502
            raise error
        return body["v"]

    async def uppercase(self, s: str) -> str:
        return str(await self._call("/uppercase", s))

    async def count(self, s: str) -> int:
        v = await self._call("/count", s)
        assert isinstance(v, int)
        return v
