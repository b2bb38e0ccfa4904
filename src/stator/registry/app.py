"""The registry application: Consul's routing and wire rules in front of the endpoints.

Each endpoint is a small function ``(context, call) -> Response | Park`` over one state module (decode the call,
act, encode the answer). This module does what is common to all of them, the way Consul's HTTP layer does it:
the longest-prefix route, 301 on unclean paths, ``405`` with ``Allow``, ``OPTIONS``, ``404 Invalid URL path``,
Enterprise-only parameters refused, body limits (413), and API errors as plain text.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from stator.logs import Logger
from stator.registry import ui
from stator.registry.checks import CheckRunner
from stator.registry.endpoints import agent, catalog, kv, session
from stator.registry.endpoints.common import TEXT_TYPE, Call, text_response
from stator.registry.errors import APIError
from stator.registry.http import Connection, Park, Request, Response
from stator.registry.state import State
from stator.registry.wire import clean_path

# Consul has no cap on JSON bodies; a process serving untrusted input needs one.
MAX_BODY: Final = 8 * 1024 * 1024

Endpoint = Callable[[Any, Call], Awaitable[Response | Park]]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    endpoint: Endpoint
    # Endpoints that parse Enterprise metadata reject ?ns= / ?partition= on OSS Consul.
    ent: bool = True
    body_limit: int = MAX_BODY


EXACT: Final[dict[str, Route]] = {
    "/v1/agent/self": Route(("GET",), agent.agent_self, ent=False),
    "/v1/agent/members": Route(("GET",), agent.agent_members, ent=False),
    "/v1/agent/services": Route(("GET",), agent.agent_services),
    "/v1/agent/checks": Route(("GET",), agent.agent_checks),
    "/v1/agent/service/register": Route(("PUT",), agent.agent_register),
    "/v1/agent/check/register": Route(("PUT",), agent.check_register),
    "/v1/agent/maintenance": Route(("PUT",), agent.node_maintenance, ent=False),
    "/v1/catalog/services": Route(("GET",), catalog.catalog_services),
    "/v1/catalog/nodes": Route(("GET",), catalog.catalog_nodes),
    "/v1/catalog/register": Route(("PUT",), catalog.catalog_register),
    "/v1/catalog/deregister": Route(("PUT",), catalog.catalog_deregister),
    "/v1/catalog/datacenters": Route(("GET",), catalog.catalog_datacenters, ent=False),
    "/v1/status/leader": Route(("GET",), catalog.status_leader, ent=False),
    "/v1/status/peers": Route(("GET",), catalog.status_peers, ent=False),
    "/v1/session/create": Route(("PUT",), session.session_create),
    "/v1/session/list": Route(("GET",), session.session_list),
    "/v1/txn": Route(("PUT",), kv.txn, body_limit=kv.TXN_MAX_REQ_LEN),
}
# Subtree patterns, longest first (Go's ServeMux picks the longest matching pattern).
PREFIXES: Final[dict[str, Route]] = {
    "/v1/agent/service/deregister/": Route(("PUT",), agent.agent_deregister),
    "/v1/agent/service/maintenance/": Route(("PUT",), agent.service_maintenance),
    "/v1/agent/service/": Route(("GET",), agent.agent_service),
    "/v1/agent/check/deregister/": Route(("PUT",), agent.check_deregister),
    "/v1/agent/check/pass/": Route(("PUT",), agent.check_pass),
    "/v1/agent/check/warn/": Route(("PUT",), agent.check_warn),
    "/v1/agent/check/fail/": Route(("PUT",), agent.check_fail),
    "/v1/agent/check/update/": Route(("PUT",), agent.check_update),
    "/v1/catalog/service/": Route(("GET",), catalog.catalog_service),
    "/v1/catalog/node/": Route(("GET",), catalog.catalog_node),
    "/v1/health/service/": Route(("GET",), catalog.health_service),
    "/v1/health/checks/": Route(("GET",), catalog.health_checks),
    "/v1/health/state/": Route(("GET",), catalog.health_state),
    "/v1/health/node/": Route(("GET",), catalog.health_node),
    "/v1/session/destroy/": Route(("PUT",), session.session_destroy),
    "/v1/session/renew/": Route(("PUT",), session.session_renew),
    "/v1/session/info/": Route(("GET",), session.session_info),
    "/v1/session/node/": Route(("GET",), session.session_node),
    "/v1/kv/": Route(("GET", "PUT", "DELETE"), kv.kv, body_limit=kv.KV_MAX_VALUE_SIZE),
}
_SORTED_PREFIXES: Final = sorted(PREFIXES.items(), key=lambda item: -len(item[0]))


def route(path: str) -> tuple[Route | None, str]:
    found = EXACT.get(path)
    if found is not None:
        return found, ""
    for prefix, r in _SORTED_PREFIXES:
        if path.startswith(prefix):
            return r, path[len(prefix) :]
    return None, ""


class RegistryApp:
    """Serves the registry's state; the HTTP server calls :meth:`handle` and parks what it returns as a Park."""

    def __init__(
        self,
        state: State,
        runner: CheckRunner,
        logger: Logger,
        *,
        persister: Any = None,
        max_query_time: float = 600.0,
        default_query_time: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.runner = runner
        self.logger = logger
        self.persister = persister
        self.max_query_time = max_query_time
        self.default_query_time = default_query_time
        self.rng = rng or random.Random()
        self.started = time.time()

    # ------------------------------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        try:
            if self.persister is not None:
                self.persister.load()
            await self.runner.start()
            self.state.sessions.start_timers()
            if self.persister is not None:
                self.persister.start()
        except Exception as exc:
            self.logger.error("registry startup failed", exc=exc)
            raise

    def begin_shutdown(self) -> None:
        """Answer every parked query now, so shutdown is not held up by long polls."""
        self.state.watch.wake_all()

    async def shutdown(self) -> None:
        self.begin_shutdown()
        self.state.sessions.stop_timers()
        await self.runner.stop()
        if self.persister is not None:
            await self.persister.stop()

    # ------------------------------------------------------------------------------------------ HTTP

    def body_limit(self, method: str, path: str) -> int:
        r, _ = route(path)
        return r.body_limit if r is not None else MAX_BODY

    def too_large(self, method: str, path: str, size: int) -> Response:
        r, _ = route(path)
        if r is not None and r.endpoint is kv.kv:
            return kv.kv_too_large(size)
        if r is not None and r.endpoint is kv.txn:
            return kv.txn_too_large(size)
        return text_response(413, f"Request body({size} bytes) too large, max size: {MAX_BODY} bytes")

    def park(self, conn: Connection, park: Park) -> None:
        self.state.watch.park(conn, park)

    def unpark(self, conn: Connection) -> None:
        self.state.watch.unpark(conn)

    async def handle(self, req: Request) -> Response | Park:
        started = time.perf_counter()
        try:
            result = await self._dispatch(req)
        except APIError as exc:
            result = Response(
                exc.status, exc.text.encode(), [TEXT_TYPE, *[(k.encode(), v.encode()) for k, v in exc.headers]]
            )
        except Exception as exc:
            # An unexpected failure is a bug; answer the way Consul answers any handler error (500 + text).
            self.logger.error("unhandled error", exc=exc, method=req.method, path=req.path)
            result = Response(500, (str(exc) or type(exc).__name__).encode(), [TEXT_TYPE])
        if self.logger.enabled("debug"):
            self.logger.debug(
                "request",
                method=req.method,
                path=req.path,
                status=result.status if isinstance(result, Response) else "parked",
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return result

    async def _dispatch(self, req: Request) -> Response | Park:
        path = req.path
        cleaned = clean_path(path)
        if cleaned != path:
            return _redirect(cleaned, req)
        if path == ui.PREFIX or path.startswith(ui.PREFIX + "/"):  # the registry UI, like Consul's /ui/
            return await ui.handle(self, req)
        r, rest = route(path)
        if r is None:
            if (path + "/") in PREFIXES:
                return _redirect(path + "/", req)
            if path == "/":
                return text_response(200, "Consul Agent (stator dev registry)")
            if path.startswith("/v1/"):
                raise APIError(404, "Invalid URL path: not a recognized HTTP API endpoint")
            return Response(404)
        if req.method == "OPTIONS":
            return Response(200)
        if req.method not in r.methods:
            allow = ",".join(("OPTIONS", *r.methods))
            raise APIError(405, f"method {req.method} not allowed", [("allow", allow)])
        call = Call(req, rest)
        if r.ent:
            _reject_enterprise(call)
        return await r.endpoint(self, call)


def _reject_enterprise(call: Call) -> None:
    if call.get("ns"):
        raise APIError(400, 'Bad request: Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature')
    if call.headers.get("x-consul-namespace"):
        raise APIError(
            400, 'Bad request: Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature'
        )
    if call.get("partition"):
        raise APIError(
            400, 'Bad request: Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature'
        )


def _redirect(location: str, req: Request) -> Response:
    raw_query = req.raw_query.decode("latin-1")
    target = location + ("?" + raw_query if raw_query else "")
    body = b""
    if req.method in ("GET", "HEAD"):
        body = f'<a href="{target}">Moved Permanently</a>.\n\n'.encode()
    return Response(301, body, [(b"location", target.encode()), (b"content-type", b"text/html; charset=utf-8")])
