"""``/v1/session/*``: create, destroy, renew, and the blocking-capable reads."""

from __future__ import annotations

from stator.registry.decode import decode_session
from stator.registry.endpoints.common import (
    Call,
    Context,
    blocking,
    check_dc,
    json_response,
    meta_headers,
    query_options,
    text_response,
)
from stator.registry.errors import APIError
from stator.registry.http import Park, Response
from stator.registry.state.sessions import SessionError, SessionRequest


async def session_create(ctx: Context, call: Call) -> Response:
    check_dc(ctx, call)
    raw = decode_session(call.body)
    req = SessionRequest(
        name=raw.get("Name", ""),
        node=raw.get("Node", ""),
        behavior=raw.get("Behavior", "") or "release",
        ttl=raw.get("TTL", ""),
        node_checks=raw.get("NodeChecks"),
        service_checks=[c.get("ID", "") for c in raw.get("ServiceChecks", [])],
        checks=raw.get("Checks"),
    )
    if "LockDelay" in raw:
        req.lock_delay_ns = raw["LockDelay"]
    try:
        session_id = ctx.state.sessions.create(req)
    except SessionError as exc:
        raise APIError(500, str(exc)) from None
    ctx.logger.info("session created", session=session_id, name=req.name or None, ttl=req.ttl or None)
    return json_response(call, {"ID": session_id})


async def session_destroy(ctx: Context, call: Call) -> Response:
    if not call.rest:
        raise APIError(400, "Missing session")
    check_dc(ctx, call)
    ctx.state.sessions.destroy(call.rest)
    return json_response(call, True)


async def session_renew(ctx: Context, call: Call) -> Response:
    if not call.rest:
        raise APIError(400, "Missing session")
    check_dc(ctx, call)
    session = ctx.state.sessions.renew(call.rest)
    if session is None:
        return text_response(404, f"Session id '{call.rest}' not found")
    return json_response(call, [session.to_json()], meta_headers(ctx.state.sessions.index()))


async def session_info(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    if not call.rest:
        raise APIError(400, "Missing session")
    check_dc(ctx, call)
    sessions = ctx.state.sessions
    session_id = call.rest

    def compute() -> tuple[int, list[dict[str, object]]]:
        found = sessions.get(session_id)
        return sessions.index(), [found.to_json()] if found is not None else []

    return blocking(
        ctx, call, opts, ("sessions",), compute, lambda index, rows: json_response(call, rows, meta_headers(index))
    )


async def session_list(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    check_dc(ctx, call)
    sessions = ctx.state.sessions
    return blocking(
        ctx,
        call,
        opts,
        ("sessions",),
        lambda: (sessions.index(), sessions.listing()),
        lambda index, rows: json_response(call, rows, meta_headers(index)),
    )


async def session_node(ctx: Context, call: Call) -> Response | Park:
    opts = query_options(call)
    if not call.rest:
        raise APIError(400, "Missing node name")
    check_dc(ctx, call)
    sessions = ctx.state.sessions
    node = call.rest
    return blocking(
        ctx,
        call,
        opts,
        ("sessions",),
        lambda: (sessions.index(), sessions.listing(node)),
        lambda index, rows: json_response(call, rows, meta_headers(index)),
    )
