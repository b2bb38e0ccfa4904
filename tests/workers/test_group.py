"""WorkerGroup in one process: several groups joined by the test process itself act as workers of one master
(flock conflicts between open file descriptions, so each claims its own slot; each answers on its own socket)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from stator.config import Settings
from stator.lifecycle.loopmonitor import LoopMonitor
from stator.logs import Logger
from stator.logs.sinks import MemorySink
from stator.metrics import ServiceMetrics
from stator.metrics.render import format_head
from stator.workers import GroupIdentity, Policies, WorkerGroup
from stator.workers.identity import GroupDirError, base_dir, detect, master_name, remove_stale, start_time
from stator.workers.merge import Merger, Source, merge
from stator.workers.slots import slot_path
from stator.workers.snapshot import CHUNK, FamilyT, Snapshot, SnapshotError


class Worker:
    def __init__(self, base: Path, identity: GroupIdentity, **policies: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("requests", "Requests.", ["route"], registry=self.registry)
        self.latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=self.registry)
        self.level = Gauge("level", "A gauge.", registry=self.registry)
        self.sink = MemorySink()
        self.group = WorkerGroup.join(
            mode="parent",
            identity=identity,
            collect=self.registry.collect,
            logger=Logger(app_id="t", run_id="r", sink=self.sink),
            policies=Policies(policies),  # type: ignore[arg-type]
            directory=str(base),
            timeout=0.5,
        )
        assert self.group is not None

    def kill(self) -> None:
        """What SIGKILL leaves behind: the slot file as last written, no socket listener, the locks released."""
        assert self.group is not None and self.group._server is not None
        self.group._server.close()
        self.group._leader_lock.release()
        self.group._slot_lock.release()
        self.group._closed = True


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "g"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def identity() -> GroupIdentity:
    started = start_time(os.getpid())
    assert started is not None
    return GroupIdentity(os.getpid(), started, "boot", "test")


@pytest.fixture
def workers(base: Path, identity: GroupIdentity) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:
        assert w.group is not None
        w.group.close()


def fam(name: str, kind: str, doc: str, unit: str, policy: str, rows: list[tuple[Any, ...]]) -> FamilyT:
    """A snapshot family (columns) from rows ``(sample name, label pairs, value, timestamp, exemplar)``; label
    names that are not plain make it a family of ``(name, pairs)`` heads, as :func:`encode_families` does."""
    plain = all(k.replace("_", "a").isalnum() for row in rows for k, _ in row[1])
    heads = [format_head(r[0], r[1]) if plain else (r[0], r[1]) for r in rows]
    return (name, kind, doc, unit, policy, plain, heads, [r[2] for r in rows], [r[3] for r in rows],
            [r[4] for r in rows])  # fmt: skip


def values(families: list[Metric]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in families:
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_counters_and_histograms_sum_and_gauges_follow_their_policy(
    base: Path, identity: GroupIdentity, workers: list[Worker]
) -> None:
    for slot in range(3):
        w = Worker(base, identity, level="max")
        workers.append(w)
        assert w.group is not None and w.group.slot == slot
        w.requests.labels("/a").inc(slot + 1)
        w.latency.observe(0.5, exemplar={"trace_id": f"t{slot}"})
        w.level.set(10 * slot)
    merged = workers[0].group.merged_families()  # type: ignore[union-attr]
    got = values(merged)
    assert got["requests_total"][(("route", "/a"),)] == 6
    assert got["latency_seconds_count"][()] == 3
    assert got["latency_seconds_bucket"][(("le", "1.0"),)] == 3
    assert got["level"][()] == 20
    assert got["stator_workers"][(("state", "live"),)] == 3
    created = [s.value for f in merged for s in f.samples if s.name == "requests_created"]
    assert created == [min(created)] and len(created) == 1
    exemplars = [s.exemplar for f in merged for s in f.samples if s.exemplar is not None]
    assert len(exemplars) == 1 and exemplars[0].labels == {"trace_id": "t2"}  # the most recent one

    workers[2].kill()
    after = values(workers[1].group.merged_families())  # type: ignore[union-attr]
    assert after["requests_total"][(("route", "/a"),)] == 6  # the dead worker's totals stay
    assert after["level"][()] == 10  # only live workers' gauges count
    assert after["stator_workers"][(("state", "dead"),)] == 1

    replacement = Worker(base, identity, level="max")  # takes the dead worker's slot, folding its file
    workers.append(replacement)
    assert replacement.group is not None and replacement.group.slot == 2 and replacement.group.restarts == 1
    replacement.requests.labels("/a").inc(100)
    final = values(workers[0].group.merged_families())  # type: ignore[union-attr]
    assert final["requests_total"][(("route", "/a"),)] == 106
    assert final["stator_workers_restarts_total"][()] == 1
    assert sorted(os.listdir(base / identity.dirname)) == sorted(
        ["archive.lock", "archive.snap"] + [f"slot-{s}.{ext}" for s in range(3) for ext in ("lock", "snap", "sock")]
    )  # bounded by the slot count


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("sum", {(): 3.0}),
        ("max", {(): 2.0}),
        ("min", {(): 1.0}),
        ("mostrecent", {(): 2.0}),
        ("first", {(): 1.0}),
        ("worker", {(("worker", "0"),): 1.0, (("worker", "1"),): 2.0}),
    ],
)
def test_gauge_policies(policy: str, expected: dict[tuple[tuple[str, str], ...], float]) -> None:
    def snap(slot: int, value: float, taken: float) -> Source:
        return Source(slot, True, taken, [fam("g", "gauge", "G.", "", policy, [("g", (), value, None, None)])])

    assert values(merge([snap(0, 1.0, 10.0), snap(1, 2.0, 20.0)]))["g"] == expected


def test_worker_plus_sum_adds_a_group_total_family() -> None:
    meta = ("process_open_fds", "gauge", "Open fds.", "", "worker+sum")
    sources = [Source(s, True, 0.0, [fam(*meta, [("process_open_fds", (), 10.0 + s, None, None)])]) for s in (0, 1)]
    got = values(merge(sources))
    assert got["process_open_fds"] == {(("worker", "0"),): 10.0, (("worker", "1"),): 11.0}
    assert got["stator_workers_open_fds"] == {(): 21.0}


def test_declared_policy_travels_with_the_snapshot() -> None:
    policies = Policies()
    assert policies.policy("my_gauge", "gauge") == "worker"  # undeclared: lossless per-worker series
    assert policies.policy("http_requests_in_flight", "gauge") == "sum"
    assert policies.policy("anything", "counter") == ""  # always summed
    policies.declare("my_gauge", "min")
    assert policies.policy("my_gauge", "gauge") == "min"
    with pytest.raises(ValueError, match="unknown merge policy"):
        policies.declare("my_gauge", "avg")


def test_a_snapshot_with_another_or_a_reused_pid_is_folded_not_trusted(
    base: Path, identity: GroupIdentity, workers: list[Worker]
) -> None:
    """Liveness is the slot's flock, never a pid: a file left in a free slot is a dead holder's, even when its pid
    is alive now (reused) — here it is this very process's pid."""
    where = base / identity.dirname
    where.mkdir(mode=0o700)
    fake = [fam("requests", "counter", "Requests.", "", "", [("requests_total", (("route", "/a"),), 7.0, None, None)])]
    Snapshot({"pid": os.getpid(), "restarts": 4}, time.time(), fake).write(slot_path(where, 0, "snap"))
    w = Worker(base, identity)
    workers.append(w)
    assert w.group is not None and w.group.slot == 0 and w.group.restarts == 5
    w.requests.labels("/a").inc(1)
    assert values(w.group.merged_families())["requests_total"][(("route", "/a"),)] == 8
    assert (where / "archive.snap").exists()


def test_stale_group_directories_are_removed_and_live_ones_kept(base: Path, identity: GroupIdentity) -> None:
    live = base / identity.dirname
    live.mkdir(mode=0o700)
    reused = base / f"g-{os.getpid()}-{identity.master_start + 1}"  # our pid, another start time: stale
    gone = base / "g-999999999-1"
    for stale in (reused, gone):
        stale.mkdir(mode=0o700)
        (stale / "slot-0.snap").write_bytes(b"x")
    (base / "unrelated").mkdir()
    removed = remove_stale(base)
    assert sorted(removed) == sorted([reused.name, gone.name])
    assert live.exists() and (base / "unrelated").exists()


def test_the_base_directory_must_be_private(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(GroupDirError, match="accessible to other users"):
        base_dir(str(open_dir))
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(GroupDirError, match="not a directory"):
        base_dir(str(link))
    made = base_dir("", {"XDG_RUNTIME_DIR": str(tmp_path)})
    assert made == tmp_path / "stator" and (made.stat().st_mode & 0o777) == 0o700


def test_snapshots_round_trip_and_garbage_is_rejected() -> None:
    big = [("big_total", (("i", str(i)),), float(i), None, None) for i in range(CHUNK * 2 + 7)]  # three frames
    fams = [
        fam("x", "gauge", "X.", "", "max", [("x", (("a", 'b"\n'),), float("inf"), 1.5, None)]),
        fam("empty", "gauge", "E.", "", "", []),
        fam("big", "counter", "B.", "", "", big),
        fam("odd", "gauge", "O.", "", "", [("odd", (("a.b", "v"),), 1.0, None, ((("t", "1"),), 2.0, None))]),
    ]
    data = Snapshot({"pid": 1}, 2.0, fams).encode()
    snap = Snapshot.decode(data)
    assert snap.families == fams and snap.record == {"pid": 1}
    assert fams[0][5] and not fams[3][5]  # the label name "a.b" keeps its family as pairs
    for bad in (b"", b"garbage", data[:-3], data[:-40], Snapshot({}, 1.0, []).encode()[:-3],
                b"STSN\x02\x04" + b"\x00" * 10, data[:6] + b"\x00\x00\x00\x02N."):  # fmt: skip
        with pytest.raises(SnapshotError):
            Snapshot.decode(bad)


def test_master_detection() -> None:
    assert master_name(["/venv/bin/gunicorn", "-w", "2", "app:app"]) == "gunicorn"
    assert master_name(["gunicorn: master [app:app]"]) == "gunicorn"
    assert master_name(["/usr/bin/python3", "-m", "uvicorn", "app:app", "--workers", "2"]) == "uvicorn"
    assert master_name(["python3.11", "-u", "/venv/bin/hypercorn", "app:app"]) == "hypercorn"
    assert master_name(["granian", "--interface", "asgi", "app:app"]) == "granian"
    assert master_name(["/bin/bash", "-c", "uvicorn app"]) is None
    assert master_name(["python", "-m", "pytest"]) is None
    me = os.getpid()
    assert detect("off", {}) is None
    # A stator supervisor names itself in the environment; a grandchild (other parent) ignores it.
    found = detect("auto", {"_STATOR_WORKERS_MASTER": str(me)}, ppid=me)
    assert found is not None and found.master == "stator" and found.master_pid == me
    assert detect("auto", {"_STATOR_WORKERS_MASTER": "1"}, ppid=me) is None  # pytest is no master
    parent = detect("parent", {}, ppid=me)
    assert parent is not None and parent.group_id == found.group_id and len(parent.group_id) == 7


def test_a_merged_scrape_renders_in_both_formats_through_service_metrics(
    base: Path, identity: GroupIdentity, workers: list[Worker]
) -> None:
    metrics = ServiceMetrics(
        Settings(), Logger(app_id="t", run_id="r", sink=MemorySink()), app_id="t", run_id="r", version="0",
        loop_monitor=LoopMonitor(0.1),
    )  # fmt: skip
    Counter("hits", "Hits.", registry=metrics.registry).inc(2)
    group = WorkerGroup.join(
        mode="parent",
        identity=identity,
        collect=metrics.collect_local,
        logger=metrics.logger,
        directory=str(base),
    )
    assert group is not None
    try:
        other = Worker(base, identity)
        workers.append(other)
        Counter("hits", "Hits.", registry=other.registry).inc(3)
        metrics.use_merged_source(group.merged_families)
        text = metrics.render_sync("text").decode()
        om = metrics.render_sync("openmetrics").decode()
        assert {s.name: s.value for f in parse_text(text) for s in f.samples}["hits_total"] == 5
        assert {s.name: s.value for f in parse_openmetrics(om) for s in f.samples}["hits_total"] == 5
        metrics.use_merged_source(None)
        assert "hits_total 2.0" in metrics.render_sync("text").decode()
    finally:
        group.close()


def test_leadership_moves_to_another_worker_when_the_leader_dies(
    base: Path, identity: GroupIdentity, workers: list[Worker]
) -> None:
    a, b = Worker(base, identity), Worker(base, identity)
    workers += [a, b]
    assert a.group is not None and b.group is not None
    assert a.group.try_lead() and not b.group.try_lead()
    a.kill()
    assert b.group.try_lead() and b.group.is_leader
    assert b.group.group_id == identity.group_id  # the instance id survives the change of leader


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("Linux /proc and flock semantics")


def test_merged_rows_encode_exactly_as_prometheus_client_encodes_them() -> None:
    """The merge hands the encoder rows (RowsMetric); the bytes must equal prometheus_client's for the same
    families, in both formats (escaping, _created regrouping, exemplars, timestamps, units)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    from stator.metrics.render import Encoder

    fams = [
        fam("c", "counter", 'Help "q" \\ x', "", "", [
            ("c_total", (("a", 'x"\n\\'),), 3.0, None, ((("trace_id", "t"),), 1.0, 5.0)),
            ("c_created", (("a", 'x"\n\\'),), 1.5, None, None),
        ]),
        fam("h_seconds", "histogram", "H.", "seconds", "", [
            ("h_seconds_bucket", (("le", "1.0"),), 1.0, None, ((("trace_id", "u"),), 0.5, None)),
            ("h_seconds_bucket", (("le", "+Inf"),), 2.0, None, None),
            ("h_seconds_count", (), 2.0, None, None),
            ("h_seconds_sum", (), 3.5, None, None),
        ]),
        fam("g", "gauge", "G.", "", "mostrecent", [("g", (("z", "1"),), float("nan"), 1700000000.25, None)]),
        fam("u", "gauge", "U.", "", "sum", [("u", (("a.b", "1"), ("c", "2")), 4.0, None, None)]),
    ]  # fmt: skip
    sources = [Source(0, True, 1.0, fams), Source(1, True, 2.0, fams)]
    for fmt, reference in (("text", generate_latest), ("openmetrics", generate_om)):
        merged = merge(sources)
        encoder = Encoder(fmt)  # type: ignore[arg-type]
        for family in merged:
            encoder.family(family)

        assert encoder.finish() == reference(_View(merged))


class _View:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def test_leader_only_runs_its_worker_in_the_leader_and_deregisters_only_there(
    base: Path, identity: GroupIdentity, workers: list[Worker]
) -> None:
    import asyncio

    from stator.workers import LeaderOnly

    class Duty:
        name = "roster"

        def __init__(self) -> None:
            self.ran = asyncio.Event()
            self.drained = False

        async def run(self) -> None:
            self.ran.set()
            await asyncio.Future()

        async def before_drain(self) -> None:
            self.drained = True

    a, b = Worker(base, identity), Worker(base, identity)
    workers += [a, b]
    assert a.group is not None and b.group is not None

    async def scenario() -> tuple[Duty, Duty]:
        da, db = Duty(), Duty()
        ta = asyncio.create_task(LeaderOnly(da, a.group, 0.05).run())  # type: ignore[arg-type]
        lb = LeaderOnly(db, b.group, 0.05)  # type: ignore[arg-type]
        tb = asyncio.create_task(lb.run())
        await asyncio.wait_for(da.ran.wait(), 5)
        await asyncio.sleep(0.2)
        assert not db.ran.is_set()  # one registration per instance
        await lb.before_drain()
        assert not db.drained  # never registered: nothing to deregister
        a.kill()  # the leader dies: b takes over within its retry interval
        await asyncio.wait_for(db.ran.wait(), 5)
        await lb.before_drain()
        for task in (ta, tb):
            task.cancel()
        return da, db

    _, db = asyncio.run(scenario())
    assert db.drained and b.group.is_leader


def test_a_source_repeating_a_series_or_holding_garbage_merges_safely() -> None:
    """The first source's columns are taken whole (the fast path); one repeating a series goes row by row (summed,
    as before), and one with a non-number is rejected without leaving anything behind in the merge."""
    row = ("c_total", (("a", "1"),), 1.0, None, None)
    good = fam("c", "counter", "C.", "", "", [row])
    dup = fam("c", "counter", "C.", "", "", [(*row[:2], 2.0, None, None), (*row[:2], 3.0, None, None)])
    assert values(merge([Source(0, True, 0.0, [dup]), Source(1, True, 0.0, [good])]))["c_total"] == {row[1]: 6.0}
    bad: Any = ("c", "counter", "C.", "", "", True, ['c_total{a="1"}'], ["x"], [None], [None])
    merger = Merger()
    with pytest.raises((TypeError, ValueError)):
        merger.add(Source(0, True, 0.0, [bad]))
    merger.add(Source(1, True, 0.0, [good]))
    assert values(merger.families())["c_total"] == {row[1]: 1.0}
