"""``/v1/agent/*``: the agent's own view (no indexes, no blocking except ``agent/service/:id`` by hash)."""

from __future__ import annotations

from typing import Any

from stator.registry.checks import truncate_output
from stator.registry.decode import decode_check_registration, decode_check_update, decode_registration
from stator.registry.endpoints.common import (
    Call,
    Context,
    QueryOptions,
    apply_filter,
    blocking,
    json_response,
    query_options,
)
from stator.registry.errors import APIError
from stator.registry.http import Park, Response
from stator.registry.model import CRITICAL, PASSING, VALID_STATUSES, WARNING
from stator.registry.state import CONSUL_VERSION, DEFAULT_OUTPUT_MAX
from stator.registry.wire import GoError, go_quote, parse_bool


def _member(ctx: Context, wan: bool = False) -> dict[str, Any]:
    c = ctx.state.agent
    return {
        "Name": f"{c.node_name}.{c.datacenter}" if wan else c.node_name,
        "Addr": c.node_address,
        "Port": 8302 if wan else 8301,
        "Tags": {"dc": c.datacenter, "role": "consul", "port": "8300", "build": CONSUL_VERSION, "vsn": "2"},
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


async def agent_self(ctx: Context, call: Call) -> Response:
    s = ctx.state
    c = s.catalog
    config = {
        "Datacenter": c.datacenter,
        "PrimaryDatacenter": c.datacenter,
        "NodeName": c.node_name,
        "NodeID": c.node_id,
        "Revision": "stator-dev-registry",
        "Server": True,
        "Version": CONSUL_VERSION,
        "BuildDate": "",
    }
    stats = {
        "agent": {"checks": str(len(c.agent_checks)), "services": str(len(c.agent_services))},
        "build": {"version": CONSUL_VERSION, "revision": "stator-dev-registry", "prerelease": ""},
        "kv": {"keys": str(s.kv.count())},
        "raft": {"applied_index": str(s.index), "state": "Leader"},
        # Not in Consul: parked blocking queries, for benchmarks and operators of the dev registry.
        "stator": {"blocked_queries": str(s.waiter_count())},
    }
    body = {
        "Config": config,
        "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
        "Member": _member(ctx),
        "Stats": stats,
        "Meta": c.node_meta(),
    }
    return json_response(call, body)


async def agent_members(ctx: Context, call: Call) -> Response:
    """``GET /v1/agent/members[?wan]``: this one node, LAN or WAN (it is a server, so it is in both pools)."""
    wan = call.has("wan") and call.get("wan") not in ("", "0", "false")
    return json_response(call, [_member(ctx, wan)])


async def agent_services(ctx: Context, call: Call) -> Response:
    c = ctx.state.agent
    out = {sid: c.agent_service_json(svc) for sid, svc in c.agent_services.items()}
    return json_response(call, apply_filter(call, out))


async def agent_service(ctx: Context, call: Call) -> Response | Park:
    service_id = call.rest
    opts = query_options(call)
    want = call.get("hash")
    c = ctx.state.agent
    found = c.agent_service_with_hash(service_id)
    if found is None:
        raise APIError(404, f"unknown service ID: {service_id}")

    def compute() -> tuple[int, tuple[str, dict[str, Any]] | None]:
        now = c.agent_service_with_hash(service_id)
        return (2 if now is None or now[0] != want else 1), now

    def encode(_: int, latest: tuple[str, dict[str, Any]] | None) -> Response:
        if latest is None:
            return Response(
                404, f"unknown service ID: {service_id}".encode(), [(b"content-type", b"text/plain; charset=utf-8")]
            )
        return json_response(call, latest[1], [(b"x-consul-contenthash", latest[0].encode())])

    if want and found[0] == want:
        # Hash-based blocking: park until the definition's hash differs (or the service goes away).
        return blocking(ctx, call, QueryOptions(1, opts.wait_ns), ("agentsvc", service_id), compute, encode)
    return encode(0, found)


async def agent_checks(ctx: Context, call: Call) -> Response:
    c = ctx.state.agent
    out = {cid: ch.to_json(c.node_name) for cid, ch in c.agent_checks.items()}
    return json_response(call, apply_filter(call, out))


async def agent_register(ctx: Context, call: Call) -> Response:
    svc, checks = decode_registration(call.body)
    replace = call.has("replace-existing-checks") and call.get("replace-existing-checks") in ("", "true")
    c = ctx.state.agent
    existed = svc.id in c.agent_services
    result = c.register_service(svc, checks, replace_existing_checks=replace)
    ctx.logger.info(
        "service re-registered" if existed else "service registered",
        service_id=svc.id,
        service=svc.name,
        address=svc.address,
        port=svc.port,
        tags=svc.tags,
        checks=result.started,
    )
    return Response(200)


def _unknown_service(service_id: str) -> APIError:
    return APIError(
        404,
        f"Unknown service ID {go_quote(service_id)}. Ensure that the service ID is passed, not the service name.",
    )


def _unknown_check(check_id: str) -> APIError:
    return APIError(
        404, f"Unknown check ID {go_quote(check_id)}. Ensure that the check ID is passed, not the check name."
    )


async def agent_deregister(ctx: Context, call: Call) -> Response:
    service_id = call.rest
    if service_id not in ctx.state.agent.agent_services:
        raise _unknown_service(service_id)
    ctx.state.agent.deregister_service(service_id)
    ctx.logger.info("service deregistered", service_id=service_id)
    return Response(200)


def _enable(call: Call) -> bool:
    if not call.has("enable"):
        raise APIError(400, "Missing value for enable")
    raw = call.get("enable")
    try:
        return parse_bool(raw)
    except GoError:
        raise APIError(400, f"Invalid value for enable: {go_quote(raw)}") from None


async def service_maintenance(ctx: Context, call: Call) -> Response:
    """``PUT /v1/agent/service/maintenance/:id?enable=&reason=``."""
    service_id = call.rest
    if not service_id:
        raise APIError(400, "Missing service ID")
    enable = _enable(call)
    if not ctx.state.agent.set_service_maintenance(service_id, enable, call.get("reason")):
        raise APIError(404, f"No service registered with ID {go_quote(service_id)}")
    ctx.logger.info("service maintenance", service_id=service_id, enabled=enable)
    return Response(200)


async def node_maintenance(ctx: Context, call: Call) -> Response:
    """``PUT /v1/agent/maintenance?enable=&reason=``."""
    enable = _enable(call)
    ctx.state.agent.set_node_maintenance(enable, call.get("reason"))
    ctx.logger.info("node maintenance", enabled=enable)
    return Response(200)


async def check_register(ctx: Context, call: Call) -> Response:
    check_id, name, service_id, definition = decode_check_registration(call.body)
    c = ctx.state.agent
    if service_id and service_id not in c.agent_services:
        raise APIError(400, f"ServiceID {go_quote(service_id)} does not exist")
    c.register_check(check_id, name, service_id, definition, definition.status)
    ctx.logger.info("check registered", check_id=check_id, service_id=service_id or None)
    return Response(200)


async def check_deregister(ctx: Context, call: Call) -> Response:
    check_id = call.rest
    if not ctx.state.agent.deregister_check(check_id):
        raise _unknown_check(check_id)
    ctx.logger.info("check deregistered", check_id=check_id)
    return Response(200)


def _ttl_update(ctx: Context, check_id: str, status: str, output: str, truncate: bool = False) -> None:
    check = ctx.state.agent.agent_checks.get(check_id)
    if check is None:
        raise _unknown_check(check_id)
    if check.type != "ttl":
        raise APIError(500, f"CheckID {go_quote(check_id)} does not have associated TTL")
    if truncate:
        limit = min(check.definition.output_max_size or DEFAULT_OUTPUT_MAX, DEFAULT_OUTPUT_MAX)
        ctx.runner.ttl_update(check_id, status, truncate_output(output, limit), truncated=True)
    else:
        ctx.runner.ttl_update(check_id, status, output)


async def check_pass(ctx: Context, call: Call) -> Response:
    _ttl_update(ctx, call.rest, PASSING, call.get("note"))
    return Response(200)


async def check_warn(ctx: Context, call: Call) -> Response:
    _ttl_update(ctx, call.rest, WARNING, call.get("note"))
    return Response(200)


async def check_fail(ctx: Context, call: Call) -> Response:
    _ttl_update(ctx, call.rest, CRITICAL, call.get("note"))
    return Response(200)


async def check_update(ctx: Context, call: Call) -> Response:
    status, output = decode_check_update(call.body)
    if status not in VALID_STATUSES:
        raise APIError(400, f"Invalid check status: '{status}'")
    # The update endpoint caps output at 4096 bytes itself (before the check's own limit).
    _ttl_update(ctx, call.rest, status, output, truncate=True)
    return Response(200)
