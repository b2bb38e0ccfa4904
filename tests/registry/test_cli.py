"""The command line and --data-dir: a real subprocess, signals, restarts."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from stator.registry.cli import main

from .conftest import RegistryThread

CLI = [sys.executable, "-m", "stator.registry.cli", "--listen", "127.0.0.1:0"]


def test_data_dir_survives_restart(registry_factory: Any, tmp_path: Path) -> None:
    first: RegistryThread = registry_factory(data_dir=tmp_path)
    with httpx.Client(base_url=first.url, timeout=10) as c:
        body = {"Name": "web", "ID": "web-1", "Port": 80, "Tags": ["metrics"], "Check": {"CheckID": "t", "TTL": "1m"}}
        assert c.put("/v1/agent/service/register", json=body).status_code == 200
        c.put("/v1/agent/check/pass/t", params={"note": "ok"})
        c.put("/v1/kv/cfg/a?flags=7", content=b"value")
        kv_before = c.get("/v1/kv/cfg/a").json()[0]
        index_before = first.state.index
    first.stop()
    assert (tmp_path / "registry-snapshot.json").exists()
    assert not list(tmp_path.glob("*.tmp"))

    second: RegistryThread = registry_factory(data_dir=tmp_path)
    with httpx.Client(base_url=second.url, timeout=10) as c:
        assert c.get("/v1/agent/services").json()["web-1"]["Tags"] == ["metrics"]
        check = c.get("/v1/agent/checks").json()["t"]
        assert (check["Status"], check["Output"]) == ("passing", "ok")
        assert c.get("/v1/kv/cfg/a").json()[0] == kv_before
        # Indexes never go backwards across a restart (clients would reset and re-read everything).
        assert second.state.index >= index_before
        assert c.get("/v1/health/service/web?passing").json()[0]["Service"]["ID"] == "web-1"


def test_corrupt_snapshot_stops_start(tmp_path: Path) -> None:
    (tmp_path / "registry-snapshot.json").write_text("{not json")
    reg = RegistryThread(data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="failed to start"):
        reg.start()
    reg.sock.close()
    assert "cannot restore" in reg.sink.text()


def test_cli_serves_and_exits_zero_on_sigterm(spawn: Any, tmp_path: Path) -> None:
    proc = spawn([*CLI, "--data-dir", str(tmp_path)])
    url = proc.base_url
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/v1/agent/self").json()["Config"]["Datacenter"] == "dc1"
        assert c.put("/v1/agent/service/register", json={"Name": "cli-svc"}).status_code == 200
        assert c.put("/v1/kv/k", content=b"v").json() is True
    listening = proc.wait_for("listening")
    assert listening["app_id"] == "stator-registry" and len(listening["run_id"]) == 7
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert "registry stopped" in proc.messages()

    again = spawn([*CLI, "--data-dir", str(tmp_path)])
    with httpx.Client(base_url=again.base_url, timeout=10) as c:
        assert "cli-svc" in c.get("/v1/agent/services").json()
        assert c.get("/v1/kv/k?raw").content == b"v"
    again.signal(signal.SIGINT)
    assert again.wait() == 0


def test_cli_usage_errors() -> None:
    assert main(["--listen", "nonsense"]) == 2
    assert main(["--bogus"]) == 2
    assert main(["--help"]) == 0
