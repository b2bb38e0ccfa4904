"""Finding the external programs some tests drive for real (prometheus, promtool, etcd, go, ...).

A missing tool skips the test, except under ``STATOR_REQUIRE_EXTERNAL=1`` (CI), where it fails: a CI run must
not pass by skipping the integration tests it exists to run.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH; otherwise skip the test (or fail it under STATOR_REQUIRE_EXTERNAL=1)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found on PATH (scripts/install-system-deps.sh installs it)"
    if os.environ.get("STATOR_REQUIRE_EXTERNAL") == "1":
        pytest.fail(f"{message}; STATOR_REQUIRE_EXTERNAL=1 makes this a failure")
    pytest.skip(message)
