"""The dev registry's UI (``/ui/``) on a real registry server, over HTTP and in headless Chromium: services and
instance counts match the API, checks show their output, KV view/create/edit/delete go through the API with CAS
(a concurrent change is shown, never overwritten), a cross-site form post is refused, HTML in a service name or
a KV key/value is shown inert, live updates come from the registry's blocking queries, and a large KV tree pages."""

from __future__ import annotations

import html
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stator.registry import ui
from tests.externals import require_tool
from tests.registry.conftest import FAST, RegistryThread
from tests.ui.browser import Browser

XSS_NAME = "web<script>window.__xss=1</script>"


@pytest.fixture
def registry() -> Iterator[RegistryThread]:
    reg = RegistryThread(**FAST).start()
    yield reg
    reg.stop()
    assert not reg.unhandled(), reg.unhandled()


def register(client: httpx.Client, name: str, sid: str, port: int, status: str = "passing") -> None:
    body = {
        "Name": name,
        "ID": sid,
        "Address": "127.0.0.1",
        "Port": port,
        "Tags": ["metrics", "<b>tag</b>"],
        "Meta": {"version": "1.2.3", "note": "<u>v</u>"},
        "Check": {"TTL": "60s", "Status": status, "Name": f"ttl <em>{sid}</em>"},
    }
    assert client.put("/v1/agent/service/register", json=body).status_code == 200


def test_services_pages_match_the_api(registry: RegistryThread) -> None:
    with httpx.Client(base_url=registry.url, timeout=10) as client:
        register(client, "api", "api-1", 8001)
        register(client, "api", "api-2", 8002, status="critical")
        register(client, XSS_NAME, "x-1", 8003)
        page = client.get("/ui/services")
        assert page.status_code == 200 and "<script>window" not in page.text
        instances = len(client.get("/v1/health/service/api").json())
        assert f">api</a></td><td class=num>{instances}</td>" in page.text and instances == 2
        assert "1 passing" in page.text and "1 critical" in page.text
        assert "web&lt;script&gt;window.__xss=1&lt;/script&gt;" in page.text
        detail = client.get("/ui/services/api").text
        assert "api-1" in detail and "api-2" in detail
        for entry in client.get("/v1/health/service/api").json():  # every check of every instance, escaped
            for check in entry["Checks"]:
                assert html.escape(check["Name"]) in detail and html.escape(check["Status"]) in detail
                assert html.escape(check["Output"]) in detail
        assert "&lt;u&gt;v&lt;/u&gt;" in detail and "1.2.3" in detail
        assert client.get("/ui/").headers["location"] == "/ui/services"


def test_kv_edit_is_cas_safe_and_visible_through_the_api(registry: RegistryThread) -> None:
    with httpx.Client(base_url=registry.url, timeout=10) as client:
        assert client.put("/v1/kv/app/config", content=b"v1").json() is True
        index = client.get("/v1/kv/app/config").json()[0]["ModifyIndex"]
        saved = client.post("/ui/kv/app/config", data={"action": "save", "cas": str(index), "value": "v2"})
        assert saved.status_code == 303 and saved.headers["location"] == "/ui/kv/app/config"
        assert client.get("/v1/kv/app/config?raw").content == b"v2"
        # the same (now stale) form again: refused, current value shown, nothing overwritten
        stale = client.post("/ui/kv/app/config", data={"action": "save", "cas": str(index), "value": "mine"})
        assert stale.status_code == 409 and "Not saved" in stale.text and "mine" in stale.text
        assert ">v2</textarea>" in stale.text
        assert client.get("/v1/kv/app/config?raw").content == b"v2"
        # create refuses an existing key; creates a new one
        dup = client.post("/ui/kv/", data={"action": "create", "cas": "0", "key": "app/config", "value": "x"})
        assert dup.status_code == 409
        made = client.post("/ui/kv/", data={"action": "create", "cas": "0", "key": "app/new", "value": "<i>"})
        assert made.status_code == 303 and made.headers["location"] == "/ui/kv/app/new"
        assert client.get("/v1/kv/app/new?raw").content == b"<i>"
        assert "&lt;i&gt;</textarea>" in client.get("/ui/kv/app/new").text
        # a key with HTML in its name (written through /v1/txn: no URL encoding involved) is listed as text
        client.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "app/<b>x", "Value": ""}}])
        folder = client.get("/ui/kv/app/").text
        assert "&lt;b&gt;x" in folder and "<b>x" not in folder
        # delete with a stale index is refused; with the current one it goes
        current = client.get("/v1/kv/app/config").json()[0]["ModifyIndex"]
        assert client.post("/ui/kv/app/config", data={"action": "delete", "cas": str(index)}).status_code == 409
        gone = client.post("/ui/kv/app/config", data={"action": "delete", "cas": str(current)})
        assert gone.status_code == 303 and gone.headers["location"] == "/ui/kv/app/"
        assert client.get("/v1/kv/app/config").status_code == 404
        # bad input: clear errors, nothing written
        assert client.post("/ui/kv/app/x", data={"action": "save", "cas": "nope"}).status_code == 400
        assert client.post("/ui/kv/app/x", data={"action": "zap", "cas": "0"}).status_code == 400
        cross = client.post(
            "/ui/kv/app/x", data={"action": "save", "cas": "0", "value": "evil"}, headers={"Origin": "http://evil.test"}
        )
        assert cross.status_code == 403 and client.get("/v1/kv/app/x").status_code == 404
        form = {"action": "save", "cas": "0", "value": "evil"}
        assert client.post("/ui/kv/app/x", data=form, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.post("/ui/kv/app/x", data=form, headers={"Origin": "null"}).status_code == 403
        assert client.get("/v1/kv/app/x").status_code == 404


def test_large_kv_tree_pages(registry: RegistryThread) -> None:
    txn = [{"KV": {"Verb": "set", "Key": f"big/k{i:05d}", "Value": ""}} for i in range(64)]
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        for start in range(0, 10_000, 64):
            ops = [{"KV": {**op["KV"], "Key": f"big/k{start + i:05d}"}} for i, op in enumerate(txn)]
            assert client.put("/v1/txn", json=ops[: max(0, min(64, 10_000 - start))]).status_code == 200
        first = client.get("/ui/kv/big/")
        assert first.status_code == 200 and "10000 entries" in first.text and "page 1 of 50" in first.text
        assert first.text.count("<tr>") <= ui.KEYS_PER_PAGE + 1 and len(first.content) < 200_000
        last = client.get("/ui/kv/big/", params={"page": "49"}).text
        assert "k09999" in last and "k00000" not in last


def test_registry_ui_in_a_browser(registry: RegistryThread, tmp_path: Path) -> None:
    browser = Browser(require_tool("chromium"), require_tool("chromedriver"), tmp_path / "profile")
    try:
        with httpx.Client(base_url=registry.url, timeout=10) as client:
            register(client, "api", "api-1", 8001)
            register(client, XSS_NAME, "x-1", 8003)
            key = {"Verb": "set", "Key": "app/<img src=x onerror=window.__xss=2>", "Value": "PGltZyBzcmM9eD4="}
            assert client.put("/v1/txn", json=[{"KV": key}]).status_code == 200
            client.put("/v1/kv/app/config", content=b"v1")
            for page, shot in (("services", "services"), ("services/api", "service"), ("kv/app/", "kv")):
                browser.get(f"{registry.url}/ui/{page}")
                facts = browser.script(
                    "return {xss: window.__xss, scripts: document.querySelectorAll('script:not([src]), img').length,"
                    " text: document.body.innerText, live: document.getElementById('live').textContent};"
                )
                assert [e for e in browser.console() if e.get("level") == "SEVERE"] == []
                assert facts["xss"] is None and facts["scripts"] == 0
                _shot(browser, tmp_path, shot)
            assert "<img src=x onerror=window.__xss=2>" in facts["text"]
            # live: the services page reloads by itself when a service registers (blocking query on the API)
            browser.get(f"{registry.url}/ui/services")
            assert browser.script("return document.getElementById('live').textContent;") == "live"
            register(client, "late", "late-1", 8009)
            deadline = time.monotonic() + 10
            while "late" not in browser.script("return document.body.innerText;"):
                assert time.monotonic() < deadline, "the services page did not update"
                time.sleep(0.1)
            # an edit in the browser's form is visible through the HTTP API
            browser.get(f"{registry.url}/ui/kv/app/config")
            browser.script(
                "document.querySelector('textarea').value = 'from the browser';"
                " document.querySelector('button[value=save]').click();"
            )
            deadline = time.monotonic() + 10
            while client.get("/v1/kv/app/config?raw").content != b"from the browser":
                assert time.monotonic() < deadline, "the browser's edit did not reach the API"
                time.sleep(0.1)
            _shot(browser, tmp_path, "kv-key")
            # a change by someone else while the form is open: the page says so and keeps the form as typed
            browser.get(f"{registry.url}/ui/kv/app/config")
            browser.script("document.querySelector('textarea').value = 'half typed';")
            client.put("/v1/kv/app/config", content=b"changed elsewhere")
            deadline = time.monotonic() + 10
            while "reload" not in browser.script("return document.getElementById('live').textContent;"):
                assert time.monotonic() < deadline, "the key page did not notice the change"
                time.sleep(0.1)
            assert browser.script("return document.querySelector('textarea').value;") == "half typed"
    finally:
        browser.close()


def _shot(browser: Browser, tmp: Path, name: str) -> None:
    path = tmp / f"registry-{name}.png"
    browser.screenshot(path)
    extra = os.environ.get("UI_SCREENSHOTS")
    if extra:
        shutil.copyfile(path, Path(extra) / f"ui-registry-{name}.png")
