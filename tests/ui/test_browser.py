"""The instance pages of a running ``stator run`` in a real headless Chromium (Debian ``chromium`` driven by
``chromium-driver``): every page loads with no console error, a slow request made by the test shows with its
trace id and links to its profile, a failed one shows in the failures, and HTML in a path or a service name is
shown, never run. Screenshots go to the test's tmp dir (and to ``$UI_SCREENSHOTS`` when set, e.g. docs/)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stator.profiling.pprof import decode
from tests.conftest import ServiceProcess, service_env
from tests.externals import require_tool
from tests.tracing.receiver import OTLPReceiver
from tests.ui.browser import Browser

NAME = "ui<script>window.__xss_name=1</script>"
PROBE = "/slow/<script>window.__xss_path=1</script><img src=x onerror=window.__xss_img=1>"


class Served:
    def __init__(self, svc: ServiceProcess, browser: Browser, shots: Path) -> None:
        self.svc = svc
        self.base = svc.base_url
        self.browser = browser
        self.shots = shots

    def open(self, page: str) -> dict[str, Any]:
        """Load a page; return what the test checks: text, script/img element count, xss flags, console errors."""
        self.browser.get(f"{self.base}/-/ui/{page}")
        facts: dict[str, Any] = self.browser.script(
            "return {title: document.title, text: document.body.innerText,"
            " active: document.querySelectorAll('script, img, iframe, object').length,"
            " xss: [window.__xss_name, window.__xss_path, window.__xss_img].filter(x => x !== undefined).length,"
            " links: Array.from(document.querySelectorAll('a')).map(a => [a.innerText, a.getAttribute('href')]),"
            " charts: document.querySelectorAll('svg.hist rect').length};"
        )
        facts["errors"] = [e for e in self.browser.console() if e.get("level") == "SEVERE"]
        return facts

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.browser.screenshot(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        extra = os.environ.get("UI_SCREENSHOTS")
        if extra:
            shutil.copyfile(path, Path(extra) / f"ui-{name}.png")
        return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    tmp = tmp_path_factory.mktemp("ui")
    with OTLPReceiver() as receiver:
        env = service_env(
            STATOR_SERVICE_NAME=NAME,
            STATOR_HTTP_SLOW="200ms",
            STATOR_OTLP_ENDPOINT=receiver.endpoint,
            STATOR_OTLP_BATCH_DELAY="100ms",
            STATOR_PROFILE_CONTINUOUS="true",
            STATOR_PROFILE_WINDOW="1s",
            STATOR_PROFILE_RETENTION="20s",
        )
        svc = ServiceProcess([sys.executable, "-m", "stator", "run", "tests.ui.app:app"], env)
        try:
            svc.wait_for("listening")
            browser = Browser(chromium, chromedriver, tmp / "profile")
            try:
                yield Served(svc, browser, tmp)
            finally:
                browser.close()
        finally:
            svc.stop()


def test_status_page(served: Served) -> None:
    facts = served.open("")
    assert facts["errors"] == []
    assert facts["title"].startswith("Status")
    text = facts["text"]
    assert NAME in text  # the service name, HTML and all, as text
    assert facts["active"] == 0 and facts["xss"] == 0
    for heading in ("Identity", "Readiness", "Workers", "Tracing", "Profiling"):
        assert heading in text
    assert "ready" in text and "loop" in text  # the readiness verdict and the event-loop monitor worker
    served.shot("status")


def test_routes_page_has_rates_quantiles_and_charts(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        for i in range(30):
            assert client.get(f"/items/{i}").status_code == 200
    facts = served.open("routes")
    assert facts["errors"] == []
    row = next(line for line in facts["text"].splitlines() if "/items/{item_id}" in line)
    cells = row.split("\t")
    assert cells[0] == "GET" and int(cells[2]) >= 30
    assert all(cell.endswith(("µs", "ms", "s")) for cell in cells[5:8]), cells  # p50, p90, p99
    assert facts["charts"] > 0
    served.shot("routes")


def test_slow_request_shows_with_its_trace_and_profile(served: Served) -> None:
    response = httpx.get(f"{served.base}/slow/probe?seconds=0.25", headers={"X-Request-ID": "ui-slow-1"}, timeout=10)
    assert response.status_code == 200
    line = served.svc.wait_for("slow request", request_id="ui-slow-1")
    trace_id, span_id = line["trace_id"], line["span_id"]
    facts = served.open("requests")
    assert facts["errors"] == []
    row = next(line for line in facts["text"].splitlines() if "ui-slow-1" in line)
    assert "/slow/{name}" in row and "/slow/probe" in row and trace_id in row and "200" in row
    links = dict((text, href) for text, href in facts["links"])
    assert links[trace_id] == f"/-/ui/requests?trace_id={trace_id}"
    profile = next(href for text, href in facts["links"] if text == "profile" and span_id in href)
    assert profile == f"/-/debug/pprof/profile?span_id={span_id}"
    served.shot("requests")

    # the trace link filters to that trace; the profile link answers that span's samples
    facts = served.open(f"requests?trace_id={trace_id}")
    assert facts["errors"] == [] and "ui-slow-1" in facts["text"]
    pprof = httpx.get(served.base + profile, timeout=30)
    assert pprof.status_code == 200, pprof.text
    samples = decode(pprof.content).samples
    assert samples and all(s.labels["span_id"] == span_id for s in samples)


def test_failed_request_shows(served: Served) -> None:
    response = httpx.get(f"{served.base}/fail", headers={"X-Request-ID": "ui-fail-1"}, timeout=10)
    assert response.status_code == 500
    facts = served.open("requests")
    assert facts["errors"] == []
    failed = facts["text"].split("Failed (", 1)[1]
    row = next(line for line in failed.splitlines() if "ui-fail-1" in line)
    assert "500" in row and "RuntimeError" in row and "/fail" in row


def test_html_in_a_path_or_name_renders_inert(served: Served) -> None:
    response = httpx.get(served.base + PROBE, params={"seconds": "0.25"}, timeout=10)
    assert response.status_code == 200
    for page in ("", "routes", "tracez", "requests"):
        facts = served.open(page)
        assert facts["errors"] == [], page
        assert facts["active"] == 0 and facts["xss"] == 0, page
    assert PROBE in facts["text"]  # shown as text on the recent-requests page
    assert "/slow/{name}" in facts["text"]


def test_tracez_page_shows_the_servers_spans_and_a_trace_tree(served: Served) -> None:
    response = httpx.get(f"{served.base}/items/7", headers={"X-Request-ID": "ui-tracez-1"}, timeout=10)
    assert response.status_code == 200
    trace_id = served.svc.wait_for("request", request_id="ui-tracez-1")["trace_id"]
    facts = served.open("tracez")
    assert facts["errors"] == [] and facts["active"] == 0 and facts["xss"] == 0
    assert "GET /items/{item_id}" in facts["text"]
    served.shot("tracez")
    tree = served.open(f"tracez?trace_id={trace_id}")
    assert tree["errors"] == [] and "GET /items/{item_id}" in tree["text"] and "url.path" in tree["text"]


def test_bad_input_is_a_clear_error(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        bad = client.get("/-/ui/routes", params={"refresh": "0"})
        assert bad.status_code == 400 and "refresh" in bad.json()["error"]
        assert client.get("/-/ui/nope").status_code == 404
        assert client.post("/-/ui/").status_code == 405
        page = client.get("/-/ui/", params={"refresh": "5"})
        assert '<meta http-equiv="refresh" content="5">' in page.text
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
        assert client.get("/-/ui/static/ui.css").headers["content-type"].startswith("text/css")
