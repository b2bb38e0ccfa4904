"""Defect 4 of issue 13: credentials in URL settings (``http://admin:pw@host``) are secrets.

They must never be shown — ``stator run -c``, the start-up line, ``/config``, ``/monitor``, the registry and
discovery warnings, the HTTP client's debug lines, httpx's own log line, error messages — and must still be used
when connecting (as an ``Authorization: Basic`` header, never in the URL).
"""

from __future__ import annotations

import base64
import copy
import http.server
import logging
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel

from stator.client import HTTPClient, UnexpectedStatus, consul_client, etcd_client, expect_2xx
from stator.config import ConfigError, Settings, load_settings, redacted_dump
from stator.config.env import describe_settings
from stator.config.types import SecretURL, redact_url
from stator.logs import Logger, MemorySink
from tests.conftest import ROOT, service_env
from tests.processes import free_port

SECRET = "s3cr3t-Pa55"  # distinctive: any occurrence anywhere is a leak
TOKEN = "tok-9f8e7d6c"


# -- the type ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("http://127.0.0.1:8500", "http://127.0.0.1:8500"),
        ("http://admin:pw@host:8500/x?a=1", "http://admin:--redacted--@host:8500/x?a=1"),
        ("https://TOKEN@host", "https://--redacted--@host"),  # a lone userinfo is usually a token
        ("http://:pw@host", "http://--redacted--@host"),
        ("http://u:p@ss@host/", "http://u:--redacted--@host/"),  # an unencoded @ in the password
        ("http://u:pa#ss@host/", "http://u:--redacted--@host/"),  # an unencoded # (would be a fragment)
        ("http://host/v1?token=abc&x=1", "http://host/v1?token=--redacted--&x=1"),
        ("http://host/v1?X-Api-Key=abc#f", "http://host/v1?X-Api-Key=--redacted--#f"),
        ("host:8500", "host:8500"),
        ("", ""),
        ("not a url @ all", "not a url @ all"),
    ],
)
def test_redact_url(raw: str, shown: str) -> None:
    assert redact_url(raw) == shown
    assert str(SecretURL(raw)) == shown


def test_secret_url_is_its_redacted_text_everywhere_and_keeps_the_real_one() -> None:
    url = SecretURL(f"http://ad%40min:{SECRET}@127.0.0.1:8500/base")
    shown = "http://ad%40min:--redacted--@127.0.0.1:8500/base"
    for text in (str(url), f"{url}", f"{url!r}", url.upper().lower(), orjson.dumps(url).decode(), str([url])):
        assert SECRET not in text and shown in text
    assert url.get_secret_value() == f"http://ad%40min:{SECRET}@127.0.0.1:8500/base"
    assert url.bare == "http://127.0.0.1:8500/base"
    assert url.userinfo == ("ad@min", SECRET)
    assert url.auth_headers() == {"Authorization": "Basic " + base64.b64encode(f"ad@min:{SECRET}".encode()).decode()}
    assert (url.scheme, url.host, url.path) == ("http", "127.0.0.1:8500", "/base")
    # copies keep the secret; equality is on the real URL
    for clone in (pickle.loads(pickle.dumps(url)), copy.deepcopy(url), SecretURL(url)):
        assert clone.get_secret_value() == url.get_secret_value() and clone == url
    assert SecretURL("http://a:1@h") != SecretURL("http://a:2@h")
    assert SecretURL("http://h:1") == "http://h:1"  # without credentials it is the plain URL
    assert SecretURL("").auth_headers() == {} and not SecretURL("")


def test_settings_dump_and_repr_never_show_the_password() -> None:
    settings = load_settings(
        {
            "STATOR_CONSUL_ADDR": f"admin:{SECRET}@127.0.0.1:8500",  # a bare host:port gets http://
            "STATOR_ETCD_ADDR": f"https://{TOKEN}@etcd:2379",
            "STATOR_OTLP_ENDPOINT": f"http://otel:{SECRET}@collector:4318",
        }
    )
    assert settings.consul.addr.get_secret_value() == f"http://admin:{SECRET}@127.0.0.1:8500"
    assert settings.otlp.endpoint.get_secret_value() == f"http://otel:{SECRET}@collector:4318/v1/traces"
    dump = redacted_dump(settings)
    assert dump["consul"]["addr"] == "http://admin:--redacted--@127.0.0.1:8500"
    assert dump["etcd"]["addr"] == "https://--redacted--@etcd:2379"
    assert dump["otlp"]["endpoint"] == "http://otel:--redacted--@collector:4318/v1/traces"
    for text in (orjson.dumps(dump).decode(), repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text and TOKEN not in text
    # a python-mode dump re-validates to the same secret (a SecretURL passes through as is)
    assert Settings.model_validate(settings.model_dump()).consul.addr.get_secret_value() == (
        settings.consul.addr.get_secret_value()
    )


# Address settings that are not URLs with userinfo, each with the reason (a conscious choice, not an oversight).
NOT_URLS = {"STATOR_STATSD_ADDR": "host:port (UDP) or unix:///path: nothing to authenticate with"}


def test_every_url_setting_is_typed_url() -> None:
    """A URL setting added later without the type would print its password: this catches it."""
    checked = 0
    for var in describe_settings():
        looks_like_url = var.name.endswith(("_ADDR", "_URL", "_ENDPOINT", "_URI")) or "URL" in var.description
        if looks_like_url and var.name not in NOT_URLS:
            assert var.type == "url", f"{var.name} is a URL setting typed {var.type!r}: use config.types.URL"
            checked += 1
    assert checked >= 3  # consul, etcd, otlp at least


@pytest.mark.parametrize(
    "env",
    [
        {"STATOR_OTLP_ENDPOINT": f"ftp://u:{SECRET}@collector:4318"},
        {"STATOR_OTLP_ENDPOINT": f"http://u:{SECRET}@"},
        {"STATOR_CONSUL_ADDR": f"http://u:{SECRET}@h:1", "STATOR_CONSUL_TIMEOUT": "-1s"},
    ],
)
def test_config_errors_never_show_the_password(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert SECRET not in str(info.value)
    if "STATOR_OTLP_ENDPOINT" in env:
        assert "STATOR_OTLP_ENDPOINT='" in str(info.value) and "--redacted--" in str(info.value)


def test_cli_dump_and_config_error_never_show_the_password() -> None:
    env = service_env(
        STATOR_CONSUL_ADDR=f"http://admin:{SECRET}@127.0.0.1:8500", STATOR_OTLP_ENDPOINT=f"http://u:{SECRET}@h:4318"
    )
    out = subprocess.run(
        [sys.executable, "-m", "stator", "run", "-c"], env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert SECRET.encode() not in out.stdout + out.stderr
    dumped = orjson.loads(out.stdout)
    assert dumped["consul"]["addr"] == "http://admin:--redacted--@127.0.0.1:8500"
    env["STATOR_OTLP_ENDPOINT"] = f"gopher://u:{SECRET}@h:4318"
    bad = subprocess.run(
        [sys.executable, "-m", "stator", "run"], env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert bad.returncode == 2
    assert b"STATOR_OTLP_ENDPOINT" in bad.stderr and SECRET.encode() not in bad.stdout + bad.stderr


# -- the HTTP client: credentials travel as a header, never in a URL ------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        status = 500 if self.path.startswith("/fail") else 200
        body = f'{{"path": "{self.path}"}}'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", handler.seen
    server.shutdown()
    server.server_close()
    thread.join(5)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_client_sends_url_credentials_as_basic_auth_and_logs_none(
    upstream: tuple[str, list[tuple[str, str | None]]], caplog: pytest.LogCaptureFixture
) -> None:
    hostport, seen = upstream
    sink = MemorySink()
    logger = Logger(app_id="t", run_id="r", sink=sink, level="debug")
    caplog.set_level(logging.DEBUG, logger="httpx")  # httpx's own "HTTP Request: GET <url>" line
    settings = load_settings({"STATOR_CONSUL_ADDR": f"http://admin:{SECRET}@{hostport}"})
    async with consul_client(settings.consul, logger) as client:
        assert (await client.get("/v1/status/leader")).status_code == 200
        with pytest.raises(UnexpectedStatus) as failed:
            expect_2xx(await client.get("/fail"))
    async with HTTPClient(f"http://plain:{SECRET}@{hostport}", logger=logger) as client:  # a plain str too
        await client.get("/plain")
        # an absolute URL with its own credentials, on a client without a base URL
        await client.get(f"http://other:{TOKEN}@{hostport}/absolute")
    assert seen == [
        ("/v1/status/leader", _basic("admin", SECRET)),
        ("/fail", _basic("admin", SECRET)),
        ("/plain", _basic("plain", SECRET)),
        ("/absolute", _basic("other", TOKEN)),
    ]
    assert failed.value.url == f"http://{hostport}/fail" and SECRET not in str(failed.value)
    logged = b"".join(sink.lines).decode() + "\n".join(r.getMessage() for r in caplog.records)
    assert f"http://{hostport}/v1/status/leader" in logged  # the lines are there...
    assert SECRET not in logged and TOKEN not in logged  # ...without the credentials


async def test_explicit_authorization_header_wins_over_url_credentials(
    upstream: tuple[str, list[tuple[str, str | None]]],
) -> None:
    hostport, seen = upstream
    async with HTTPClient(f"http://u:{SECRET}@{hostport}", headers={"Authorization": "Bearer x"}) as client:
        await client.get("/a")
    assert seen == [("/a", "Bearer x")]


async def test_connection_errors_and_debug_lines_never_show_the_password() -> None:
    port = free_port()  # nothing listens there
    sink = MemorySink()
    logger = Logger(app_id="t", run_id="r", sink=sink, level="debug")
    settings = load_settings({"STATOR_ETCD_ADDR": f"http://root:{SECRET}@127.0.0.1:{port}"})
    async with etcd_client(settings.etcd, logger, timeout=2) as client:
        assert SECRET not in str(client.base_url)
        with pytest.raises(httpx.ConnectError) as info:
            await client.post("/v3/kv/range", json={})
    assert SECRET not in f"{info.value} {info.value!r} {info.value.request.url}"
    lines = [orjson.loads(line) for line in sink.lines]
    assert [line["msg"] for line in lines] == ["sending request", "request failed"]
    assert lines[1]["url"] == f"http://127.0.0.1:{port}/v3/kv/range"
    assert SECRET not in b"".join(sink.lines).decode()


# -- the service: every output path ----------------------------------------------------------------------------


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    elif isinstance(value, str):
        yield value


def _ops_get(base: str, name: str) -> httpx.Response:
    """``/-/<name>``, or ``/<name>`` where the ops endpoints have no ``/-/`` spelling."""
    response = httpx.get(f"{base}/-/{name}", timeout=5)
    return response if response.status_code != 404 else httpx.get(f"{base}/{name}", timeout=5)


def test_service_never_shows_url_credentials(spawn: Any) -> None:
    closed = free_port()  # registry, etcd and collector all unreachable: every failure path is exercised
    svc = spawn(
        STATOR_LOG_LEVEL="debug",
        STATOR_REGISTRY="consul",
        STATOR_CONSUL_ADDR=f"http://admin:{SECRET}@127.0.0.1:{closed}",
        STATOR_ROSTER_RETRY_INITIAL="100ms",
        STATOR_DISCOVER_SOURCE="etcd",
        STATOR_DISCOVER_KEY="/stator/doc",
        STATOR_DISCOVER_RETRY_INITIAL="100ms",
        STATOR_ETCD_ADDR=f"http://{TOKEN}@127.0.0.1:{closed}",
        STATOR_OTLP_ENDPOINT=f"http://otel:{SECRET}@127.0.0.1:{closed}",
        STATOR_OTLP_BATCH_DELAY="100ms",
    )
    started = svc.wait_for("starting up")
    assert started["config"]["consul"]["addr"] == f"http://admin:--redacted--@127.0.0.1:{closed}"
    assert started["config"]["etcd"]["addr"] == f"http://--redacted--@127.0.0.1:{closed}"
    assert started["config"]["otlp"]["endpoint"] == f"http://otel:--redacted--@127.0.0.1:{closed}/v1/traces"
    unreachable = svc.wait_for("registry unreachable", timeout=30)
    assert unreachable["endpoint"] == f"http://127.0.0.1:{closed}" and unreachable["error"]
    assert svc.wait_for("discovery poll failed", timeout=30)["error"]
    svc.wait_for("request failed", timeout=30)  # the client's debug line for a refused connection
    base = svc.base_url
    for path in ("/hello", "/hello"):  # traced requests: the exporter tries (and fails) to reach the collector
        assert httpx.get(base + path, timeout=5).status_code == 200
    config = _ops_get(base, "config")
    monitor = _ops_get(base, "monitor")
    assert config.status_code == 200 and monitor.status_code == 200
    dumped = config.json()
    dumped = dumped.get("config", dumped)  # the settings, bare or under "config"
    assert dumped["consul"]["addr"] == f"http://admin:--redacted--@127.0.0.1:{closed}"
    shown = monitor.json()
    assert shown["tracing"]["endpoint"] == f"http://otel:--redacted--@127.0.0.1:{closed}/v1/traces"
    assert shown["registration"]["endpoint"] == f"http://127.0.0.1:{closed}"
    svc.signal()
    svc.wait(30)
    everything = b"".join(svc.raw) + svc.stderr + config.content + monitor.content
    assert b"request failed" in everything and b"sending request" in everything  # debug lines were written
    assert SECRET.encode() not in everything and TOKEN.encode() not in everything
    assert base64.b64encode(f"admin:{SECRET}".encode()) not in everything  # nor the header's value


def test_redacted_dump_is_generic_over_models() -> None:
    class Group(BaseModel):
        url: SecretURL = SecretURL("")

    assert redacted_dump(Group(url=SecretURL(f"http://u:{SECRET}@h"))) == {"url": "http://u:--redacted--@h"}
