"""``/v1/kv/*`` and ``/v1/txn``: keys, prefixes, CAS, locks held by sessions, and atomic transactions."""

from __future__ import annotations

from typing import Final

from stator.registry.decode import decode_txn
from stator.registry.endpoints.common import (
    JSON_TYPE,
    Call,
    Context,
    QueryOptions,
    blocking,
    check_dc,
    json_response,
    meta_headers,
    query_options,
    text_response,
    uint_param,
)
from stator.registry.errors import APIError
from stator.registry.http import Park, Response
from stator.registry.state import KVEntry, KVError
from stator.registry.state import txn as txn_state
from stator.registry.wire import go_quote, query_encode

KV_MAX_VALUE_SIZE: Final = 512 * 1024
TXN_MAX_REQ_LEN: Final = 512 * 1024
MAX_TXN_OPS: Final = 64
KV_SIZE_DOC: Final = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
TXN_SIZE_DOC: Final = "https://www.consul.io/docs/agent/options.html#txn_max_req_len"


def kv_too_large(size: int) -> Response:
    return text_response(
        413, f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. See {KV_SIZE_DOC}."
    )


def txn_too_large(size: int) -> Response:
    return text_response(
        413, f"Request body({size} bytes) too large, max size: {TXN_MAX_REQ_LEN} bytes. See {TXN_SIZE_DOC}."
    )


async def kv(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    key = call.rest
    if call.method == "GET":
        if call.has("keys"):
            return _kv_keys(ctx, call, opts, key)
        return _kv_get(ctx, call, opts, key)
    if call.method == "PUT":
        return _kv_put(ctx, call, key)
    return _kv_delete(ctx, call, key)


def _kv_get(ctx: Context, call: Call, opts: QueryOptions, key: str) -> Response | Park:
    store = ctx.state.kv
    if call.has("recurse"):
        check_dc(ctx, call)

        def encode_list(index: int, entries: list[KVEntry]) -> Response:
            headers = meta_headers(index)
            if not entries:
                return Response(404, b"", headers)
            return json_response(call, [e.to_json() for e in entries], headers)

        return blocking(ctx, call, opts, ("kvp", key), lambda: store.list_prefix(key), encode_list)
    if not key:
        raise APIError(400, "Missing key name")
    check_dc(ctx, call)
    raw = call.has("raw")
    pretty = call.has("pretty")

    def encode(index: int, entry: KVEntry | None) -> Response:
        headers = meta_headers(index)
        if entry is None:
            return Response(404, b"", headers)
        if raw:
            headers.append((b"content-type", b"text/plain"))
            headers.append((b"x-content-type-options", b"nosniff"))
            return Response(200, entry.value or b"", headers)
        if pretty:
            return json_response(call, [entry.to_json()], headers)
        return Response(200, entry.body(), [JSON_TYPE, *headers])

    return blocking(ctx, call, opts, ("kv", key), lambda: store.get(key), encode)


def _kv_keys(ctx: Context, call: Call, opts: QueryOptions, prefix: str) -> Response | Park:
    sep = ""
    if call.has("seperator"):  # Consul still honours its historic misspelling
        sep = call.get("seperator")
    if call.has("separator"):
        sep = call.get("separator")
    check_dc(ctx, call)
    store = ctx.state.kv

    def encode(index: int, keys: list[str]) -> Response:
        headers = meta_headers(index)
        if not keys and prefix != "":
            return Response(404, b"", headers)
        return json_response(call, keys, headers)

    return blocking(ctx, call, opts, ("kvp", prefix), lambda: store.keys(prefix, sep), encode)


def _conflicting(call: Call, *flags: str) -> None:
    if sum(1 for f in flags if call.has(f)) > 1:
        raise APIError(400, "Conflicting flags: " + query_encode(call.query))


def _kv_put(ctx: Context, call: Call, key: str) -> Response:
    if not key:
        raise APIError(400, "Missing key name")
    _conflicting(call, "cas", "acquire", "release")
    flags = uint_param(call, "flags") or 0
    cas = uint_param(call, "cas")
    check_dc(ctx, call)
    store = ctx.state.kv
    value = call.body or None
    try:
        if call.has("acquire"):
            ok = store.acquire(key, value, flags, call.get("acquire"))
        elif call.has("release"):
            ok = store.release(key, value, flags, call.get("release"))
        elif cas is not None:
            ok = store.cas(key, value, flags, cas)
        else:
            ok = store.set(key, value, flags)
    except KVError as exc:
        raise APIError(500, str(exc)) from None
    return json_response(call, ok)


def _kv_delete(ctx: Context, call: Call, key: str) -> Response:
    _conflicting(call, "recurse", "cas")
    recurse = call.has("recurse")
    if not recurse and not key:
        raise APIError(400, "Missing key name")
    cas = uint_param(call, "cas")
    check_dc(ctx, call)
    store = ctx.state.kv
    if recurse:
        return json_response(call, store.delete_tree(key))
    if cas is not None:
        return json_response(call, store.delete_cas(key, cas))
    return json_response(call, store.delete(key))


async def txn(ctx: Context, call: Call) -> Response:
    """``PUT /v1/txn``: KV operations, all or nothing; 409 with the failed operations' errors."""
    check_dc(ctx, call)
    raw_ops = decode_txn(call.body)
    if len(raw_ops) > MAX_TXN_OPS:
        return text_response(413, f"Transaction contains too many operations ({len(raw_ops)} > {MAX_TXN_OPS})")
    ops: list[txn_state.KVOp] = []
    for raw in raw_ops:
        kv_op = raw.get("KV")
        if kv_op is None:
            kind = next(iter(raw), "")
            if kind:
                raise APIError(400, f"Failed to parse body: {kind} operations are not supported by the dev registry")
            continue  # an empty operation is skipped, as Consul's convertOps does
        value = kv_op.get("Value")
        if value is not None and len(value) > KV_MAX_VALUE_SIZE:
            return text_response(
                413,
                f"Value for key {go_quote(kv_op.get('Key', ''))} is too large "
                f"({len(value)} > {KV_MAX_VALUE_SIZE} bytes)",
            )
        ops.append(
            txn_state.KVOp(
                verb=kv_op.get("Verb", ""),
                key=kv_op.get("Key", ""),
                value=value or None,
                flags=kv_op.get("Flags", 0),
                index=kv_op.get("Index", 0),
                session=kv_op.get("Session", ""),
            )
        )
    results, errors = txn_state.run(ctx.state.kv, ops)
    if errors:
        return json_response(call, {"Results": None, "Errors": errors}, status=409)
    return json_response(call, {"Results": results or None, "Errors": None}, meta_headers(ctx.state.kv.table_index()))
