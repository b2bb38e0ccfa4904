"""What every endpoint shares: the decoded call (query parsed as Go does), Consul's query options, blocking
queries, and the encoders (JSON answers, ``X-Consul-*`` headers, plain-text errors)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import orjson

from stator.config.durations import DurationError, parse_duration_ns
from stator.logs import Logger
from stator.registry.bexpr import BexprError, compile_filter
from stator.registry.checks import CheckRunner
from stator.registry.errors import APIError
from stator.registry.http import Park, Request, Response
from stator.registry.state import State, Topic
from stator.registry.wire import GoError, parse_bool, parse_query, parse_uint

T = TypeVar("T")
JSON_TYPE: Final = (b"content-type", b"application/json")
TEXT_TYPE: Final = (b"content-type", b"text/plain; charset=utf-8")


class Context(Protocol):
    """What endpoints use of the application."""

    state: State
    runner: CheckRunner
    logger: Logger
    max_query_time: float
    default_query_time: float
    rng: random.Random


class Call:
    """One request as endpoints see it: the parsed query (``url.ParseQuery``) and the path after the route."""

    __slots__ = ("body", "headers", "method", "path", "query", "raw_query", "rest")

    def __init__(self, req: Request, rest: str) -> None:
        self.method = req.method
        self.path = req.path
        self.raw_query = req.raw_query
        self.query = parse_query(req.raw_query)
        self.headers = req.headers
        self.body = req.body
        self.rest = rest

    def has(self, name: str) -> bool:
        return name in self.query

    def get(self, name: str) -> str:
        """``url.Values.Get``: the first value, or "" when absent."""
        values = self.query.get(name)
        return values[0] if values else ""

    def flag(self, name: str, error: str) -> bool:
        """A parsed boolean parameter where ``?name`` alone means true (``?passing``)."""
        if not self.has(name):
            return False
        raw = self.get(name)
        try:
            return True if raw == "" else parse_bool(raw)
        except GoError:
            raise APIError(400, error) from None

    def blocking_key(self) -> tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...]]:
        """What makes two blocking queries the same query (everything but ``index`` and ``wait``)."""
        items = tuple(sorted((k, tuple(v)) for k, v in self.query.items() if k not in ("index", "wait")))
        return self.method, self.path, items


@dataclass
class QueryOptions:
    index: int = 0
    wait_ns: int = 0
    stale: bool = False
    consistent: bool = False


def query_options(call: Call) -> QueryOptions:
    """Consul's ``parse``: consistency flags, then ``wait``, then ``index`` (that order decides which error a
    request with several bad parameters gets)."""
    opts = QueryOptions(stale=call.has("stale"), consistent=call.has("consistent"))
    if opts.stale and opts.consistent:
        raise APIError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    wait = call.get("wait")
    if wait:
        try:
            opts.wait_ns = parse_duration_ns(wait)
        except DurationError:
            raise APIError(400, "Invalid wait time") from None
    index = call.get("index")
    if index:
        try:
            opts.index = parse_uint(index)
        except GoError:
            raise APIError(400, "Invalid index") from None
    return opts


def query_timeout(wait_ns: int, max_query_time: float, default_query_time: float, rng: random.Random) -> float:
    """Consul's blocking timeout: ``wait`` capped at the max (unset/<=0: the default) plus up to 1/16 jitter."""
    timeout = wait_ns / 1e9
    if timeout > max_query_time:
        timeout = max_query_time
    elif timeout <= 0:
        timeout = default_query_time
    return timeout + rng.uniform(0, timeout / 16)


def blocking(
    ctx: Context,
    call: Call,
    opts: QueryOptions,
    topic: Topic,
    compute: Callable[[], tuple[int, T]],
    encode: Callable[[int, T], Response],
) -> Response | Park:
    """Answer now if the index has moved past ``?index`` (or no index was given); otherwise park until
    ``topic`` changes it or the (capped, jittered) wait runs out. ``encode`` runs once per wake-up for all the
    connections parked on the same query."""

    def render() -> tuple[int, Response]:
        index, result = compute()
        index = max(index, 1)
        return index, encode(index, result)

    index, resp = render()
    if opts.index == 0 or index > opts.index or ctx.state.shutting_down:
        return resp
    timeout = query_timeout(opts.wait_ns, ctx.max_query_time, ctx.default_query_time, ctx.rng)
    return Park(topic=topic, key=call.blocking_key(), min_index=opts.index, timeout=timeout, render=render)


def meta_headers(index: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-consul-index", str(max(index, 1)).encode()),
        (b"x-consul-knownleader", b"true"),
        (b"x-consul-lastcontact", b"0"),
    ]


def json_response(
    call: Call, obj: Any, headers: list[tuple[bytes, bytes]] | None = None, status: int = 200
) -> Response:
    if call.has("pretty"):
        body = (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode()
    else:
        body = orjson.dumps(obj)
    return Response(status, body, [JSON_TYPE, *(headers or [])])


def text_response(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, text.encode(), [TEXT_TYPE, *(headers or [])])


def check_dc(ctx: Context, call: Call) -> None:
    dc = call.get("dc")
    if dc and dc.lower() != ctx.state.store.datacenter.lower():
        # A real agent forwards to the other datacenter; there is none to forward to.
        raise APIError(500, "No path to datacenter")


def node_meta(call: Call) -> dict[str, str] | None:
    if not call.has("node-meta"):
        return None
    out: dict[str, str] = {}
    for item in call.query["node-meta"]:
        k, _, v = item.partition(":")
        out[k] = v
    return out


def predicate(call: Call) -> Callable[[Any], bool] | None:
    expr = call.get("filter")
    if not expr:
        return None
    try:
        return compile_filter(expr)
    except BexprError as exc:
        raise APIError(400, f"Failed to create boolean expression evaluator: {exc}") from None


def apply_filter(call: Call, data: T) -> T:
    pred = predicate(call)
    if pred is None:
        return data
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if pred(v)}  # type: ignore[return-value]
    if isinstance(data, list):
        return [v for v in data if pred(v)]  # type: ignore[return-value]
    return data


def uint_param(call: Call, name: str) -> int | None:
    """A numeric parameter Consul parses with ``strconv.ParseUint`` and reports as a 500 when malformed."""
    if not call.has(name):
        return None
    try:
        return parse_uint(call.get(name))
    except GoError as exc:
        raise APIError(500, str(exc)) from None
