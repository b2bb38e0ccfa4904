"""Shared paths and helpers of the deploy/ tests: repository files, promtool, YAML."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.externals import require_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
TESTS_DIR = DEPLOY / "prometheus" / "tests"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def promtool(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    binary = require_tool("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
