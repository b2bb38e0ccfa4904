"""The instance pages, served by the ops app under ``/-/ui/`` (on the ops port when there is one):

=======================  ====================================================================================
``/-/ui/``               status: identity, uptime, readiness checks, workers, worker group, registration,
                         discovery, upstreams and every other ``/-/monitor`` section
``/-/ui/routes``         per route: requests, rate, error ratio, p50/p90/p99 and a latency histogram chart
``/-/ui/requests``       the last slow and failed requests: request id, trace id, status, duration; a traced
                         request links to its profile when continuous profiling is on
``/-/ui/tracez``         recent spans by name and latency bucket, errors apart, each span's attributes and
                         events, and the parent/child tree of a trace this instance saw (zPages, no backend)
``/-/ui/static/ui.css``  the stylesheet (a string in this package: no build, no CDN, works offline)
=======================  ====================================================================================

Server-rendered HTML with no script; ``?refresh=N`` (2..300 s) reloads a page every N seconds. Nothing here
runs unless someone asks for a page: the only per-request cost is the middleware's slow-or-failed test that
feeds :class:`~stator.http.recent.RecentRequests`. In a worker group each process shows its own routes and
requests (the worker answering the page); ``/-/metrics`` is the merged view.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol
from urllib.parse import parse_qs, quote

from stator.asgi import Receive, Scope, Send, send_bytes, send_json
from stator.health import Readiness
from stator.http.middleware import ObservabilityMiddleware
from stator.http.recent import RecentRequest, RecentRequests
from stator.http.red import RedMetrics
from stator.ui.charts import histogram_svg, quantile
from stator.ui.html import (
    CSS,
    MAX_ROWS,
    SECURITY_HEADERS,
    esc,
    kv_table,
    page,
    render,
    seconds,
    status_badge,
    table,
    timestamp,
)
from stator.ui.tracez import tracez_page

HTML = b"text/html; charset=utf-8"
RATE_WINDOW = 60.0  # the routes page's rate and error ratio cover (about) the last minute between two views
SNAPSHOT_EVERY = 2.0
MAX_AGE = 300.0  # a view after a longer pause measures since start rather than over a stale window
# /-/monitor sections shown first, in this order, under these headings; any other section follows.
SECTIONS = {
    "worker_group": "Worker group",
    "registration": "Registration",
    "discovery": "Discovery",
    "upstreams": "Upstreams",
}
_IDENTITY = ("app_id", "instance_id", "run_id", "version", "address", "ops_address")
_SHOWN = frozenset({*_IDENTITY, "state", "started_at", "uptime_seconds", "workers", "readiness", *SECTIONS})


class InstanceSource(Protocol):
    """What the pages read from a service (:class:`stator.service.Service` is one)."""

    readiness: Readiness
    http_metrics: RedMetrics
    asgi: Any  # the served app; its ``http`` attribute is the application port's observability middleware
    profiler: Any  # stator.profiling.Profiler or None
    tracing: Any  # stator.tracing.Tracing or None: its ``recent`` spans feed the tracez page

    def monitor(self) -> dict[str, Any]: ...


class InstancePages:
    """The pages as one pure ASGI app, serving paths relative to its mount point (``root_path``)."""

    def __init__(self, source: InstanceSource, *, profile_links: bool = True) -> None:
        self.source = source
        # Links to /-/debug/pprof/profile?span_id= only where that endpoint is served (sensitive mounts).
        self.profile_links = profile_links
        self._snapshots: deque[tuple[float, dict[tuple[str, str], tuple[int, int]]]] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": f"method {scope['method']} not allowed"}, [(b"allow", b"GET, HEAD")])
            return
        head = scope["method"] == "HEAD"
        path = scope["path"]
        root = scope.get("root_path", "")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        refresh = _refresh(query)
        if refresh == -1:
            await send_json(send, 400, {"error": "refresh must be an integer number of seconds in 2..300"})
            return
        if path == "/static/ui.css":
            body = CSS.encode()
            headers = [(b"cache-control", b"max-age=300"), (b"x-content-type-options", b"nosniff")]
            await send_bytes(send, 200, body, b"text/css; charset=utf-8", headers, head=head)
            return
        if path in ("/", ""):
            body = await self.status_page(root, refresh)
        elif path == "/routes":
            body = self.routes_page(root, refresh)
        elif path == "/requests":
            body = self.requests_page(root, refresh, query.get("trace_id", [""])[0])
        elif path == "/tracez":
            body = tracez_page(self.source.tracing, root, refresh, query, self._who())
        else:
            await send_json(send, 404, {"error": "not found", "path": root + path})
            return
        await send_bytes(send, 200, body, HTML, SECURITY_HEADERS, head=head)

    # -- status ------------------------------------------------------------------------------------------

    async def status_page(self, root: str, refresh: int | None) -> bytes:
        source = self.source
        report = await source.readiness.evaluate()
        mon = source.monitor()
        who = str(mon.get("instance_id", ""))
        identity = [(key, render(mon.get(key))) for key in _IDENTITY]
        identity.insert(0, ("state", status_badge(mon.get("state", ""))))
        started = mon.get("started_at")
        if isinstance(started, (int, float)):
            identity.append(("started", esc(timestamp(started))))
            identity.append(("uptime", esc(seconds(time.time() - started))))
        parts = ["<h2>Identity</h2>", kv_table(identity)]
        checks = [
            [esc(c.name), status_badge("ok" if c.ok else "fail"), esc(seconds(c.duration)), esc(c.error or "")]
            for c in report.checks
        ]
        verdict = status_badge("ready" if report.ready else "not ready")
        reason = f' <span class="muted">{esc(report.reason)}</span>' if report.reason else ""
        parts.append(f"<h2>Readiness</h2><p>{verdict}{reason}</p>")
        if checks:
            parts.append(table(["check", "status", "took", "error"], checks))
        workers = mon.get("workers") or []
        rows = [
            [
                esc(w.get("name", "")),
                status_badge(w.get("state", "")),
                esc(w.get("restarts", 0)),
                esc(timestamp(w["started_at"])) if isinstance(w.get("started_at"), (int, float)) else "—",
                esc(w.get("last_error") or ""),
            ]
            for w in workers[:MAX_ROWS]
            if isinstance(w, dict)
        ]
        parts.append("<h2>Workers</h2>" + table(["worker", "state", "restarts", "started", "last error"], rows))
        for key, title in SECTIONS.items():
            if key in mon:
                parts.append(f"<h2>{esc(title)}</h2>{render(mon[key])}")
        for key, value in mon.items():
            if key not in _SHOWN:
                parts.append(f"<h2>{esc(key.replace('_', ' ').capitalize())}</h2>{render(value)}")
        return page("Status", "".join(parts), root=root, here="", who=who, refresh=refresh)

    # -- routes ------------------------------------------------------------------------------------------

    def routes_page(self, root: str, refresh: int | None) -> bytes:
        red = self.source.http_metrics
        now = time.monotonic()
        bounds = red.bounds
        table_rows: list[tuple[tuple[str, str], int, int, list[int]]] = []
        current: dict[tuple[str, str], tuple[int, int]] = {}
        for key, entry in list(red.routes.items()):
            statuses = list(entry.statuses.items())
            total = sum(c for _, c in statuses)
            errors = sum(c for s, c in statuses if s >= 500)
            current[key] = (total, errors)
            table_rows.append((key, total, errors, list(entry.duration.counts)))
        base = self._window(now, current)
        uptime = max(time.time() - float(self.source.monitor().get("started_at", time.time())), 1e-9)
        if base is not None:
            window = now - base[0]
            rate_label = f"req/s (last {window:.0f} s)"
        else:
            window = uptime
            rate_label = "req/s (since start)"
        table_rows.sort(key=lambda r: r[1], reverse=True)
        rows: list[list[str]] = []
        for (method, route), total, errors, counts in table_rows[:MAX_ROWS]:
            before = base[1].get((method, route), (0, 0)) if base is not None else (0, 0)
            n, e = total - before[0], errors - before[1]
            if base is None:
                n, e = total, errors
            q = [quantile(p, bounds, counts) for p in (0.5, 0.9, 0.99)]
            ratio = e / n if n else 0.0
            cls = "bad" if ratio >= 0.05 else "warn" if ratio > 0 else "muted"
            shown = f'<span class="{cls}">{ratio:.2%}</span>' if n else '<span class="muted">—</span>'
            rows.append(
                [
                    esc(method),
                    f"<code>{esc(route)}</code>",
                    esc(total),
                    esc(f"{n / window:.3g}"),
                    shown,
                    *(esc(seconds(v)) if v is not None else "—" for v in q),
                    histogram_svg(bounds, counts, list(zip(("p50", "p90", "p99"), q, strict=True))),
                ]
            )
        note = (
            f'<p class="note">{len(table_rows)} route(s), busiest first. Rate and error ratio (5xx) over the window '
            "between views of this page (about a minute; since start on the first view); quantiles and the "
            "chart over the whole life of this process, estimated from the histogram buckets like Prometheus' "
            "histogram_quantile. Ops endpoints are not counted unless STATOR_HTTP_INSTRUMENT_OPS is set.</p>"
        )
        more = (
            f'<p class="note">{len(table_rows) - MAX_ROWS} quieter routes not shown.</p>'
            if len(table_rows) > MAX_ROWS
            else ""
        )
        columns = ["method", "route", "requests", rate_label, "errors", "p50", "p90", "p99", "latency"]
        body = note + table(columns, rows, frozenset({2, 3, 4, 5, 6, 7})) + more
        if not rows:
            body = note + '<p class="muted">No requests yet.</p>'
        return page("Routes", body, root=root, here="routes", who=self._who(), refresh=refresh)

    def _window(
        self, now: float, current: dict[tuple[str, str], tuple[int, int]]
    ) -> tuple[float, dict[tuple[str, str], tuple[int, int]]] | None:
        """The snapshot the rate is measured from: the newest one at least :data:`RATE_WINDOW` old, else the oldest
        one at least a second old; none older than :data:`MAX_AGE`. Keeps the current one (every 2 s at most)."""
        snaps = self._snapshots
        while len(snaps) > 1 and now - snaps[1][0] >= RATE_WINDOW:
            snaps.popleft()
        if snaps and now - snaps[0][0] > MAX_AGE:
            snaps.popleft()
        base = snaps[0] if snaps and now - snaps[0][0] >= 1.0 else None
        if not snaps or now - snaps[-1][0] >= SNAPSHOT_EVERY:
            snaps.append((now, current))
        return base

    # -- recent requests ---------------------------------------------------------------------------------

    def requests_page(self, root: str, refresh: int | None, trace_id: str) -> bytes:
        recent = self._recent()
        if recent is None:
            body = '<p class="muted">This service is not served through stator\'s middleware here.</p>'
            return page("Recent requests", body, root=root, here="requests", who=self._who(), refresh=refresh)
        profiler = self.source.profiler
        profiles = self.profile_links and profiler is not None and bool(getattr(profiler, "continuous", False))
        # A request shorter than two sampling intervals most likely has no samples: no link that would answer 404.
        min_profiled = 2.0 / float(profiler.settings.rate) if profiles else 0.0
        slow = [e for e in reversed(list(recent.slow)) if not trace_id or e.trace_id == trace_id]
        failed = [e for e in reversed(list(recent.failed)) if not trace_id or e.trace_id == trace_id]
        parts = [
            f'<p class="note">The newest {len(recent.slow)} of {recent.slow_total} slow requests '
            f"(≥ {esc(seconds(self._slow()))}, STATOR_HTTP_SLOW) and of {recent.failed_total} failed ones (5xx), "
            f"newest first; kept per process, {recent.slow.maxlen} of each.</p>"
        ]
        if trace_id:
            parts.append(
                f'<p>Showing trace <code>{esc(trace_id)}</code> only · <a href="{esc(root)}/requests">show all</a></p>'
            )
        parts.append(f"<h2>Slow ({len(slow)})</h2>" + self._requests_table(slow, root, profiles, min_profiled))
        parts.append(f"<h2>Failed ({len(failed)})</h2>" + self._requests_table(failed, root, profiles, min_profiled))
        return page("Recent requests", "".join(parts), root=root, here="requests", who=self._who(), refresh=refresh)

    def _requests_table(self, entries: list[RecentRequest], root: str, profiles: bool, min_profiled: float) -> str:
        if not entries:
            return '<p class="muted">None.</p>'
        rows = []
        for e in entries:
            trace = "—"
            if e.trace_id:
                trace = (
                    f'<a class="mono" href="{esc(root)}/requests?trace_id={quote(e.trace_id)}">{esc(e.trace_id)}</a>'
                    f' <a href="{esc(root)}/tracez?trace_id={quote(e.trace_id)}">spans</a>'
                )
            profile = "—"
            if profiles and e.span_id and e.duration >= min_profiled:
                profile = f'<a href="/-/debug/pprof/profile?span_id={quote(e.span_id)}">profile</a>'
            status = (
                f'<span class="{"bad" if e.status >= 500 else "warn" if e.status >= 400 else "ok"}">{e.status}</span>'
            )
            rows.append(
                [
                    f'<span class="nowrap">{esc(timestamp(e.at))}</span>',
                    esc(e.method),
                    f"<code>{esc(e.route)}</code>",
                    f"<code>{esc(e.path)}</code>",
                    status,
                    esc(seconds(e.duration)),
                    f'<span class="mono">{esc(e.request_id)}</span>',
                    trace,
                    profile,
                    esc(e.error or ""),
                ]
            )
        columns = [
            "at (UTC)",
            "method",
            "route",
            "path",
            "status",
            "duration",
            "request id",
            "trace id",
            "profile",
            "error",
        ]
        return table(columns, rows, frozenset({4, 5}))

    # -- helpers -----------------------------------------------------------------------------------------

    def _recent(self) -> RecentRequests | None:
        http = getattr(self.source.asgi, "http", None)
        return http.recent if isinstance(http, ObservabilityMiddleware) else None

    def _slow(self) -> float:
        http = getattr(self.source.asgi, "http", None)
        return http.slow if isinstance(http, ObservabilityMiddleware) else 0.0

    def _who(self) -> str:
        return str(self.source.monitor().get("instance_id", ""))


def _refresh(query: dict[str, list[str]]) -> int | None:
    """``?refresh=N``: None when absent, the seconds when valid, -1 when invalid."""
    values = query.get("refresh")
    if not values or values[0] == "":
        return None
    value = values[0]
    if not value.isdigit() or not 2 <= int(value) <= 300:
        return -1
    return int(value)
