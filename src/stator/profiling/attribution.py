"""Which request a sample belongs to: a table from asyncio task to the request it is serving.

Under asyncio every request shares the loop's thread, so per-thread tags (py-spy, pyroscope-io) cannot tell two
concurrent requests apart. The sampler instead asks, at each tick and from its own thread, which task each event
loop is running (``asyncio.tasks._current_tasks``, the table ``asyncio.current_task(loop)`` reads — asyncio's C
tasks fill it under uvloop too) and checks that task's coroutine frame is on that thread's stack (so a task
switch between the two reads can never mislabel a sample). The task is then looked up here.

The table is filled per request by the HTTP middleware (or :class:`TaskTagger`) with one *entry*: a plain list,
because it is built on every request and must cost a few hundred nanoseconds. Its slots:

``[FIELDS]`` the log-context fields of the request (``request_id``, ``trace_id``, ``span_id``),
``[SCOPE]`` the ASGI scope, ``[STARTED]`` ``time.perf_counter()`` at entry, ``[ROOT_PATH]`` the scope's
``root_path`` at entry, ``[ROUTE]`` the route template once the request ended (``None`` before).

Samples keep a reference to their entry, so a request's route is known when its profile is encoded even though
the entry left the table when the request ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from stator.asgi import ASGIApp, Receive, Scope, Send
from stator.logs.context import _fields

FIELDS, SCOPE, STARTED, ROOT_PATH, ROUTE = range(5)
RequestEntry = list[Any]
RouteResolver = Callable[[Scope, str], str]
"""``(scope, root_path at entry) -> route template``; may be called while the request is still running."""

LABEL_FIELDS = ("request_id", "trace_id", "span_id")


def _default_resolver(scope: Scope, root_path: str) -> str:
    from stator.http.routes import template

    return template(scope, root_path)


def new_entry(fields: Mapping[str, Any], scope: Scope, root_path: str) -> RequestEntry:
    return [fields, scope, time.perf_counter(), root_path, None]


class RequestTable:
    """task -> entry of the request that task serves (see the module docstring for the entry layout)."""

    def __init__(self, resolver: RouteResolver | None = None) -> None:
        self.active: dict[asyncio.Task[Any], RequestEntry] = {}
        self.resolver: RouteResolver = resolver or _default_resolver

    def route(self, entry: RequestEntry) -> str:
        route = entry[ROUTE]
        if route is None:
            try:
                return self.resolver(entry[SCOPE], entry[ROOT_PATH])
            except Exception:
                return str(entry[SCOPE].get("path", ""))
        return str(route)

    def labels(self, entry: RequestEntry) -> dict[str, str]:
        """The sample labels of a request: request_id, trace_id, span_id (when traced), method, route."""
        fields: Mapping[str, Any] = entry[FIELDS]
        out = {key: str(fields[key]) for key in LABEL_FIELDS if fields.get(key)}
        out["method"] = str(entry[SCOPE].get("method", ""))
        out["route"] = self.route(entry)
        return out

    def describe(self, entry: RequestEntry, now: float | None = None) -> dict[str, Any]:
        """What a task dump shows about a request."""
        scope = entry[SCOPE]
        out: dict[str, Any] = self.labels(entry)
        out["path"] = scope.get("path", "")
        out["age_seconds"] = round((now if now is not None else time.perf_counter()) - entry[STARTED], 3)
        return out


class TaskTagger:
    """ASGI middleware registering each HTTP request's task in a :class:`RequestTable`.

    Place it inside the observability middleware (so the request's log fields are bound) — or anywhere, for an
    app that does not use stator's middleware (then only the route and method are known). The stator middleware
    can do the same inline, for less; this class is the reference for that hook.
    """

    def __init__(self, app: ASGIApp, table: RequestTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task() if scope["type"] == "http" else None
        if task is None:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        entry = new_entry(_fields.get(), scope, root_path)
        active = self.table.active
        outer = active.get(task)
        active[task] = entry
        try:
            await self.app(scope, receive, send)
        finally:
            try:
                entry[ROUTE] = self.table.resolver(scope, root_path)
            except Exception:
                entry[ROUTE] = scope.get("path", "")
            if outer is None:
                active.pop(task, None)
            else:
                active[task] = outer
