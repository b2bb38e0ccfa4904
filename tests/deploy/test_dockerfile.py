"""The Dockerfile, checked without Docker: what it copies exists and is not ignored, it runs as a numeric non-root
user, and its HEALTHCHECK command - run for real against a live `stator run` - tells ready from not ready."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from stator.config.settings import HTTPSettings
from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_copied_sources_exist_and_are_not_ignored() -> None:
    copies = [args for op, args in _instructions() if op == "COPY" and not args.startswith("--from")]
    sources = [src for args in copies for src in args.split()[:-1]]
    assert sources == ["pyproject.toml", "constraints.txt", "README.md", "src"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    assert _ignored("tests") and _ignored(".venv") and _ignored(".git")


def test_constraints_are_plain_pins() -> None:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^\s;]+(\s*;.*)?", line.strip()), line


def test_runs_as_numeric_non_root_user_with_stator_defaults() -> None:
    ops = dict(_instructions()[::-1])  # last occurrence wins, as in the final stage
    user, group = ops["USER"].split(":")
    assert int(user) >= 1000 and int(group) >= 1000
    assert ops["ENTRYPOINT"] == '["stator"]' and ops["CMD"] == '["run"]'
    assert ops["EXPOSE"] == str(HTTPSettings().port)
    assert ops["STOPSIGNAL"] == "SIGTERM"


def _healthcheck() -> list[str]:
    args = dict(_instructions())["HEALTHCHECK"]
    assert "--interval=" in args and "--timeout=" in args and "--start-period=" in args
    command: list[str] = json.loads(args.split("CMD", 1)[1])
    assert command[0] == "python" and "/-/ready" in command[-1]
    return command


def test_healthcheck_passes_when_ready_and_fails_otherwise(spawn: Callable[..., Any]) -> None:
    command = [sys.executable, *_healthcheck()[1:]]
    proc = spawn()
    port = proc.base_url.rsplit(":", 1)[1]
    ready = subprocess.run(command, env={"STATOR_HTTP_PORT": port}, capture_output=True, timeout=10, check=False)
    assert ready.returncode == 0, ready.stderr
    proc.stop()
    gone = subprocess.run(command, env={"STATOR_HTTP_PORT": port}, capture_output=True, timeout=10, check=False)
    assert gone.returncode != 0
