"""Each method as an endpoint: a typed request in, a typed response out."""

from __future__ import annotations

from dataclasses import dataclass

from examples.gokit.kit import Endpoint
from examples.gokit.stringsvc.service import StringService


@dataclass(frozen=True)
class UppercaseRequest:
    s: str


@dataclass(frozen=True)
class UppercaseResponse:
    v: str


@dataclass(frozen=True)
class CountRequest:
    s: str


@dataclass(frozen=True)
class CountResponse:
    v: int


def make_uppercase(svc: StringService) -> Endpoint[UppercaseRequest, UppercaseResponse]:
    async def endpoint(request: UppercaseRequest) -> UppercaseResponse:
        return UppercaseResponse(await svc.uppercase(request.s))

    return endpoint


def make_count(svc: StringService) -> Endpoint[CountRequest, CountResponse]:
    async def endpoint(request: CountRequest) -> CountResponse:
        return CountResponse(await svc.count(request.s))

    return endpoint
