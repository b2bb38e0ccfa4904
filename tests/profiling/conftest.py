"""Fixtures: a served profiling app per event-loop kind, and running ``go tool pprof`` on what it returns."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.externals import require_tool
from tests.profiling.app import Server, serve


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(request.param) as srv:
        yield srv


class Pprof:
    """``go tool pprof`` run on a file or URL, output returned (it fails the test when pprof cannot read it)."""

    def __init__(self, go: str, tmp: Path) -> None:
        self.go = go
        self.tmp = tmp
        self.count = 0

    def save(self, data: bytes, name: str = "profile") -> Path:
        self.count += 1
        path = self.tmp / f"{name}-{self.count}.pb.gz"
        path.write_bytes(data)
        return path

    def __call__(self, *args: str | Path, timeout: float = 60) -> str:
        env = {**os.environ, "PPROF_TMPDIR": str(self.tmp), "HOME": str(self.tmp), "GOFLAGS": "-mod=mod"}
        proc = subprocess.run(
            [self.go, "tool", "pprof", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
        )
        assert proc.returncode == 0, f"go tool pprof {args} failed: {proc.stderr}"
        return proc.stdout


@pytest.fixture
def pprof(tmp_path: Path) -> Pprof:
    return Pprof(require_tool("go"), tmp_path)
