"""``/v1/catalog/*``, ``/v1/health/*`` and ``/v1/status/*``: catalog writes for any node, and the views, every
read blocking-capable."""

from __future__ import annotations

from typing import Any

from stator.registry.decode_catalog import decode_deregister, decode_register
from stator.registry.endpoints.common import (
    Call,
    Context,
    blocking,
    check_dc,
    json_response,
    meta_headers,
    node_meta,
    predicate,
    query_options,
)
from stator.registry.errors import APIError
from stator.registry.http import Park, Response
from stator.registry.state import CatalogError

HEALTH_STATES = frozenset({"any", "passing", "warning", "critical"})


def _list_encoder(call: Call) -> Any:
    pred = predicate(call)

    def encode(index: int, rows: list[Any]) -> Response:
        if pred is not None:
            rows = [r for r in rows if pred(r)]
        return json_response(call, rows, meta_headers(index))

    return encode


async def catalog_datacenters(ctx: Context, call: Call) -> Response:
    return json_response(call, [ctx.state.store.datacenter])


async def status_leader(ctx: Context, call: Call) -> Response:
    return json_response(call, f"{ctx.state.agent.node_address}:8300")


async def status_peers(ctx: Context, call: Call) -> Response:
    return json_response(call, [f"{ctx.state.agent.node_address}:8300"])


async def catalog_services(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    check_dc(ctx, call)
    meta = node_meta(call)
    # The filter applies to each instance (ServiceNode fields), before the name -> tags aggregation.
    pred = predicate(call)
    c = ctx.state.store
    return blocking(
        ctx,
        call,
        opts,
        ("services",),
        lambda: c.catalog_services(meta, pred),
        lambda index, out: json_response(call, out, meta_headers(index)),
    )


def _service_name(call: Call) -> str:
    if not call.rest:
        raise APIError(400, "Missing service name")
    return call.rest


async def catalog_service(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    tags = call.query["tag"] if call.has("tag") else None
    name = _service_name(call)
    check_dc(ctx, call)
    meta = node_meta(call)
    c = ctx.state.store
    return blocking(
        ctx, call, opts, ("svc", name.lower()), lambda: c.catalog_service(name, tags, meta), _list_encoder(call)
    )


async def catalog_nodes(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    check_dc(ctx, call)
    meta = node_meta(call)
    c = ctx.state.store
    return blocking(ctx, call, opts, ("nodes",), lambda: c.catalog_nodes(meta), _list_encoder(call))


async def catalog_node(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    if not call.rest:
        raise APIError(400, "Missing node name")
    check_dc(ctx, call)
    c = ctx.state.store
    node = call.rest
    return blocking(
        ctx,
        call,
        opts,
        ("services",),
        lambda: c.catalog_node(node),
        lambda index, out: json_response(call, out, meta_headers(index)),
    )


async def health_service(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    tags = call.query["tag"] if call.has("tag") else None
    name = _service_name(call)
    passing = call.flag("passing", "Invalid value for ?passing")
    check_dc(ctx, call)
    meta = node_meta(call)
    c = ctx.state.health
    return blocking(
        ctx,
        call,
        opts,
        ("svc", name.lower()),
        lambda: c.health_service(name, tags, meta, passing),
        _list_encoder(call),
    )


async def health_checks(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    name = _service_name(call)
    check_dc(ctx, call)
    meta = node_meta(call)
    c = ctx.state.health
    return blocking(ctx, call, opts, ("svc", name.lower()), lambda: c.health_checks(name, meta), _list_encoder(call))


async def health_state(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    state = call.rest
    if not state:
        raise APIError(400, "Missing check state")
    if state not in HEALTH_STATES:
        raise APIError(400, "Invalid check state")
    check_dc(ctx, call)
    meta = node_meta(call)
    c = ctx.state.health
    return blocking(ctx, call, opts, ("checks",), lambda: c.health_state(state, meta), _list_encoder(call))


async def health_node(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    if not call.rest:
        raise APIError(400, "Missing node name")
    check_dc(ctx, call)
    c = ctx.state.health
    node = call.rest
    return blocking(ctx, call, opts, ("checks",), lambda: c.health_node(node), _list_encoder(call))


async def catalog_register(ctx: Context, call: Call) -> Response:
    """``PUT /v1/catalog/register``: a node, optionally with a service and checks; answers ``true``."""
    req = decode_register(call.body, ctx.state.store.datacenter)
    try:
        ctx.state.catalog_register(req)
    except CatalogError as exc:
        raise APIError(500, str(exc)) from None
    ctx.logger.info(
        "catalog registration",
        node=req.node.name,
        service_id=req.service["ID"] if req.service is not None else None,
        checks=[c["CheckID"] for c in req.checks],
    )
    return json_response(call, True)


async def catalog_deregister(ctx: Context, call: Call) -> Response:
    """``PUT /v1/catalog/deregister``: a service (with its checks), else a check, else the node; ``true``."""
    req = decode_deregister(call.body, ctx.state.store.datacenter)
    ctx.state.catalog_deregister(req.node, req.service_id, req.check_id)
    ctx.logger.info(
        "catalog deregistration", node=req.node, service_id=req.service_id or None, check_id=req.check_id or None
    )
    return json_response(call, True)
