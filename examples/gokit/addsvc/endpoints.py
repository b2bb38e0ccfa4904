"""Sum and Concat as endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from examples.gokit.addsvc.service import AddService
from examples.gokit.kit import Endpoint


@dataclass(frozen=True)
class SumRequest:
    a: int
    b: int


@dataclass(frozen=True)
class SumResponse:
    v: int


@dataclass(frozen=True)
class ConcatRequest:
    a: str
    b: str


@dataclass(frozen=True)
class ConcatResponse:
    v: str


def make_sum(svc: AddService) -> Endpoint[SumRequest, SumResponse]:
    async def endpoint(request: SumRequest) -> SumResponse:
        return SumResponse(await svc.sum(request.a, request.b))

    return endpoint


def make_concat(svc: AddService) -> Endpoint[ConcatRequest, ConcatResponse]:
    async def endpoint(request: ConcatRequest) -> ConcatResponse:
        return ConcatResponse(await svc.concat(request.a, request.b))

    return endpoint
