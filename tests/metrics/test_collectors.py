"""The default collectors: names, types, units and labels, checked on the parsed OpenMetrics exposition."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector as PCProcessCollector

from stator.metrics.collectors import WaveCollector, detect_git_commit
from stator.metrics.collectors.build import UNKNOWN
from tests.metrics.conftest import samples

DEFAULT_COLLECTORS = {"process", "python", "asyncio", "disk", "build", "default_registry"}


def _their_families(collector: Any) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {family.name: family for family in registry.collect()}


def test_process_names_and_types_match_prometheus_client(harness: Any) -> None:
    families = harness().families()
    theirs = _their_families(PCProcessCollector(registry=None))
    assert theirs, "prometheus_client's process collector found nothing: not Linux?"
    for name, family in theirs.items():
        assert families[name].type == family.type, name
    expected = {
        "process_cpu_seconds": ("counter", "seconds"),
        "process_virtual_memory_bytes": ("gauge", "bytes"),
        "process_resident_memory_bytes": ("gauge", "bytes"),
        "process_start_time_seconds": ("gauge", "seconds"),
        "process_open_fds": ("gauge", ""),
        "process_max_fds": ("gauge", ""),
        "process_threads": ("gauge", ""),
    }
    for name, (kind, unit) in expected.items():
        assert (families[name].type, families[name].unit) == (kind, unit), name
        assert [s.labels for s in families[name].samples] == [{}], name
    start = families["process_start_time_seconds"].samples[0].value
    assert time.time() - 7 * 86400 < start <= time.time()
    assert families["process_threads"].samples[0].value >= 1
    assert families["process_open_fds"].samples[0].value >= 3
    assert families["process_resident_memory_bytes"].samples[0].value > 0


def test_text_names_are_prometheus_clients(harness: Any) -> None:
    text = harness().text()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_gc_collections_total"):
        assert f"\n# TYPE {name} " in text


def test_python_gc_counters_info_and_pause_histogram(harness: Any) -> None:
    h = harness()
    before = h.families()["python_gc_pause_seconds"]
    gc.collect()
    families = h.families()
    theirs = _their_families(GCCollector(registry=CollectorRegistry()))
    theirs.update(_their_families(PlatformCollector(registry=None)))
    for name, family in theirs.items():
        assert families[name].type == family.type, name
        assert {tuple(sorted(s.labels)) for s in families[name].samples} == {
            tuple(sorted(s.labels)) for s in family.samples
        }, name
    for name in ("python_gc_objects_collected", "python_gc_objects_uncollectable", "python_gc_collections"):
        assert {s.labels["generation"] for s in families[name].samples} == {"0", "1", "2"}
    pause = families["python_gc_pause_seconds"]
    assert (pause.type, pause.unit) == ("histogram", "seconds")
    count = {s.labels["generation"]: s.value for s in pause.samples if s.name.endswith("_count")}
    count_before = {s.labels["generation"]: s.value for s in before.samples if s.name.endswith("_count")}
    assert count["2"] >= count_before["2"] + 1  # gc.collect() is a full collection
    buckets = [s for s in pause.samples if s.name.endswith("_bucket") and s.labels["generation"] == "2"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count["2"]
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative


async def test_asyncio_lag_histogram_is_fed_by_the_loop_monitor_and_tasks_are_counted(harness: Any) -> None:
    h = harness()
    probe = asyncio.create_task(h.monitor.run())
    try:
        for _ in range(500):  # the probe ticks every 5 ms; wait for a few ticks without timing anything
            await asyncio.sleep(0.01)
            if h.metrics.loop.lag.snapshot()[0][-1][1] >= 3:
                break
        body = (await h.metrics.render(openmetrics=True)).decode()
    finally:
        probe.cancel()
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(body)}
    lag = families["python_asyncio_loop_lag_seconds"]
    assert (lag.type, lag.unit) == ("histogram", "seconds")
    count = next(s.value for s in lag.samples if s.name.endswith("_count"))
    assert count >= 3
    tasks = families["python_asyncio_tasks"]
    assert tasks.type == "gauge"
    assert tasks.samples[0].value >= 2  # this test and the probe


def test_disk_usage_per_path_and_bad_path_dropped_and_logged_once(harness: Any, tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    h = harness(STATOR_DISK_PATHS=f"/,{tmp_path},{missing}")
    families = h.families()
    expected = {
        "disk_usage_size_bytes": "bytes",
        "disk_usage_available_bytes": "bytes",
        "disk_usage_used_bytes": "bytes",
        "disk_usage_used_ratio": "ratio",
    }
    for name, unit in expected.items():
        family = families[name]
        assert (family.type, family.unit) == ("gauge", unit)
        assert [s.labels for s in family.samples] == [{"path": "/"}, {"path": str(tmp_path)}]
    for path in ("/", str(tmp_path)):
        size = samples(families["disk_usage_size_bytes"])[("disk_usage_size_bytes", (("path", path),))]
        avail = samples(families["disk_usage_available_bytes"])[("disk_usage_available_bytes", (("path", path),))]
        used = samples(families["disk_usage_used_bytes"])[("disk_usage_used_bytes", (("path", path),))]
        ratio = samples(families["disk_usage_used_ratio"])[("disk_usage_used_ratio", (("path", path),))]
        assert 0 <= avail <= size and 0 <= used <= size
        assert ratio == pytest.approx(used / (used + avail))
    h.families()
    warnings = h.logs("disk usage unavailable, path left out")
    assert len(warnings) == 1 and warnings[0]["path"] == str(missing)
    # a bad path is not a collector failure: the other paths are still reported
    disk_errors = samples(families["stator_collector_errors"])[
        ("stator_collector_errors_total", (("collector", "disk"),))
    ]
    assert disk_errors == 0

    missing.mkdir()
    families = h.families()
    assert {"path": str(missing)} in [s.labels for s in families["disk_usage_size_bytes"].samples]
    assert len(h.logs("disk usage available again")) == 1


def test_wave_series_and_switch(harness: Any) -> None:
    family = harness(STATOR_WAVE_ENABLED="true").families()["wave_sine"]
    assert family.type == "gauge"
    assert sorted(s.labels["name"] for s in family.samples) == ["simple", "square", "three_random"]
    assert "wave_sine" not in harness().families()  # off unless asked for: `stator run` asks, instrument() not


def test_wave_is_driven_by_wall_clock_time() -> None:
    period = 60.0
    now = 1_800_000_000.0
    a = WaveCollector(period, seed="svc", clock=lambda: now)
    b = WaveCollector(period, seed="svc", clock=lambda: now)
    assert a.collect()[0].samples == a.collect()[0].samples == b.collect()[0].samples  # scrape count plays no part
    quarter = a.values(period / 4)
    assert quarter["simple"] == pytest.approx(1.0)
    assert quarter["square"] == pytest.approx(4 / math.pi * (1 - 1 / 3 + 1 / 5 - 1 / 7))
    assert a.values(0.0)["square"] == pytest.approx(0.0, abs=1e-12)
    assert WaveCollector(period, seed="other").series["three_random"] != a.series["three_random"]


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.floats(min_value=1, max_value=86400))
def test_wave_bounds_and_period(at: float, period: float) -> None:
    wave = WaveCollector(period, seed="svc")
    values = wave.values(at)
    assert -1.0 - 1e-9 <= values["simple"] <= 1.0 + 1e-9
    assert abs(values["square"]) <= 4 / math.pi * (1 + 1 / 3 + 1 / 5 + 1 / 7)
    assert abs(values["three_random"]) <= 1 + 1 / 2 + 1 / 3
    later = wave.values(at + period)  # float rounding of at/period (~1e9 cycles) allows ~1e-6 of a cycle
    assert later["simple"] == pytest.approx(values["simple"], abs=1e-4)
    assert later["square"] == pytest.approx(values["square"], abs=1e-3)


def test_build_info_and_single_identity_series(harness: Any) -> None:
    h = harness(STATOR_METRICS_GIT_COMMIT="0123abcd")
    families = h.families()
    build = families["stator_build"]
    assert build.type == "info"
    assert [s.name for s in build.samples] == ["stator_build_info"]
    labels = build.samples[0].labels
    assert labels["version"] == "9.9.9" and labels["git_commit"] == "0123abcd"
    assert labels["python_version"].count(".") == 2
    target = families["target"]
    assert target.type == "info"
    identity = {"app_id": "test-app", "run_id": "run1234"}
    assert [(s.name, s.labels) for s in target.samples] == [("target_info", identity)]
    carrying = [s.name for f in families.values() for s in f.samples if "run_id" in s.labels]
    assert carrying == ["target_info"]
    assert "\nstator_build_info{" in h.text() and "# TYPE stator_build_info gauge" in h.text()


def _git(tmp_path: Path, head: str, refs: dict[str, str] | None = None, packed: str | None = None) -> Path:
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text(head + "\n")
    for ref, sha in (refs or {}).items():
        (git / ref).write_text(sha + "\n")
    if packed is not None:
        (git / "packed-refs").write_text(packed)
    pkg = tmp_path / "repo" / "src" / "pkg"
    pkg.mkdir(parents=True)
    return pkg


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("head", "refs", "packed"),
    [
        ("ref: refs/heads/main", {"refs/heads/main": SHA}, None),
        ("ref: refs/heads/main", None, f"# pack-refs with: peeled\n{SHA} refs/heads/main\n"),
        (SHA, None, None),
    ],
    ids=["loose-ref", "packed-ref", "detached"],
)
def test_git_commit_from_checkout(tmp_path: Path, head: str, refs: dict[str, str] | None, packed: str | None) -> None:
    pkg = _git(tmp_path, head, refs, packed)
    assert detect_git_commit(distribution="no-such-dist-stator", source=pkg) == SHA


def test_git_commit_explicit_wins_and_unknown_otherwise(tmp_path: Path) -> None:
    assert detect_git_commit("abc1234", source=tmp_path) == "abc1234"
    assert detect_git_commit(distribution="no-such-dist-stator", source=tmp_path) == UNKNOWN


def test_collector_self_metrics(harness: Any) -> None:
    families = harness().families()
    duration = families["stator_collector_duration_seconds"]
    assert (duration.type, duration.unit) == ("gauge", "seconds")
    assert {s.labels["collector"] for s in duration.samples} == DEFAULT_COLLECTORS
    errors = families["stator_collector_errors"]
    assert errors.type == "counter"
    assert {s.labels["collector"]: s.value for s in errors.samples} == dict.fromkeys(DEFAULT_COLLECTORS, 0.0)
    success = families["stator_collector_success"]
    assert {s.labels["collector"]: s.value for s in success.samples} == dict.fromkeys(DEFAULT_COLLECTORS, 1.0)
