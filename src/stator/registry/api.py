"""The HTTP API: a plain ASGI app speaking Consul's wire protocol (routes, methods, errors, blocking queries).

No framework: Consul's behaviour lives in details a framework would normalise away (presence-only query flags,
Go's query parsing, ``405`` with ``Allow: OPTIONS,PUT``, plain-text errors, 301 on unclean paths, headers on a
``404``). Blocking queries park on one future each, registered with the state under a topic; a write resolves
the futures of its topics, a timer resolves it at the deadline, and a watcher on ``receive`` resolves it when the
client goes away, so an abandoned query frees its waiter at once instead of at its timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import orjson

from stator.logs import Logger
from stator.registry.bexpr import BexprError, compile_filter
from stator.registry.checks import CheckRunner, truncate_output
from stator.registry.decode import decode_check_update, decode_registration
from stator.registry.errors import APIError
from stator.registry.model import CRITICAL, PASSING, VALID_STATUSES, WARNING
from stator.registry.state import CONSUL_VERSION, DEFAULT_OUTPUT_MAX, State, Topic
from stator.registry.wire import (
    GoError,
    clean_path,
    go_quote,
    parse_bool,
    parse_duration,
    parse_query,
    parse_uint,
    query_encode,
)

T = TypeVar("T")
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KV_MAX_VALUE_SIZE: Final = 512 * 1024
# Consul has no cap on JSON bodies; a process serving untrusted input needs one.
MAX_BODY: Final = 8 * 1024 * 1024
KV_SIZE_DOC: Final = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected while its query was parked: there is nobody to answer."""


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class Request:
    __slots__ = ("_body", "headers", "method", "path", "query", "raw_query", "receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.raw_query: bytes = scope.get("query_string", b"")
        self.query = parse_query(self.raw_query)
        self.headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            self.headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        self.receive = receive
        self._body: bytes | None = None

    def has(self, name: str) -> bool:
        return name in self.query

    def get(self, name: str) -> str:
        """``url.Values.Get``: the first value, or "" when absent."""
        values = self.query.get(name)
        return values[0] if values else ""

    async def body(self, limit: int = MAX_BODY) -> bytes:
        if self._body is not None:
            return self._body
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(size)
            chunks.append(chunk)
            more = msg.get("more_body", False)
        self._body = b"".join(chunks)
        return self._body


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] | None = None


@dataclass
class QueryOptions:
    index: int = 0
    wait_ns: int = 0
    stale: bool = False
    consistent: bool = False


Handler = Callable[[Request, str], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    handler: Handler
    # Endpoints that parse Enterprise metadata reject ?ns= / ?partition= on OSS Consul.
    ent: bool = True


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        try:
            msg = await receive()
        except Exception:
            return
        if msg["type"] == "http.disconnect":
            return


def _resolve(fut: asyncio.Future[None], *_: object) -> None:
    if not fut.done():
        fut.set_result(None)


def query_timeout(wait_ns: int, max_query_time: float, default_query_time: float, rng: random.Random) -> float:
    """Consul's blocking timeout: ``wait`` capped at the max (unset/<=0: the default) plus up to 1/16 jitter."""
    timeout = wait_ns / 1e9
    if timeout > max_query_time:
        timeout = max_query_time
    elif timeout <= 0:
        timeout = default_query_time
    return timeout + rng.uniform(0, timeout / 16)


class RegistryApp:
    """The ASGI application. ``lifespan`` startup restores the snapshot and starts the checks."""

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
        self._exact: dict[str, Route] = {
            "/v1/agent/self": Route(("GET",), self.agent_self, ent=False),
            "/v1/agent/services": Route(("GET",), self.agent_services),
            "/v1/agent/checks": Route(("GET",), self.agent_checks),
            "/v1/agent/service/register": Route(("PUT",), self.agent_register),
            "/v1/catalog/services": Route(("GET",), self.catalog_services),
            "/v1/catalog/datacenters": Route(("GET",), self.catalog_datacenters, ent=False),
            "/v1/status/leader": Route(("GET",), self.status_leader, ent=False),
            "/v1/status/peers": Route(("GET",), self.status_peers, ent=False),
        }
        # Subtree patterns, longest first (Go's ServeMux picks the longest matching pattern).
        prefixes = {
            "/v1/agent/service/deregister/": Route(("PUT",), self.agent_deregister),
            "/v1/agent/service/": Route(("GET",), self.agent_service),
            "/v1/agent/check/pass/": Route(("PUT",), self._ttl_handler(PASSING)),
            "/v1/agent/check/warn/": Route(("PUT",), self._ttl_handler(WARNING)),
            "/v1/agent/check/fail/": Route(("PUT",), self._ttl_handler(CRITICAL)),
            "/v1/agent/check/update/": Route(("PUT",), self.agent_check_update),
            "/v1/catalog/service/": Route(("GET",), self.catalog_service),
            "/v1/health/service/": Route(("GET",), self.health_service),
            "/v1/kv/": Route(("GET", "PUT", "DELETE"), self.kv),
        }
        self._prefixes = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))
        self._prefix_set = frozenset(prefixes)

    # ------------------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    self.logger.error("registry startup failed", exc=exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if self.persister is not None:
            self.persister.load()
        await self.runner.start()
        if self.persister is not None:
            self.persister.start()

    def begin_shutdown(self) -> None:
        """Answer every parked query now, so the server's graceful shutdown is not held up by long polls."""
        self.state.wake_all()

    async def shutdown(self) -> None:
        self.begin_shutdown()
        await self.runner.stop()
        if self.persister is not None:
            await self.persister.stop()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0
        req = Request(scope, receive)
        try:
            resp = await self._dispatch(req)
        except ClientGone:
            return
        except APIError as exc:
            resp = Response(
                exc.status, exc.text.encode(), [*_TEXT, *[(k.encode(), v.encode()) for k, v in exc.headers]]
            )
        except Exception as exc:
            # An unexpected failure is a bug; answer the way Consul answers any handler error (500 + text).
            self.logger.error("unhandled error", exc=exc, method=req.method, path=req.path)
            resp = Response(500, (str(exc) or type(exc).__name__).encode(), list(_TEXT))
        status = resp.status
        headers = resp.headers or []
        headers.append((b"content-length", str(len(resp.body)).encode()))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": resp.body})
        except OSError:
            return  # client went away while we answered
        if self.logger.enabled("debug"):
            self.logger.debug(
                "request",
                method=req.method,
                path=req.path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    async def _dispatch(self, req: Request) -> Response:
        path = req.path
        cleaned = clean_path(path)
        if cleaned != path:
            return _redirect(cleaned, req)
        route, rest = self._route(path)
        if route is None:
            if (path + "/") in self._prefix_set:
                return _redirect(path + "/", req)
            if path == "/":
                return Response(200, b"Consul Agent (stator dev registry)", list(_TEXT))
            if path.startswith("/v1/"):
                raise APIError(404, "Invalid URL path: not a recognized HTTP API endpoint")
            return Response(404)
        if req.method == "OPTIONS":
            return Response(200)
        if req.method not in route.methods:
            allow = ",".join(("OPTIONS", *route.methods))
            raise APIError(405, f"method {req.method} not allowed", [("allow", allow)])
        if route.ent:
            _reject_enterprise(req)
        return await route.handler(req, rest)

    def _route(self, path: str) -> tuple[Route | None, str]:
        route = self._exact.get(path)
        if route is not None:
            return route, ""
        for prefix, route in self._prefixes:
            if path.startswith(prefix):
                return route, path[len(prefix) :]
        return None, ""

    # ------------------------------------------------------------------------------------------ helpers

    def _json(self, req: Request, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        if req.has("pretty"):
            body = (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode()
        else:
            body = orjson.dumps(obj)
        return Response(200, body, [_JSON, *(headers or [])])

    def _query_options(self, req: Request) -> QueryOptions:
        """Consul's ``parse``: consistency flags, then ``wait``, then ``index`` (that order decides which error
        a request with several bad parameters gets)."""
        opts = QueryOptions(stale=req.has("stale"), consistent=req.has("consistent"))
        if opts.stale and opts.consistent:
            raise APIError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        wait = req.get("wait")
        if wait:
            try:
                opts.wait_ns = parse_duration(wait)
            except GoError:
                raise APIError(400, "Invalid wait time") from None
        index = req.get("index")
        if index:
            try:
                opts.index = parse_uint(index)
            except GoError:
                raise APIError(400, "Invalid index") from None
        return opts

    def _check_dc(self, req: Request) -> None:
        dc = req.get("dc")
        if dc and dc.lower() != self.state.datacenter.lower():
            # A real agent forwards to the other datacenter; there is none to forward to.
            raise APIError(500, "No path to datacenter")

    @staticmethod
    def _meta_headers(index: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-consul-index", str(max(index, 1)).encode()),
            (b"x-consul-knownleader", b"true"),
            (b"x-consul-lastcontact", b"0"),
        ]

    async def _blocking(
        self, req: Request, opts: QueryOptions, topic: Topic, compute: Callable[[], tuple[int, T]]
    ) -> tuple[int, T]:
        """Run ``compute`` now and, if the index has not moved past ``?index``, each time ``topic`` changes
        until it has or the (capped, jittered) wait runs out. Returns (index >= 1, result)."""
        index, result = compute()
        index = max(index, 1)
        if opts.index == 0 or index > opts.index or self.state.shutting_down:
            return index, result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query_timeout(opts.wait_ns, self.max_query_time, self.default_query_time, self.rng)
        disconnect: asyncio.Future[None] | None = None
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if disconnect is None:
                    disconnect = asyncio.ensure_future(_wait_disconnect(req.receive))
                fut: asyncio.Future[None] = loop.create_future()
                self.state.add_waiter(topic, fut)
                timer = loop.call_later(remaining, _resolve, fut)

                def on_disconnect(_: object, fut: asyncio.Future[None] = fut) -> None:
                    _resolve(fut)

                disconnect.add_done_callback(on_disconnect)
                try:
                    await fut
                finally:
                    timer.cancel()
                    self.state.remove_waiter(topic, fut)
                    disconnect.remove_done_callback(on_disconnect)
                if disconnect.done():
                    raise ClientGone
                index, result = compute()
                index = max(index, 1)
                if index > opts.index or self.state.shutting_down:
                    break
        except BaseException:
            if disconnect is not None and not disconnect.done():
                disconnect.cancel()
            raise
        # On success the disconnect watcher is left to finish by itself: uvicorn's receive() returns
        # http.disconnect as soon as the response is complete, which costs less than cancelling a task.
        return index, result

    # ------------------------------------------------------------------------------------------ agent

    async def agent_self(self, req: Request, _: str) -> Response:
        s = self.state
        config = {
            "Datacenter": s.datacenter,
            "PrimaryDatacenter": s.datacenter,
            "NodeName": s.node_name,
            "NodeID": s.node_id,
            "Revision": "stator-dev-registry",
            "Server": True,
            "Version": CONSUL_VERSION,
            "BuildDate": "",
        }
        member = {
            "Name": s.node_name,
            "Addr": s.node_address,
            "Port": 8301,
            "Tags": {"dc": s.datacenter, "role": "consul", "port": "8300", "build": CONSUL_VERSION, "vsn": "2"},
            "Status": 1,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }
        stats = {
            "agent": {"checks": str(len(s.agent_checks)), "services": str(len(s.agent_services))},
            "build": {"version": CONSUL_VERSION, "revision": "stator-dev-registry", "prerelease": ""},
            "kv": {"keys": str(s.kv_count())},
            "raft": {"applied_index": str(s.index), "state": "Leader"},
            # Not in Consul: parked blocking queries, for benchmarks and operators of the dev registry.
            "stator": {"blocked_queries": str(s.waiter_count())},
        }
        body = {
            "Config": config,
            "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": member,
            "Stats": stats,
            "Meta": s.node_meta(),
        }
        return self._json(req, body)

    async def agent_services(self, req: Request, _: str) -> Response:
        out = {sid: self.state.agent_service_json(svc) for sid, svc in self.state.agent_services.items()}
        return self._json(req, self._filter(req, out))

    async def agent_service(self, req: Request, service_id: str) -> Response:
        opts = self._query_options(req)
        want = req.get("hash")
        found = self.state.agent_service_with_hash(service_id)
        if found is None:
            raise APIError(404, f"unknown service ID: {service_id}")
        if want and found[0] == want:
            # Hash-based blocking: park until the definition's hash differs (or the service goes away).
            def compute() -> tuple[int, tuple[str, dict[str, Any]] | None]:
                now = self.state.agent_service_with_hash(service_id)
                return (2 if now is None or now[0] != want else 1), now

            _, latest = await self._blocking(req, QueryOptions(1, opts.wait_ns), ("agentsvc", service_id), compute)
            if latest is None:
                raise APIError(404, f"unknown service ID: {service_id}")
            found = latest
        digest, body = found
        return self._json(req, body, [(b"x-consul-contenthash", digest.encode())])

    async def agent_checks(self, req: Request, _: str) -> Response:
        node = self.state.node_name
        out = {cid: c.to_json(node) for cid, c in self.state.agent_checks.items()}
        return self._json(req, self._filter(req, out))

    async def agent_register(self, req: Request, _: str) -> Response:
        body = await self._read_body(req)
        svc, checks = decode_registration(body)
        replace = req.has("replace-existing-checks") and req.get("replace-existing-checks") in ("", "true")
        existed = svc.id in self.state.agent_services
        result = self.state.register_service(svc, checks, replace_existing_checks=replace)
        self.logger.info(
            "service re-registered" if existed else "service registered",
            service_id=svc.id,
            service=svc.name,
            address=svc.address,
            port=svc.port,
            tags=svc.tags,
            checks=result.started,
        )
        return Response(200)

    async def agent_deregister(self, req: Request, service_id: str) -> Response:
        if service_id not in self.state.agent_services:
            raise APIError(
                404,
                f"Unknown service ID {go_quote(service_id)}. "
                "Ensure that the service ID is passed, not the service name.",
            )
        self.state.deregister_service(service_id)
        self.logger.info("service deregistered", service_id=service_id)
        return Response(200)

    def _ttl_handler(self, status: str) -> Handler:
        async def handler(req: Request, check_id: str) -> Response:
            self._ttl_update(check_id, status, req.get("note"))
            return Response(200)

        return handler

    def _ttl_update(self, check_id: str, status: str, output: str, truncate: bool = False) -> None:
        check = self.state.agent_checks.get(check_id)
        if check is None:
            raise APIError(
                404,
                f"Unknown check ID {go_quote(check_id)}. Ensure that the check ID is passed, not the check name.",
            )
        if check.type != "ttl":
            raise APIError(500, f"CheckID {go_quote(check_id)} does not have associated TTL")
        if truncate:
            limit = min(check.definition.output_max_size or DEFAULT_OUTPUT_MAX, DEFAULT_OUTPUT_MAX)
            self.runner.ttl_update(check_id, status, truncate_output(output, limit), truncated=True)
        else:
            self.runner.ttl_update(check_id, status, output)

    async def agent_check_update(self, req: Request, check_id: str) -> Response:
        status, output = decode_check_update(await self._read_body(req))
        if status not in VALID_STATUSES:
            raise APIError(400, f"Invalid check status: '{status}'")
        # The update endpoint caps output at 4096 bytes itself (before the check's own limit).
        self._ttl_update(check_id, status, output, truncate=True)
        return Response(200)

    # ------------------------------------------------------------------------------------------ catalog/health

    async def catalog_datacenters(self, req: Request, _: str) -> Response:
        return self._json(req, [self.state.datacenter])

    async def status_leader(self, req: Request, _: str) -> Response:
        return self._json(req, f"{self.state.node_address}:8300")

    async def status_peers(self, req: Request, _: str) -> Response:
        return self._json(req, [f"{self.state.node_address}:8300"])

    async def catalog_services(self, req: Request, _: str) -> Response:
        opts = self._query_options(req)
        self._check_dc(req)
        meta = _node_meta(req)
        # The filter applies to each instance (ServiceNode fields), before the name -> tags aggregation.
        pred = self._predicate(req)
        index, out = await self._blocking(req, opts, ("services",), lambda: self.state.catalog_services(meta, pred))
        return self._json(req, out, self._meta_headers(index))

    async def catalog_service(self, req: Request, name: str) -> Response:
        opts = self._query_options(req)
        tags = req.query["tag"] if req.has("tag") else None
        if not name:
            raise APIError(400, "Missing service name")
        self._check_dc(req)
        meta = _node_meta(req)
        index, out = await self._blocking(
            req, opts, ("svc", name.lower()), lambda: self.state.catalog_service(name, tags, meta)
        )
        return self._json(req, self._filter(req, out), self._meta_headers(index))

    async def health_service(self, req: Request, name: str) -> Response:
        opts = self._query_options(req)
        tags = req.query["tag"] if req.has("tag") else None
        if not name:
            raise APIError(400, "Missing service name")
        passing = False
        if req.has("passing"):
            raw = req.get("passing")
            try:
                passing = True if raw == "" else parse_bool(raw)
            except GoError:
                raise APIError(400, "Invalid value for ?passing") from None
        self._check_dc(req)
        meta = _node_meta(req)
        index, out = await self._blocking(
            req, opts, ("svc", name.lower()), lambda: self.state.health_service(name, tags, meta, passing)
        )
        return self._json(req, self._filter(req, out), self._meta_headers(index))

    @staticmethod
    def _predicate(req: Request) -> Callable[[Any], bool] | None:
        expr = req.get("filter")
        if not expr:
            return None
        try:
            return compile_filter(expr)
        except BexprError as exc:
            raise APIError(400, f"Failed to create boolean expression evaluator: {exc}") from None

    def _filter(self, req: Request, data: T) -> T:
        pred = self._predicate(req)
        if pred is None:
            return data
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if pred(v)}  # type: ignore[return-value]
        if isinstance(data, list):
            return [v for v in data if pred(v)]  # type: ignore[return-value]
        return data

    # ------------------------------------------------------------------------------------------ KV

    async def kv(self, req: Request, key: str) -> Response:
        opts = self._query_options(req)
        if req.method == "GET":
            if req.has("keys"):
                return await self._kv_keys(req, opts, key)
            return await self._kv_get(req, opts, key)
        if req.method == "PUT":
            return await self._kv_put(req, key)
        return await self._kv_delete(req, key)

    async def _kv_get(self, req: Request, opts: QueryOptions, key: str) -> Response:
        if req.has("recurse"):
            self._check_dc(req)
            index, entries = await self._blocking(req, opts, ("kvp", key), lambda: self.state.kv_list(key))
            headers = self._meta_headers(index)
            if not entries:
                return Response(404, b"", headers)
            return self._json(req, [e.to_json() for e in entries], headers)
        if not key:
            raise APIError(400, "Missing key name")
        self._check_dc(req)
        index, entry = await self._blocking(req, opts, ("kv", key), lambda: self.state.kv_get(key))
        headers = self._meta_headers(index)
        if entry is None:
            return Response(404, b"", headers)
        if req.has("raw"):
            headers.append((b"content-type", b"text/plain"))
            headers.append((b"x-content-type-options", b"nosniff"))
            return Response(200, entry.value or b"", headers)
        if req.has("pretty"):
            return self._json(req, [entry.to_json()], headers)
        return Response(200, entry.body(), [_JSON, *headers])

    async def _kv_keys(self, req: Request, opts: QueryOptions, prefix: str) -> Response:
        sep = ""
        if req.has("seperator"):  # Consul still honours its historic misspelling
            sep = req.get("seperator")
        if req.has("separator"):
            sep = req.get("separator")
        self._check_dc(req)
        index, keys = await self._blocking(req, opts, ("kvp", prefix), lambda: self.state.kv_keys(prefix, sep))
        headers = self._meta_headers(index)
        if not keys and prefix != "":
            return Response(404, b"", headers)
        return self._json(req, keys, headers)

    def _conflicting(self, req: Request, *flags: str) -> None:
        if sum(1 for f in flags if req.has(f)) > 1:
            raise APIError(400, "Conflicting flags: " + query_encode(req.query))

    async def _kv_put(self, req: Request, key: str) -> Response:
        if not key:
            raise APIError(400, "Missing key name")
        self._conflicting(req, "cas", "acquire", "release")
        flags = 0
        if req.has("flags"):
            try:
                flags = parse_uint(req.get("flags"))
            except GoError as exc:
                raise APIError(500, str(exc)) from None
        cas: int | None = None
        if req.has("cas"):
            try:
                cas = parse_uint(req.get("cas"))
            except GoError as exc:
                raise APIError(500, str(exc)) from None
        declared = req.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > KV_MAX_VALUE_SIZE:
            raise _too_large(int(declared))
        try:
            value = await req.body(KV_MAX_VALUE_SIZE)
        except BodyTooLarge as exc:
            raise _too_large(exc.size) from None
        self._check_dc(req)
        if req.has("acquire"):
            # No sessions exist in the dev registry, so every session id is unknown, as Consul reports it.
            raise APIError(500, f"invalid session {go_quote(req.get('acquire'))}")
        if req.has("release"):
            return self._json(req, False)
        stored = value if value else None
        if cas is not None:
            return self._json(req, self.state.kv_cas(key, stored, flags, cas))
        return self._json(req, self.state.kv_set(key, stored, flags))

    async def _kv_delete(self, req: Request, key: str) -> Response:
        self._conflicting(req, "recurse", "cas")
        recurse = req.has("recurse")
        if not recurse and not key:
            raise APIError(400, "Missing key name")
        cas: int | None = None
        if req.has("cas"):
            try:
                cas = parse_uint(req.get("cas"))
            except GoError as exc:
                raise APIError(500, str(exc)) from None
        self._check_dc(req)
        if recurse:
            return self._json(req, self.state.kv_delete_tree(key))
        if cas is not None:
            return self._json(req, self.state.kv_delete_cas(key, cas))
        return self._json(req, self.state.kv_delete(key))

    async def _read_body(self, req: Request) -> bytes:
        try:
            return await req.body(MAX_BODY)
        except BodyTooLarge as exc:
            raise APIError(413, f"Request body({exc.size} bytes) too large, max size: {MAX_BODY} bytes") from None


def _too_large(size: int) -> APIError:
    return APIError(
        413, f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. See {KV_SIZE_DOC}."
    )


def _node_meta(req: Request) -> dict[str, str] | None:
    if not req.has("node-meta"):
        return None
    out: dict[str, str] = {}
    for item in req.query["node-meta"]:
        k, _, v = item.partition(":")
        out[k] = v
    return out


def _reject_enterprise(req: Request) -> None:
    if req.get("ns"):
        raise APIError(400, 'Bad request: Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature')
    if req.headers.get("x-consul-namespace"):
        raise APIError(
            400, 'Bad request: Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature'
        )
    if req.get("partition"):
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
