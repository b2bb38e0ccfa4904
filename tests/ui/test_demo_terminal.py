"""The demo's terminal (``stator demo --output pretty``): one prefixed line per event, access lines summarised,
routine and logfmt-info lines kept out, colour only when asked, partial lines waited for, and an end-to-end run
whose every process's full JSON stays in the printed log directory."""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stator.demo_terminal import Console
from tests.conftest import ServiceProcess, service_env


def line(msg: str, level: str = "info", **fields: Any) -> bytes:
    record = {"ts": "2026-12-02T05:25:27.418591Z", "level": level, "msg": msg, "app_id": "x", "run_id": "r", **fields}
    return orjson.dumps(record) + b"\n"


def test_one_line_per_event_with_access_lines_summarised(tmp_path: Path) -> None:
    out: list[str] = []
    console = Console(out.append, colour=False)
    log = tmp_path / "instance-1.log"
    console.follow("instance-1", log)
    console.follow("prometheus", tmp_path / "prometheus.log", quiet_info=True)
    console.poll()  # files not there yet: nothing, no error
    with log.open("ab") as f:
        f.write(line("worker starting", name="metrics"))
        f.write(line("registered", id="stator-1", port=8087))
        for status in (200, 200, 503):
            f.write(line("request", status=status, route="/sum"))
        f.write(line("slow request", level="warning", route="/sum", duration_ms=1203.4, path="/a b"))
        f.write(b'{"ts":"2026-12-02T05:25:28Z","level":"error","msg":"half')  # no newline yet
    (tmp_path / "prometheus.log").write_text(
        'ts=2026-12-02T05:25:29Z caller=main.go:1 level=info msg="Server is ready"\n'
        'ts=2026-12-02T05:25:30Z caller=x.go:2 level=error msg="scrape failed" target=a\n'
    )
    console.poll()
    assert out == [
        "05:25:27 instance-1 | info  registered  id=stator-1 port=8087",
        '05:25:27 instance-1 | warn  slow request  route=/sum duration_ms=1203.4 path="/a b"',
        "05:25:30 prometheus | error scrape failed  target=a",
    ]
    out.clear()
    with log.open("ab") as f:
        f.write(b' line"}\n')
    console.poll()
    assert out == ["05:25:28 instance-1 | error half line"]
    out.clear()
    console.summarise()
    assert len(out) == 1 and out[0].endswith("instance-1 | info  3 requests: 2xx 2, 5xx 1")
    out.clear()
    console.summarise()
    assert out == []  # nothing new served


def test_colour_only_when_asked_and_no_escapes_from_log_lines(tmp_path: Path) -> None:
    out: list[str] = []
    console = Console(out.append, colour=True)
    log = tmp_path / "a.log"
    console.follow("a", log)
    log.write_bytes(line("boom \x1b[2J", level="error", detail="x" * 500) + b"plain text line\n")
    console.poll()
    assert "\x1b[31m" in out[0] and "\x1b[2J" not in out[0] and "␛[2J" in out[0]
    assert len(out[0]) < 250 and "…" in out[0]
    assert "plain text line" in out[1] and out[1].count("\x1b[") >= 2  # the process name coloured, and reset


def test_lines_fit_the_terminal_and_logfmt_without_msg_is_quiet(tmp_path: Path) -> None:
    out: list[str] = []
    console = Console(out.append, colour=False, columns=80)
    console.follow("instance-1", tmp_path / "i.log")
    console.follow("prometheus", tmp_path / "p.log", quiet_info=True)
    (tmp_path / "i.log").write_bytes(line("registered", id="x" * 70, port=1, more="y" * 40))
    (tmp_path / "p.log").write_text(
        'ts=2026-12-02T05:26:56.399Z caller=main.go:556 level=info build_context="(go=go1.19.8)"\n'
        "ts=2026-12-02T05:26:57Z caller=main.go:9 level=warn component=tsdb\n"
    )
    console.poll()
    assert len(out) == 2 and all(len(x) <= 80 for x in out), out
    assert out[0].endswith("…") and out[1].startswith("05:26:57 prometheus | warn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_pretty_output_end_to_end() -> None:
    args = ["--registry-port", str(_free_port()), "--base-port", "0", "--no-prometheus", "--output", "pretty"]
    args += ["--instances", "2", "--no-traffic"]
    demo = ServiceProcess([sys.executable, "-m", "stator", "demo", *args], service_env())
    logs: Path | None = None
    try:
        deadline = time.monotonic() + 60
        while not any(b"stator demo ready" in raw for raw in demo.raw):
            assert time.monotonic() < deadline and demo.proc.poll() is None, b"".join(demo.raw[-30:]).decode()
            time.sleep(0.1)
        text = b"".join(demo.raw).decode()
        assert "/-/ui/" in text and "pages " in text
        logs = Path(next(w for w in text.split() if w.startswith("/") and "stator-logs-demo-" in w).split("/<")[0])
        demo.signal(signal.SIGTERM)
        assert demo.wait(60) == 0
        text = b"".join(demo.raw).decode()
        lines = text.splitlines()
        assert not any(line.startswith("{") for line in lines)  # no raw JSON on the terminal
        assert any(" registry   | info  service deregistered" in line for line in lines), text
        assert any("instance-1 | info  registered" in line for line in lines), text
        assert not any("worker starting" in line for line in lines)  # routine lines stay in the files
        assert f"the full log of every process is in {logs}" in text
        assert {p.name for p in logs.iterdir()} == {"registry.log", "instance-1.log", "instance-2.log", "front.log"}
        records = [orjson.loads(raw) for raw in (logs / "instance-1.log").read_bytes().splitlines() if raw[:1] == b"{"]
        messages = {r["msg"] for r in records}
        assert {"worker starting", "registered", "deregistered", "stopped"} <= messages
    finally:
        demo.stop()
        if logs is not None:
            shutil.rmtree(logs, ignore_errors=True)
