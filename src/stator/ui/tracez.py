"""The tracez page (``/-/ui/tracez``): the spans this instance finished recently, as zPages shows them.

* the summary: one row per span name, the count in each latency bucket and the errors, each a link;
* ``?name=N&bucket=I`` (or ``&errors=1``): the latest spans of that cell with their attributes and events;
* ``?trace_id=HEX``: the spans of that trace this instance saw, as their parent/child tree.

Everything shown is escaped and bounded (:mod:`stator.tracing.recent` keeps a few spans per cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from opentelemetry.trace import SpanKind, StatusCode

from stator.tracing.recent import BOUNDS, RecentSpans, duration, is_error
from stator.tracing.spans import LightSpan
from stator.ui.html import MAX_ROWS, esc, kv_table, page, seconds, table, timestamp

_BUCKET_LABELS = ("< 1ms", "1–10ms", "10–100ms", "100ms–1s", "1–10s", "≥ 10s")
_KINDS = {kind: kind.name.lower() for kind in SpanKind}


def tracez_page(tracing: Any, root: str, refresh: int | None, query: dict[str, list[str]], who: str) -> bytes:
    recent: RecentSpans | None = getattr(tracing, "recent", None)
    if recent is None:
        body = '<p class="muted">Tracing is off here (STATOR_OTLP_ENDPOINT is not set): no spans to show.</p>'
        return page("Tracez", body, root=root, here="tracez", who=who, refresh=refresh)
    trace_hex = query.get("trace_id", [""])[0]
    name = query.get("name", [""])[0]
    if trace_hex:
        body = _trace(recent, trace_hex, root)
    elif name:
        body = _cell(recent, name, query, root)
    else:
        body = _summary(recent, root)
    return page("Tracez", body, root=root, here="tracez", who=who, refresh=refresh)


def _summary(recent: RecentSpans, root: str) -> str:
    rows = []
    for name, (counts, errors) in sorted(recent.snapshot().items())[:MAX_ROWS]:
        link = f"{esc(root)}/tracez?name={quote(name)}"
        cells = [
            f'<a href="{link}&amp;bucket={i}">{n}</a>' if n else '<span class="muted">0</span>'
            for i, n in enumerate(counts)
        ]
        err = f'<a class="bad" href="{link}&amp;errors=1">{errors}</a>' if errors else '<span class="muted">0</span>'
        rows.append([f"<code>{esc(name)}</code>", *cells, err])
    note = (
        f'<p class="note">Spans this process finished, by name and latency; the latest {len(recent.spans)} are kept'
        " for trace trees. Counts are since start.</p>"
    )
    if recent.dropped_names:
        note += f'<p class="warn">{recent.dropped_names} spans with names beyond the first 200 were not kept.</p>'
    if not rows:
        return note + '<p class="muted">No spans yet.</p>'
    numeric = frozenset(range(1, len(BOUNDS) + 2))
    return note + table(["span name", *_BUCKET_LABELS, "errors"], rows, numeric)


def _cell(recent: RecentSpans, name: str, query: dict[str, list[str]], root: str) -> str:
    stats = recent.names.get(name)
    errors = query.get("errors", [""])[0] == "1"
    bucket = query.get("bucket", ["0"])[0]
    if stats is None or (not errors and not (bucket.isdigit() and int(bucket) < len(BOUNDS))):
        return f'<p class="muted">No such span name or bucket.</p><p><a href="{esc(root)}/tracez">all spans</a></p>'
    spans = list(stats.failed) if errors else list(stats.latest[int(bucket)])
    what = "errors" if errors else _BUCKET_LABELS[int(bucket)]
    head = f'<p><code>{esc(name)}</code> · {esc(what)} · <a href="{esc(root)}/tracez">all spans</a></p>'
    return head + "".join(_span_block(s, root) for s in reversed(spans))


def _trace(recent: RecentSpans, trace_hex: str, root: str) -> str:
    try:
        trace_id = int(trace_hex, 16)
    except ValueError:
        return '<p class="bad">trace_id must be hexadecimal.</p>'
    spans = recent.trace(trace_id)
    head = f'<p>Trace <code>{esc(trace_hex)}</code> · <a href="{esc(root)}/tracez">all spans</a></p>'
    if not spans:
        return head + '<p class="muted">No span of this trace is among the recent ones.</p>'
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[LightSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    rows: list[list[str]] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            indent = "&nbsp;&nbsp;&nbsp;&nbsp;" * depth
            status = '<span class="bad">error</span>' if is_error(span) else '<span class="ok">ok</span>'
            rows.append(
                [
                    f"{indent}<code>{esc(span.name)}</code>",
                    esc(_KINDS.get(span.kind, "")),
                    esc(seconds(duration(span))),
                    status,
                    f'<span class="mono">{format(span.context.span_id, "016x")}</span>',
                ]
            )
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    tree = table(["span", "kind", "duration", "status", "span id"], rows, frozenset({2}))
    return head + tree + "".join(_span_block(s, root) for s in spans[:MAX_ROWS])


def _span_block(span: LightSpan, root: str) -> str:
    trace_hex = format(span.context.trace_id, "032x")
    when = timestamp(span.start_time / 1e9) if span.start_time else ""
    rows = [
        ("trace", f'<a class="mono" href="{esc(root)}/tracez?trace_id={trace_hex}">{trace_hex}</a>'),
        ("span id", f'<span class="mono">{format(span.context.span_id, "016x")}</span>'),
        ("kind", esc(_KINDS.get(span.kind, ""))),
        ("started", esc(when)),
        ("duration", esc(seconds(duration(span)))),
        (
            "status",
            esc(span.status.status_code.name.lower() if span.status.status_code is not StatusCode.UNSET else ""),
        ),
    ]
    rows.extend((esc(k), esc(_short(v))) for k, v in list(span.attributes.items())[:MAX_ROWS])
    events = [[esc(e.name), esc(_event_attrs(e.attributes))] for e in list(span.events)[:MAX_ROWS]]
    block = f"<h2><code>{esc(span.name)}</code></h2>" + kv_table(rows)
    if events:
        block += table(["event", "attributes"], events)
    return block


def _event_attrs(attributes: Any) -> str:
    return "; ".join(f"{k}={_short(v)}" for k, v in list((attributes or {}).items())[:20])


def _short(value: object, limit: int = 300) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, Sequence) and not isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"
