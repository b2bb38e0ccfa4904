"""The HTTP transport both services use: decode a JSON request into a typed request, call the endpoint, encode
the typed response; business errors become 4xx JSON through the stator middleware (``status_code``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from examples.gokit.kit import Endpoint, ServiceError


class Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


Req = TypeVar("Req", bound=Dataclass)
Resp = TypeVar("Resp", bound=Dataclass)
_TYPES: dict[str, type] = {"str": str, "int": int}


class BadRequest(ServiceError):
    pass


def decoder(cls: type[Req]) -> Callable[[bytes], Req]:
    """JSON object → ``cls(**fields)``, each field checked against its annotation (``str`` or ``int``)."""

    def decode(body: bytes) -> Req:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            expected = _TYPES[str(f.type)]
            if type(value) is not expected:
                raise BadRequest(f"{f.name} must be of type {f.type}")
            fields[f.name] = value
        return cls(**fields)

    return decode


def route(path: str, endpoint: Endpoint[Req, Resp], decode: Callable[[bytes], Req]) -> Route:
    async def handle(request: Request) -> Response:
        response = await endpoint(decode(await request.body()))
        return Response(orjson.dumps(response), media_type="application/json")  # orjson encodes dataclasses

    return Route(path, handle, methods=["POST"])
