"""The dev registry's UI at ``/ui/`` (Consul's path): services with instance counts and health, each instance's
checks with their output, tags and meta; the KV tree with view, create, edit and delete.

Every page is rendered from the registry's own HTTP API, called in process (``/v1/catalog/services``,
``/v1/health/service/<name>``, ``/v1/kv/...``): the UI sees exactly what a client sees and does not depend on
how the state is stored. Writes are CAS-safe: an edit carries the ``ModifyIndex`` the form was rendered from
(``?cas=``), a create uses ``cas=0``; when someone else changed the key in between, the page shows the current
value beside the rejected edit and overwrites nothing. Form posts are refused when the browser says they come
from another site (``Sec-Fetch-Site`` / ``Origin``), so a web page cannot write to a registry on localhost.

Server-rendered HTML: reading works with JavaScript off. With it on, ``/ui/static/live.js`` (the only script,
served from this module) waits on the page's blocking query (``?index=&wait=``) and reloads when it fires.
Output is escaped everywhere and sizes are bounded: 100 services and 200 KV entries per page, values shown up to
64 KiB.

The registry routes ``/ui`` and ``/ui/...`` here (:func:`handle`).
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote

import orjson

from stator.registry.endpoints.kv import KV_MAX_VALUE_SIZE
from stator.registry.http import Park, Request, Response
from stator.ui.html import CSS, esc, kv_table, render, status_badge, table

PREFIX = "/ui"
SERVICES_PER_PAGE = 100
KEYS_PER_PAGE = 200
MAX_VALUE_SHOWN = 64 * 1024
WAIT = "5m"
HTML = (b"content-type", b"text/html; charset=utf-8")
SECURITY = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
# Waits on the page's blocking query and reloads when its index moves; gives up quietly on errors (then the page
# is simply static). No inline script anywhere: the CSP allows only this file.
LIVE_JS = (
    """
(function () {
  var body = document.body, watch = body.getAttribute("data-watch"), index = body.getAttribute("data-index");
  if (!watch || !index || !window.fetch) return;
  var failures = 0;
  function poll() {
    var sep = watch.indexOf("?") < 0 ? "?" : "&";
    fetch(watch + sep + "index=" + encodeURIComponent(index) + "&wait="""
    + WAIT
    + """")
      .then(function (r) {
        var next = r.headers.get("X-Consul-Index");
        if (next && next !== index) {
          // A form being edited is never thrown away: the page says it changed (CAS guards the save anyway).
          if (body.getAttribute("data-live") === "notify") {
            status.textContent = "changed since loaded: reload"; return;
          }
          location.reload(); return;
        }
        failures = 0; poll();
      })
      .catch(function () { if (++failures < 5) setTimeout(poll, 1000 * failures); });
  }
  var status = document.getElementById("live") || document.createElement("span");
  status.textContent = "live";
  poll();
})();
"""
)
CSS_EXTRA = """
textarea { width:100%; max-width:60rem; font-family:ui-monospace,monospace; font-size:12.5px; }
input[type=text] { width:30rem; font-family:ui-monospace,monospace; }
form.inline { display:inline; } button { margin:.3rem .3rem .3rem 0; }
pre { background:#f6f8fa; padding:.5rem; max-width:60rem; overflow:auto; white-space:pre-wrap; }
.conflict { border:1px solid #c62828; padding:.4rem .8rem; background:#ffebe9; max-width:60rem; }
"""


class RegistryAPI(Protocol):
    """The registry application, as far as the UI uses it: its request handler."""

    async def handle(self, req: Request) -> Response | Park: ...


async def handle(app: RegistryAPI, req: Request) -> Response:
    """Answer a request for ``/ui`` or anything under ``/ui/``."""
    path = req.path[len(PREFIX) :]
    try:
        if path in ("", "/"):
            return _redirect(f"{PREFIX}/services")
        if path == "/static/ui.css":
            return Response(200, (CSS + CSS_EXTRA).encode(), [(b"content-type", b"text/css; charset=utf-8")])
        if path == "/static/live.js":
            return Response(200, LIVE_JS.encode(), [(b"content-type", b"text/javascript; charset=utf-8")])
        if req.method not in ("GET", "HEAD", "POST"):
            return _error(405, f"method {req.method} not allowed")
        if path.startswith("/kv/") or path == "/kv":
            raw_key = path[len("/kv/") :] if path.startswith("/kv/") else ""
            if req.method == "POST":
                return await _kv_post(app, req, raw_key)
            return await _kv_page(app, req, raw_key)
        if req.method == "POST":
            return _error(405, "method POST not allowed here")
        if path == "/services":
            return await _services_page(app, req)
        if path.startswith("/services/"):
            return await _service_page(app, path[len("/services/") :])
        return _error(404, "no such page")
    except _APIFailure as exc:
        return _error(502, f"the registry API answered {exc.status}: {exc.text}")


# -- services ------------------------------------------------------------------------------------------------


async def _services_page(app: RegistryAPI, req: Request) -> Response:
    page_no = _page_number(req)
    index, services = await _get_json(app, "/v1/catalog/services")
    names = sorted(services)
    start = page_no * SERVICES_PER_PAGE
    rows = []
    for name in names[start : start + SERVICES_PER_PAGE]:
        _, entries = await _get_json(app, f"/v1/health/service/{quote(name, safe='')}")
        counts = {"passing": 0, "warning": 0, "critical": 0}
        for entry in entries:
            counts[_worst(entry.get("Checks") or [])] += 1
        health = " ".join(
            f'<span class="badge {kind}">{counts[word]} {word}</span>'
            for word, kind in (("passing", "ok"), ("warning", "warn"), ("critical", "bad"))
            if counts[word]
        )
        tags = ", ".join(f"<code>{esc(t)}</code>" for t in (services[name] or [])[:20])
        link = f'<a href="{PREFIX}/services/{quote(name, safe="")}">{esc(name)}</a>'
        rows.append([link, str(len(entries)), health or '<span class="muted">—</span>', tags])
    body = f'<p class="note">{len(names)} service(s).</p>'
    body += table(["service", "instances", "health", "tags"], rows, frozenset({1})) if rows else "<p>None.</p>"
    body += _pager(f"{PREFIX}/services", page_no, len(names), SERVICES_PER_PAGE)
    return _page("Services", body, "services", watch="/v1/catalog/services", index=index)


async def _service_page(app: RegistryAPI, raw_name: str) -> Response:
    name = unquote(raw_name)
    index, entries = await _get_json(app, f"/v1/health/service/{quote(name, safe='')}")
    parts = [f'<p><a href="{PREFIX}/services">All services</a> · {len(entries)} instance(s)</p>']
    for entry in entries[:SERVICES_PER_PAGE]:
        svc = entry.get("Service") or {}
        node = entry.get("Node") or {}
        checks = entry.get("Checks") or []
        address = svc.get("Address") or node.get("Address") or ""
        facts = [
            ("health", status_badge(_worst(checks))),
            ("address", f"<code>{esc(address)}:{esc(svc.get('Port', ''))}</code>"),
            ("node", esc(node.get("Node", ""))),
            ("tags", ", ".join(f"<code>{esc(t)}</code>" for t in svc.get("Tags") or []) or "—"),
            ("meta", render(svc.get("Meta") or {}, 1)),
        ]
        rows = [
            [
                esc(c.get("Name", "")),
                status_badge(c.get("Status", "")),
                f"<pre>{esc(str(c.get('Output', ''))[:4000])}</pre>" if c.get("Output") else "—",
                f"<code>{esc(c.get('CheckID', ''))}</code>",
                esc(c.get("ModifyIndex", "")),
            ]
            for c in checks[:50]
        ]
        parts.append(f"<h2>{esc(svc.get('ID', ''))}</h2>" + kv_table(facts))
        parts.append(table(["check", "status", "output", "id", "changed at index"], rows) if rows else "")
    if not entries:
        parts.append('<p class="muted">No instances (the service is unknown or was deregistered).</p>')
    watch = f"/v1/health/service/{quote(name, safe='')}"
    return _page(f"Service {name}", "".join(parts), "services", watch=watch, index=index)


def _worst(checks: Sequence[dict[str, Any]]) -> str:
    statuses = {c.get("Status") for c in checks}
    return "critical" if "critical" in statuses else "warning" if "warning" in statuses else "passing"


# -- KV ------------------------------------------------------------------------------------------------------


async def _kv_page(app: RegistryAPI, req: Request, raw_key: str, notice: str = "") -> Response:
    key = unquote(raw_key)
    if key == "" or key.endswith("/"):
        return await _kv_folder(app, req, key, notice)
    status, headers, body = await _call(app, "GET", f"/v1/kv/{quote(key, safe='/')}")
    crumbs = _crumbs(key)
    if status == 404:
        form = _create_form(key.rsplit("/", 1)[0] + "/" if "/" in key else "", key)
        return _page(f"KV {key}", crumbs + notice + '<p class="muted">No such key.</p>' + form, "kv", status=404)
    _raise_unless_ok(status, body)
    entry = orjson.loads(body)[0]
    value = _decode_value(entry.get("Value"))
    index = int(entry.get("ModifyIndex", 0))
    facts = [
        ("key", f"<code>{esc(key)}</code>"),
        ("flags", esc(entry.get("Flags", 0))),
        ("modify index", esc(index)),
        ("create index", esc(entry.get("CreateIndex", 0))),
        ("session", esc(entry.get("Session") or "—")),
    ]
    action = f"{PREFIX}/kv/{quote(key, safe='/')}"
    shown, editable = value
    edit = (
        f'<form method="post" action="{esc(action)}"><input type="hidden" name="cas" value="{index}">'
        f'<textarea name="value" rows="12">{esc_full(shown)}</textarea><br>'
        '<button name="action" value="save">Save</button></form>'
        if editable
        else f'<pre>{esc_full(shown)}</pre><p class="note">Binary value: shown as base64, not editable here.</p>'
    )
    delete = (
        f'<form class="inline" method="post" action="{esc(action)}"><input type="hidden" name="cas" value="{index}">'
        '<button name="action" value="delete">Delete</button></form>'
    )
    kv_index = int(headers.get("x-consul-index", index))
    body_html = crumbs + notice + kv_table(facts) + "<h2>Value</h2>" + edit + delete
    return _page(f"KV {key}", body_html, "kv", watch=f"/v1/kv/{quote(key, safe='/')}", index=kv_index, notify=True)


async def _kv_folder(app: RegistryAPI, req: Request, prefix: str, notice: str) -> Response:
    page_no = _page_number(req)
    status, headers, body = await _call(app, "GET", f"/v1/kv/{quote(prefix, safe='/')}", "keys&separator=/")
    keys: list[str] = orjson.loads(body) if status == 200 else []
    if status not in (200, 404):
        _raise_unless_ok(status, body)
    keys.sort()
    start = page_no * KEYS_PER_PAGE
    rows = []
    for k in keys[start : start + KEYS_PER_PAGE]:
        label = k[len(prefix) :] or k
        kind = "folder" if k.endswith("/") else "key"
        rows.append([f'<a href="{PREFIX}/kv/{quote(k, safe="/")}"><code>{esc(label)}</code></a>', kind])
    listing = table(["name", "kind"], rows) if rows else '<p class="muted">Empty.</p>'
    here = f"{PREFIX}/kv/{quote(prefix, safe='/')}"
    body_html = (
        _crumbs(prefix)
        + notice
        + f'<p class="note">{len(keys)} entr{"y" if len(keys) == 1 else "ies"} under this prefix.</p>'
        + listing
        + _pager(here, page_no, len(keys), KEYS_PER_PAGE)
        + _create_form(prefix, "")
    )
    index = int(headers.get("x-consul-index", "0") or 0)
    watch = f"/v1/kv/{quote(prefix, safe='/')}?keys&separator=/"
    return _page(f"KV /{prefix}", body_html, "kv", watch=watch, index=index)


def _create_form(prefix: str, key: str) -> str:
    return (
        f'<h2>Create a key</h2><form method="post" action="{PREFIX}/kv/"><input type="hidden" name="cas" value="0">'
        f'<input type="text" name="key" value="{esc_full(key or prefix)}" placeholder="path/to/key"><br>'
        '<textarea name="value" rows="4"></textarea><br><button name="action" value="create">Create</button></form>'
    )


async def _kv_post(app: RegistryAPI, req: Request, raw_key: str) -> Response:
    if not _same_origin(req):
        return _error(403, "cross-site form post refused")
    form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    action = form.get("action", [""])[0]
    cas = form.get("cas", [""])[0]
    if not cas.isdigit():
        return _error(400, "cas must be the modify index the form was rendered from")
    key = form.get("key", [""])[0] if action == "create" else unquote(raw_key)
    if not key or key.endswith("/"):
        return _error(400, "a key name is required (and does not end with /)")
    if action not in ("create", "save", "delete"):
        return _error(400, "action must be create, save or delete")
    target = f"/v1/kv/{quote(key, safe='/')}"
    value = form.get("value", [""])[0].encode()
    if len(value) > KV_MAX_VALUE_SIZE:
        return _error(413, f"value too large: {len(value)} bytes, the registry keeps at most {KV_MAX_VALUE_SIZE}")
    method = "DELETE" if action == "delete" else "PUT"
    status, _, body = await _call(app, method, target, f"cas={cas}", value if method == "PUT" else b"")
    if status != 200:
        return _error(status if 400 <= status < 500 else 502, body.decode("utf-8", "replace")[:500])
    if body.strip() == b"true":
        after = key if action != "delete" else key.rsplit("/", 1)[0] + "/" if "/" in key else ""  # deleted: its folder
        return _redirect(f"{PREFIX}/kv/{quote(after, safe='/')}")
    # CAS refused: someone changed (or created) the key since the form was rendered. Show, do not overwrite.
    what = "was created by someone else" if action == "create" else "was changed by someone else"
    notice = (
        f'<div class="conflict"><p><b>Not saved:</b> the key {what} after this page was rendered (CAS index '
        f"{esc(cas)}). The current value is below; your {esc(action)} was not applied.</p>"
        + (f"<p>Your value:</p><pre>{esc_full(value.decode('utf-8', 'replace'))}</pre>" if action != "delete" else "")
        + "</div>"
    )
    response = await _kv_page(app, req, quote(key, safe="/"), notice)
    response.status = 409
    return response


def _same_origin(req: Request) -> bool:
    """False when the browser says the form comes from another site. ``Sec-Fetch-Site`` (every current browser)
    decides; without it a non-null ``Origin`` must be this host; a client sending neither (curl) is not a
    browser a web page could drive."""
    site = req.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = req.headers.get("origin")
    if origin is None:
        return True
    host = req.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _decode_value(value: str | None) -> tuple[str, bool]:
    """The value as text (editable) when it is UTF-8, else as base64 (not editable); cut for display."""
    if not value:
        return "", True
    try:
        raw = base64.b64decode(value)
    except binascii.Error:
        return value, False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return value[:MAX_VALUE_SHOWN], False
    if len(text) > MAX_VALUE_SHOWN:
        return text[:MAX_VALUE_SHOWN] + "\n… (cut: too large to edit here)", False
    return text, True


def _crumbs(key: str) -> str:
    parts = key.split("/")
    links = [f'<a href="{PREFIX}/kv/">(root)</a>']
    for i in range(len(parts) - 1):
        folder = "/".join(parts[: i + 1]) + "/"
        links.append(f'<a href="{PREFIX}/kv/{quote(folder, safe="/")}">{esc(parts[i])}</a>')
    return "<p>" + " / ".join(links) + "</p>"


# -- plumbing ------------------------------------------------------------------------------------------------


class _APIFailure(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def _call(
    app: RegistryAPI, method: str, path: str, query: str = "", body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request to the registry's HTTP API, in process (never parked: no ``index``)."""
    result = await app.handle(Request(method, path, query.encode(), {}, body))
    if isinstance(result, Park):  # cannot happen without ?index=, but a Park must not leak out
        _, result = result.render()
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in result.headers}
    return result.status, headers, result.body


async def _get_json(app: RegistryAPI, path: str) -> tuple[int, Any]:
    status, headers, body = await _call(app, "GET", path)
    _raise_unless_ok(status, body)
    return int(headers.get("x-consul-index", "0") or 0), orjson.loads(body)


def _raise_unless_ok(status: int, body: bytes) -> None:
    if status != 200:
        raise _APIFailure(status, body.decode("utf-8", "replace")[:500])


def _page_number(req: Request) -> int:
    values = parse_qs(req.raw_query.decode("latin-1")).get("page", ["0"])
    return int(values[0]) if values[0].isdigit() and len(values[0]) < 7 else 0


def _pager(base: str, page_no: int, total: int, per_page: int) -> str:
    pages = (total + per_page - 1) // per_page
    if pages <= 1:
        return ""
    links = []
    if page_no > 0:
        links.append(f'<a href="{esc(base)}?page={page_no - 1}">← previous</a>')
    links.append(f"page {page_no + 1} of {pages}")
    if page_no + 1 < pages:
        links.append(f'<a href="{esc(base)}?page={page_no + 1}">next →</a>')
    return '<p class="note">' + " · ".join(links) + "</p>"


def esc_full(text: str) -> str:
    """Escaped without the display cut: form values must round-trip whole."""
    return html.escape(text, quote=True)


def _page(
    title: str, body: str, here: str, *, watch: str = "", index: int = 0, status: int = 200, notify: bool = False
) -> Response:
    nav = "".join(
        f'<a href="{PREFIX}/{href}"{" class=here" if href.startswith(here) else ""}>{label}</a>'
        for href, label in (("services", "Services"), ("kv/", "Key/Value"))
    )
    live = f' data-watch="{esc(watch)}" data-index="{index}"' if watch else ""
    live += ' data-live="notify"' if notify else ""
    doc = (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · stator registry</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{PREFIX}/static/ui.css"></head><body{live}>'
        f'<header><span class="brand">stator registry</span><nav>{nav}</nav>'
        '<span class="who" id="live"></span></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        f'<script src="{PREFIX}/static/live.js"></script></body></html>'
    )
    return Response(status, doc.encode(), [HTML, *SECURITY])


def _redirect(location: str) -> Response:
    return Response(303, b"", [(b"location", location.encode()), (b"content-type", b"text/plain")])


def _error(status: int, message: str) -> Response:
    return Response(status, orjson.dumps({"error": message}), [(b"content-type", b"application/json"), *SECURITY])
