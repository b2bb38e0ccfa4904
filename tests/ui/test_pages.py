"""The instance pages in process: the recent-requests hook of the middleware (only slow or failed application
requests are kept, bounded), the pages' HTML (escaped, bounded), quantiles from the histogram, the ops-port
placement and the profile links."""

from __future__ import annotations

import asyncio
import math
import re
import time

from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stator.http.recent import KEEP, RecentRequests
from stator.service import Service
from stator.ui import InstancePages
from stator.ui.charts import histogram_svg, quantile
from stator.ui.html import MAX_ROWS, MAX_TEXT, render
from tests.http.helpers import make_service, running

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


async def fast(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.06)
    return JSONResponse({"ok": True})


async def status(request: Request) -> Response:
    return JSONResponse({"status": request.path_params["code"]}, status_code=int(request.path_params["code"]))


async def boom(request: Request) -> Response:
    raise ValueError("boom")


APP = Starlette(
    routes=[
        Route("/fast", fast),
        Route("/slow/{name:path}", slow),
        Route("/status/{code}", status),
        Route("/boom", boom),
    ]
)


def pages_of(service: Service) -> InstancePages:
    assert service.asgi.ops is not None
    pages = next(app for prefix, app in service.asgi.ops._mounts if prefix == "/-/ui")
    assert isinstance(pages, InstancePages)
    return pages


def recent_of(service: object) -> RecentRequests:
    recent = service.asgi.http.recent  # type: ignore[attr-defined]
    assert isinstance(recent, RecentRequests)
    return recent


async def test_only_slow_or_failed_application_requests_are_kept() -> None:
    service, _ = make_service(APP, {"STATOR_HTTP_SLOW": "50ms"})
    async with running(service) as client:
        recent = recent_of(service)
        for _ in range(20):
            assert (await client.get("/fast")).status_code == 200
        assert (await client.get("/status/404")).status_code == 404
        assert (await client.get("/status/499")).status_code == 499
        assert (await client.get("/-/ui/")).status_code == 200
        assert not recent.slow and not recent.failed  # fast, 4xx and ops requests: nothing kept

        await client.get("/slow/a", headers={"X-Request-ID": "slow-a"})
        await client.get("/status/503", headers={"X-Request-ID": "fail-503"})
        await client.get("/boom", headers={"X-Request-ID": "fail-boom"})
        # a failed request may also be slow on a loaded machine (its stack is formatted and logged): kept in both
        assert [e.request_id for e in recent.slow if e.status < 500] == ["slow-a"]
        assert [e.request_id for e in recent.failed] == ["fail-503", "fail-boom"]
        entry = recent.slow[0]
        assert (entry.route, entry.path, entry.status, entry.method) == ("/slow/{name}", "/slow/a", 200, "GET")
        assert entry.duration >= 0.05 and entry.trace_id is None
        assert recent.failed[1].error == "ValueError" and recent.failed[1].status == 500

        page = (await client.get("/-/ui/requests")).text
        assert "slow-a" in page and "fail-503" in page and "ValueError" in page
        assert "profile</a>" not in page  # no tracing, no profiling: no profile links


def test_recent_requests_are_bounded_and_paths_cut() -> None:
    recent = RecentRequests()
    for i in range(KEEP + 50):
        recent.add(
            slow=True,
            method="GET",
            route="/r",
            path="/" + "x" * 10_000,
            status=500,
            duration=2.0,
            fields={"request_id": f"r{i}", "trace_id": "t" * 32, "span_id": "s" * 16},
            error=None,
        )
    assert len(recent.slow) == len(recent.failed) == KEEP
    assert recent.slow_total == recent.failed_total == KEEP + 50
    assert recent.slow[0].request_id == "r50" and recent.slow[-1].request_id == f"r{KEEP + 49}"
    assert len(recent.slow[0].path) == 256


async def test_pages_escape_what_clients_and_operators_choose() -> None:
    service, _ = make_service(APP, {"STATOR_HTTP_SLOW": "50ms", "STATOR_SERVICE_NAME": "a<b>\"'&"})
    service.add_monitor_section("evil", lambda: {"<script>k</script>": ["<img src=x onerror=alert(1)>"]})
    async with running(service) as client:
        await client.get("/slow/<script>alert(1)</script>")
        for page in ("/-/ui/", "/-/ui/routes", "/-/ui/requests"):
            response = await client.get(page)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            body = response.text
            assert "<script" not in body and "<img" not in body
            assert "a&lt;b&gt;&quot;&#x27;&amp;" in body
            assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await client.get("/-/ui/requests")).text
        assert "&lt;script&gt;k&lt;/script&gt;" in (await client.get("/-/ui/")).text


def test_render_is_bounded() -> None:
    html = render({"rows": [{"k": i} for i in range(MAX_ROWS + 300)], "long": "y" * (MAX_TEXT * 4)})
    assert html.count("<tr>") <= MAX_ROWS + 3
    assert "300 more not shown" in html
    assert "y" * MAX_TEXT + "…" in html and "y" * (MAX_TEXT + 1) not in html
    deep: dict[str, object] = {}
    node = deep
    for _ in range(50):
        node["d"] = {}
        node = node["d"]  # type: ignore[assignment]
    assert render(deep).count("<table") <= 7


async def test_routes_page_rate_window_and_quantiles() -> None:
    service, _ = make_service(APP)
    async with running(service) as client:
        for _ in range(10):
            await client.get("/fast")
        await client.get("/status/500")
        first = (await client.get("/-/ui/routes")).text
        assert "req/s (since start)" in first
        row = re.search(r"<code>/fast</code></td><td class=num>(\d+)</td>", first)
        assert row is not None and row.group(1) == "10"
        assert first.count('<svg class="hist"') == 2
        pages = pages_of(service)
        pages._snapshots[0] = (0.0, {})  # pretend the last view was long ago
        second = (await client.get("/-/ui/routes")).text
        assert "req/s (since start)" in second  # the old snapshot is past the window: dropped
        pages._snapshots.clear()
        pages._snapshots.append((time.monotonic() - 10, {("GET", "/fast"): (5, 0), ("GET", "/status/{code}"): (0, 0)}))
        third = (await client.get("/-/ui/routes")).text
        assert "req/s (last 10 s)" in third
        row = re.search(r"<code>/fast</code></td><td class=num>10</td><td class=num>([0-9.]+)</td>", third)
        assert row is not None and abs(float(row.group(1)) - 0.5) < 0.01  # 5 requests in 10 s
        assert "100.00%" in third  # /status/{code}: its one request in the window was a 500


async def test_pages_on_the_ops_port_link_profiles_only_where_served() -> None:
    service, _ = make_service(APP, {"STATOR_OPS_EXPOSE_SENSITIVE": "false"})
    async with running(service) as client:
        assert (await client.get("/-/ui/")).status_code == 200  # not sensitive: served on the app port
        assert pages_of(service).profile_links is False


@given(st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=200), st.sampled_from([0.5, 0.9, 0.99]))
def test_quantile_lies_in_the_bucket_of_the_true_quantile(values: list[float], q: float) -> None:
    from bisect import bisect_left

    counts = [0] * len(BOUNDS)
    for v in values:
        counts[bisect_left(BOUNDS, v)] += 1
    estimate = quantile(q, BOUNDS, counts)
    assert estimate is not None
    exact = sorted(values)[max(math.ceil(q * len(values)) - 1, 0)]
    i = bisect_left(BOUNDS, exact)
    lower = BOUNDS[i - 1] if i else 0.0
    upper = BOUNDS[i] if not math.isinf(BOUNDS[i]) else BOUNDS[-2]
    assert lower - 1e-12 <= estimate <= upper + 1e-12
    svg = histogram_svg(BOUNDS, counts, [("p", estimate)])
    assert svg.count("<rect") == len(BOUNDS) and '<line class="q"' in svg


def test_quantile_of_empty_histogram() -> None:
    assert quantile(0.5, BOUNDS, [0] * len(BOUNDS)) is None
