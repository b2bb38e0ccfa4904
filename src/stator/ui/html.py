"""Server-rendered HTML for the instance pages: escaping, the page frame, the stylesheet, and a bounded renderer
for the JSON-like values of ``/-/monitor``.

Everything a page shows goes through :func:`esc` (``html.escape`` with quotes): a route, a path, a service name
or a KV key containing ``<script>`` is displayed, never run. The pages also answer with a Content-Security-Policy
that allows no script at all, so an escaping bug still could not execute anything. Sizes are bounded: strings
are cut at :data:`MAX_TEXT` characters, lists at :data:`MAX_ROWS` rows, nesting at :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_TEXT = 500
MAX_ROWS = 200
MAX_COLUMNS = 12
MAX_DEPTH = 6

# No script at all; styles only from the package's stylesheet; inline SVG needs nothing more.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

CSS = """
:root { --fg:#1d232a; --muted:#5c6670; --bg:#fff; --line:#d9dee3; --head:#f3f5f7; --ok:#1a7f37; --bad:#c62828;
        --warn:#9a6700; --accent:#2458b3; --bar:#5b8def; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
       background:var(--bg); }
header { display:flex; align-items:baseline; gap:1.5rem; padding:.6rem 1.2rem; background:#1d232a; color:#fff; }
header .brand { font-weight:600; }
header .who { color:#b8c2cc; font-family:ui-monospace,monospace; font-size:12px; }
header nav a { color:#dfe6ee; margin-right:1rem; text-decoration:none; }
header nav a.here { color:#fff; border-bottom:2px solid #fff; }
main { padding:1rem 1.2rem 2rem; max-width:1400px; }
h1 { font-size:1.25rem; margin:.2rem 0 1rem; }
h2 { font-size:1.05rem; margin:1.6rem 0 .5rem; border-bottom:1px solid var(--line); padding-bottom:.2rem; }
table { border-collapse:collapse; margin:.3rem 0; }
th, td { text-align:left; padding:.25rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--head); font-weight:600; white-space:nowrap; }
table.kv th { background:none; color:var(--muted); font-weight:500; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12.5px; overflow-wrap:break-word; }
.nowrap { white-space:nowrap; }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.warn { color:var(--warn); font-weight:600; } .muted { color:var(--muted); }
.badge { display:inline-block; padding:0 .45rem; border-radius:.6rem; font-size:12px; background:var(--head); }
.badge.ok { background:#dafbe1; } .badge.bad { background:#ffebe9; } .badge.warn { background:#fff8c5; }
a { color:var(--accent); }
svg.hist rect { fill:var(--bar); } svg.hist line.q { stroke:var(--bad); stroke-width:1; }
svg.hist line.base { stroke:var(--line); }
p.note { color:var(--muted); margin:.3rem 0; }
"""


def esc(value: object) -> str:
    """``value`` as escaped text, cut at :data:`MAX_TEXT` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "…"
    return html.escape(text, quote=True)


def seconds(value: float) -> str:
    """A duration for people: 850 µs, 12.3 ms, 1.25 s, 3 min 4 s, 2 h 5 min, 3 d 4 h."""
    if not math.isfinite(value):
        return "∞"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 60:
        return f"{value:.3g} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def timestamp(epoch: float) -> str:
    """An epoch time as UTC ISO-8601 with milliseconds."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def page(title: str, body: str, *, root: str, here: str, who: str, refresh: int | None = None) -> bytes:
    """A complete HTML document: header with the instance and the page links, then ``body`` (already escaped)."""
    links = [("", "Status"), ("routes", "Routes"), ("requests", "Recent requests"), ("tracez", "Tracez")]
    nav = "".join(
        f'<a href="{esc(root)}/{href}"{" class=here" if href == here else ""}>{label}</a>' for href, label in links
    )
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · {esc(who)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">{meta}'
        f'<link rel="stylesheet" href="{esc(root)}/static/ui.css"></head>'
        f'<body><header><span class="brand">stator</span><span class="who">{esc(who)}</span><nav>{nav}</nav></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    ).encode()


def kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table; the values are HTML already (escape them with :func:`esc`)."""
    return '<table class="kv">' + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], numeric: frozenset[int] = frozenset()) -> str:
    """A table with a header row; cells are HTML already; ``numeric`` column indexes are right-aligned."""
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_GOOD = frozenset({"ok", "ready", "running", "registered", "healthy", "passing", "up", "closed", "true"})
_BAD = frozenset({"fail", "failed", "error", "not ready", "critical", "down", "open", "wedged", "stopped"})


def status_badge(value: object) -> str:
    """A state word as a coloured badge (green for ok/ready/running..., red for fail/error...)."""
    word = str(value).lower()
    kind = "ok" if word in _GOOD else "bad" if word in _BAD else "warn" if word else ""
    return f'<span class="badge {kind}">{esc(value)}</span>'


def render(value: Any, depth: int = 0) -> str:
    """Any JSON-like value as HTML, escaped and bounded (depth, rows, columns, text length)."""
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return '<span class="ok">yes</span>' if value else '<span class="muted">no</span>'
    if isinstance(value, float):
        return esc(f"{value:.6g}")
    if isinstance(value, (int, str)):
        return f'<span class="mono">{esc(value)}</span>' if isinstance(value, str) and depth else esc(value)
    if depth >= MAX_DEPTH:
        return '<span class="muted">…</span>'
    if isinstance(value, Mapping):
        items = list(value.items())
        rows = [(str(k), _when(k, v) or render(v, depth + 1)) for k, v in items[:MAX_ROWS]]
        more = _more(len(items))
        return (kv_table(rows) + more) if rows else '<span class="muted">(empty)</span>'
    if isinstance(value, (list, tuple)):
        if not value:
            return '<span class="muted">(none)</span>'
        if all(isinstance(v, Mapping) for v in value):
            return _records(value, depth) + _more(len(value))
        return ", ".join(render(v, depth + 1) for v in value[:MAX_ROWS]) + _more(len(value))
    return esc(value)


_TIME_KEYS = ("_at", "oldest", "newest", "since", "started", "expires")


def _when(key: object, value: Any) -> str | None:
    """An epoch-seconds value under a time-like key (``started_at``, ``oldest``, ...) as a UTC time."""
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 1e9 <= value <= 4.2e9
        and str(key).endswith(_TIME_KEYS)
    ):
        return esc(timestamp(value))
    return None


def _records(records: Sequence[Mapping[str, Any]], depth: int) -> str:
    columns: list[str] = []
    for record in records[:MAX_ROWS]:
        for key in record:
            if key not in columns and len(columns) < MAX_COLUMNS:
                columns.append(str(key))
    rows = [[_when(c, r.get(c)) or render(r.get(c), depth + 1) for c in columns] for r in records[:MAX_ROWS]]
    return table(columns, rows)


def _more(total: int) -> str:
    return f'<p class="note">{total - MAX_ROWS} more not shown</p>' if total > MAX_ROWS else ""
