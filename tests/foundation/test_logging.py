"""Structured logging: JSON lines, field order, context, redaction, truncation, errors, library logs."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import warnings
from typing import Any

import httpx
import orjson
import pytest

from stator.logs import Logger, MemorySink, bind, log_context, reset, stdlib


def _logger(**kw: Any) -> tuple[Logger, MemorySink]:
    sink = MemorySink()
    return Logger(app_id="app", run_id="Run1234", sink=sink, **kw), sink


def _lines(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.lines]


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_line_layout_and_order() -> None:
    log, sink = _logger()
    with log_context(worker_id="w1", request_id="r1"):
        log.info("hello", b=2, a=1)
    assert len(sink.lines) == 1
    assert sink.lines[0].endswith(b"\n")
    line = _lines(sink)[0]
    assert list(line) == ["ts", "level", "msg", "app_id", "run_id", "worker_id", "request_id", "b", "a"]
    assert TS.match(line["ts"])
    assert line["level"] == "info"
    assert line["msg"] == "hello"


def test_call_cannot_overwrite_identity_or_context() -> None:
    log, sink = _logger()
    with log_context(request_id="real"):
        log.info("x", ts="fake", run_id="fake", request_id="fake")
    line = _lines(sink)[0]
    assert line["run_id"] == "Run1234"
    assert line["request_id"] == "real"
    assert line["ts"] != "fake"


def test_level_filtering() -> None:
    log, sink = _logger(level="warning")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["level"] for line in _lines(sink)] == ["warning", "error"]


def test_context_is_per_task_and_reaches_threads() -> None:
    log, sink = _logger()

    async def request(rid: str) -> None:
        token = bind(request_id=rid)
        await asyncio.sleep(0.01)
        await asyncio.to_thread(log.info, "from thread")
        log.info("from task")
        reset(token)

    async def main() -> None:
        await asyncio.gather(request("a"), request("b"))

    asyncio.run(main())
    lines = _lines(sink)
    assert len(lines) == 4
    assert sorted(line["request_id"] for line in lines) == ["a", "a", "b", "b"]


def test_bound_logger_fields() -> None:
    log, sink = _logger()
    log.bind(component="roster").info("x")
    log.info("y")
    lines = _lines(sink)
    assert lines[0]["component"] == "roster"
    assert "component" not in lines[1]


@pytest.mark.parametrize("key", ["authorization", "Authorization", "x_api_key", "db_password", "token", "SECRET"])
def test_sensitive_keys_are_redacted(key: str) -> None:
    log, sink = _logger()
    log.info("x", **{key: "s3cr3t"})
    assert b"s3cr3t" not in sink.lines[0]
    assert _lines(sink)[0][key] == "--redacted--"


def test_redaction_applies_to_context_too() -> None:
    log, sink = _logger()
    with log_context(auth_token="abc"):
        log.info("x")
    assert b"abc" not in sink.lines[0]


def test_long_strings_are_truncated_with_marker() -> None:
    log, sink = _logger(maxlen=40)
    log.info("x", body="y" * 100, short="ok")
    line = _lines(sink)[0]
    assert line["body"].endswith("--truncated--")
    assert len(line["body"]) == 40
    assert line["short"] == "ok"


def test_truncation_off() -> None:
    log, sink = _logger(maxlen=0)
    log.info("x", body="y" * 5000)
    assert len(_lines(sink)[0]["body"]) == 5000


def test_errors_carry_type_message_and_stack() -> None:
    log, sink = _logger(maxlen=50)
    try:
        raise ValueError("bad thing happened")
    except ValueError:
        log.exception("failed")
    log.error("explicit", exc=KeyError("k"))
    first, second = _lines(sink)
    assert first["error"] == "bad thing happened"
    assert first["error_type"] == "ValueError"
    assert "Traceback" in first["stack"] and "bad thing happened" in first["stack"]
    assert not first["stack"].endswith("--truncated--")  # stacks are never cut
    assert second["error_type"] == "KeyError"


def test_unencodable_values_do_not_break_logging() -> None:
    log, sink = _logger()

    class Weird:
        def __str__(self) -> str:
            return "weird!"

    log.info("x", obj=Weird(), s={1}, b=b"bytes", n=float("nan"))
    line = _lines(sink)[0]
    assert line["obj"] == "weird!"
    assert line["s"] == [1]


def test_logfmt_and_console_formats() -> None:
    log, sink = _logger(fmt="logfmt")
    log.info("two words", path="/a b", n=3)
    text = sink.lines[0].decode()
    assert 'msg="two words"' in text and 'path="/a b"' in text and "n=3" in text and "app_id=app" in text
    log, sink = _logger(fmt="console")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", k="v")
    text = sink.text()
    assert "ERROR" in text and "failed" in text and "k=v" in text and "Traceback" in text


def test_library_logs_come_out_in_our_format() -> None:
    log, sink = _logger(level="debug")
    uninstall = stdlib.install(log, "debug")
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("some.lib").warning("careful", extra={"detail": "x"})
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old api", DeprecationWarning, stacklevel=1)
        try:
            raise OSError("disk")
        except OSError:
            logging.getLogger("lib").exception("lib failed")
    finally:
        uninstall()
    lines = _lines(sink)
    by_msg = {line["msg"]: line for line in lines}
    assert by_msg["Started server process [42]"]["logger"] == "uvicorn.error"
    assert by_msg["careful"]["level"] == "warning"
    assert by_msg["careful"]["detail"] == "x"
    assert any("old api" in line["msg"] for line in lines)
    assert by_msg["lib failed"]["error_type"] == "OSError"
    assert all(line["app_id"] == "app" for line in lines)


async def test_httpx_log_line_through_bridge() -> None:
    """A real httpx request's debug log is rendered by our pipeline."""
    log, sink = _logger(level="debug")
    uninstall = stdlib.install(log, "debug")
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    try:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            await client.get("http://test/x")
    finally:
        uninstall()
    lines = _lines(sink)
    assert any(line.get("logger") == "httpx" and "HTTP Request" in line["msg"] for line in lines)


def test_bridge_routes_to_the_logger_of_the_current_context() -> None:
    """Two services in one process: library logs go to the service whose context emitted them."""
    log_a, sink_a = _logger()
    log_b, sink_b = _logger()
    uninstall = stdlib.install(log_a)
    try:

        def in_b() -> None:
            token = stdlib.current_logger.set(log_b)
            logging.getLogger("lib").warning("from b")
            stdlib.current_logger.reset(token)

        thread = threading.Thread(target=in_b)
        thread.start()
        thread.join()
        logging.getLogger("lib").warning("from a")
    finally:
        uninstall()
    assert [line["msg"] for line in _lines(sink_a)] == ["from a"]
    assert [line["msg"] for line in _lines(sink_b)] == ["from b"]


def test_service_stdout_lines_all_parse(spawn: Any) -> None:
    import signal

    svc = spawn(STATOR_LOG_LEVEL="debug")
    base = svc.base_url
    httpx.get(f"{base}/hello")
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    assert svc.raw
    for raw in svc.raw:
        line = orjson.loads(raw)
        assert {"ts", "level", "msg", "app_id", "run_id"} <= set(line)
    assert any(line.get("logger", "").startswith("uvicorn") for line in svc.lines)
