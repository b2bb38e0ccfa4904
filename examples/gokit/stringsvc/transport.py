"""stringsvc over HTTP: POST /uppercase and POST /count, each endpoint wrapped in the logging middleware."""

from __future__ import annotations

from starlette.routing import Route

from examples.gokit.kit import logging_middleware
from examples.gokit.stringsvc.endpoints import CountRequest, UppercaseRequest, make_count, make_uppercase
from examples.gokit.stringsvc.service import StringService
from examples.gokit.transport_http import decoder, route
from stator.logs import Logger


def http_routes(svc: StringService, logger: Logger) -> list[Route]:
    uppercase = logging_middleware(logger, "uppercase", make_uppercase(svc))
    count = logging_middleware(logger, "count", make_count(svc))
    return [route("/uppercase", uppercase, decoder(UppercaseRequest)), route("/count", count, decoder(CountRequest))]
