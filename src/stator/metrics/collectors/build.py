"""``stator_build_info{version, git_commit, python_version}``: what is running, as one constant series.

An OpenMetrics ``info`` family (``stator_build_info ... 1``; a gauge in the Prometheus text format), the
``*_build_info`` convention of the Go ecosystem: join it onto any series with
``* on(instance) group_left(version) stator_build_info``.

The git commit, in order: the explicit setting (``STATOR_METRICS_GIT_COMMIT``, for images built by CI), pip's
record of a VCS install (``direct_url.json``), the git checkout the package is imported from (``.git/HEAD``,
read directly — no ``git`` subprocess in a service), else ``unknown``. It is looked up on the first scrape, in
the collector's thread, not at startup.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from pathlib import Path

from prometheus_client.metrics_core import InfoMetricFamily, Metric

import stator

UNKNOWN = "unknown"
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def _from_direct_url(distribution: str) -> str | None:
    try:
        text = importlib.metadata.distribution(distribution).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    commit = data.get("vcs_info", {}).get("commit_id") if isinstance(data, dict) else None
    return commit if isinstance(commit, str) and _SHA.match(commit) else None


def _git_dir(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = candidate.read_text().strip()
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (directory / target).resolve()
    return None


def _from_checkout(start: Path) -> str | None:
    git = _git_dir(start)
    if git is None:
        return None
    head = (git / "HEAD").read_text().strip()
    if _SHA.match(head):  # detached HEAD
        return head
    if not head.startswith("ref:"):
        return None
    ref = head.removeprefix("ref:").strip()
    common = git
    commondir = git / "commondir"  # worktrees keep refs in the main repository
    if commondir.is_file():
        common = (git / commondir.read_text().strip()).resolve()
    for base in (git, common):
        loose = base / ref
        if loose.is_file():
            value = loose.read_text().strip()
            return value if _SHA.match(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _SHA.match(parts[0]):
                return parts[0]
    return None


def detect_git_commit(explicit: str = "", distribution: str = "stator", source: Path | None = None) -> str:
    if explicit:
        return explicit
    try:
        found = _from_direct_url(distribution) or _from_checkout(source or Path(stator.__file__).resolve().parent)
    except OSError:
        found = None
    return found or UNKNOWN


class BuildInfoCollector:
    def __init__(self, version: str, git_commit: str = "") -> None:
        self.version = version
        self._explicit = git_commit
        self._family: InfoMetricFamily | None = None

    def collect(self) -> list[Metric]:
        if self._family is None:
            family = InfoMetricFamily("stator_build", "Version, git commit and Python version of the running build.")
            family.add_metric(
                [],
                {
                    "version": self.version,
                    "git_commit": detect_git_commit(self._explicit),
                    "python_version": platform.python_version(),
                },
            )
            self._family = family
        return [self._family]
