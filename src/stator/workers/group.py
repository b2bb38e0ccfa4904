"""WorkerGroup: this process's membership in its service instance's group of worker processes.

Joining (:meth:`WorkerGroup.join`): find the group (:mod:`stator.workers.identity`), remove stale group
directories, claim a slot (:mod:`stator.workers.slots`), fold whatever a dead predecessor left in that slot into the
group archive, and start answering on ``slot-N.sock`` (:mod:`stator.workers.channel`).

The invariant that makes merged counters monotonic: a worker writes its snapshot to ``slot-N.snap`` (atomically)
*before* it serves that snapshot to anyone, under one lock, so any value ever served is <= what the file holds.
A scrape sums, for every slot, either a fresh snapshot or — when the worker is dead or does not answer in time —
its file, plus ``archive.snap``. When a slot is claimed again, the predecessor's file is folded into the archive
and removed under the archive lock (exclusive), which scrapes hold shared while they read: the dead worker's
totals are always counted exactly once, and the directory stays bounded by the number of slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from stator.logs import Logger
from stator.metrics.guard import LogLimiter
from stator.metrics.render import Pacer
from stator.workers.channel import RECORD, SNAPSHOT, SlotServer, Unreachable, ask
from stator.workers.identity import GroupIdentity, GroupMode, base_dir, detect, group_dir, remove_stale
from stator.workers.merge import Merger, Source, fold
from stator.workers.policy import Policies
from stator.workers.slots import FileLock, claim_slot, known_slots, locked, slot_path
from stator.workers.snapshot import Pace, Record, Snapshot, SnapshotError, encode_families

ARCHIVE: Final = "archive.snap"
ARCHIVE_LOCK: Final = "archive.lock"
LEADER_LOCK: Final = "leader.lock"
ROSTER_TTL: Final = 1.0

Collect = Callable[[], Iterable[Metric]]
Status = Callable[[], Mapping[str, Any]]


class WorkerGroup:
    """Use :meth:`join`; the constructor expects an already claimed slot."""

    def __init__(
        self,
        identity: GroupIdentity,
        directory: Path,
        slot: int,
        slot_lock: FileLock,
        *,
        collect: Collect,
        policies: Policies,
        logger: Logger,
        status: Status | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.slot = slot
        self.policies = policies
        self.logger = logger
        self.timeout = timeout
        self.started_at = time.time()
        self.restarts = 0
        self._slot_lock = slot_lock
        self._leader_lock = FileLock(directory / LEADER_LOCK)
        self._collect = collect
        self._status = status
        self._snap_lock = threading.Lock()
        self._server: SlotServer | None = None
        self._log = LogLimiter()
        self._roster: list[Record] = []
        self._roster_at = 0.0
        self._roster_flight: threading.Thread | None = None
        self._roster_lock = threading.Lock()
        self._closed = False

    # -- joining ---------------------------------------------------------------------------------------------

    @classmethod
    def join(
        cls,
        *,
        mode: GroupMode,
        collect: Collect,
        logger: Logger,
        policies: Policies | None = None,
        status: Status | None = None,
        directory: str = "",
        timeout: float = 1.0,
        slot_hint: int | None = None,
        identity: GroupIdentity | None = None,
    ) -> WorkerGroup | None:
        """Join the group this process belongs to, or return None when it belongs to none (see
        :func:`stator.workers.identity.detect`). ``collect`` yields this worker's metric families (any thread);
        ``status`` adds fields to the worker's record (``state``, ``requests``) and runs on the slot thread."""
        if identity is None:
            identity = detect(mode)
        if identity is None:
            return None
        base = base_dir(directory)
        for name in remove_stale(base, keep=identity):
            logger.info("stale worker group directory removed", directory=str(base / name))
        where = group_dir(base, identity)
        slot, lock = claim_slot(where, slot_hint)
        group = cls(
            identity,
            where,
            slot,
            lock,
            collect=collect,
            policies=policies or Policies(),
            logger=logger,
            status=status,
            timeout=timeout,
        )
        try:
            group._take_over()
            group._server = SlotServer(slot_path(where, slot, "sock"), group._answer, group._report)
            group._server.start()
        except BaseException:
            lock.release()
            raise
        logger.info(
            "joined worker group",
            worker=slot,
            group=identity.group_id,
            master=identity.master,
            master_pid=identity.master_pid,
            directory=str(where),
            restarts=group.restarts,
        )
        return group

    def _take_over(self) -> None:
        """Fold a predecessor's file into the archive (any file in a slot we just locked is a dead holder's),
        then leave our own (empty) file so a later holder counts our restart even if we die before a scrape."""
        snap_file = slot_path(self.directory, self.slot, "snap")
        with locked(self.directory / ARCHIVE_LOCK):
            try:
                previous = Snapshot.read(snap_file)
            except SnapshotError as exc:
                self.logger.error("unreadable worker snapshot discarded", path=str(snap_file), error=str(exc))
                previous = None
            if previous is not None:
                self.restarts = int(previous.record.get("restarts", 0) or 0) + 1
                if previous.families:
                    archive_file = self.directory / ARCHIVE
                    archive = self._read(archive_file)
                    sources = [Source(-1, False, previous.taken, previous.families)]
                    if archive is not None:
                        sources.insert(0, Source(-1, False, archive.taken, archive.families))
                    Snapshot({"archive": True}, time.time(), fold(sources)).write(archive_file)
                    self.logger.info(
                        "dead worker's totals archived", worker=self.slot, dead_pid=previous.record.get("pid")
                    )
            Snapshot(self.record(), time.time(), []).write(snap_file)

    # -- this worker -----------------------------------------------------------------------------------------

    @property
    def group_id(self) -> str:
        return self.identity.group_id

    @property
    def is_leader(self) -> bool:
        return self._leader_lock.held

    def try_lead(self) -> bool:
        """Take the group's leadership if nobody holds it (non-blocking; cheap enough for the event loop)."""
        return False if self._closed else self._leader_lock.try_acquire()

    async def wait_leader(self, interval: float = 1.0) -> None:
        """Return once this worker leads the group (immediately if it does)."""
        # A flock has no notification to await: poll it.
        while True:
            if self.try_lead():
                return
            await asyncio.sleep(interval)

    def record(self) -> Record:
        """What /monitor shows about this worker."""
        record: Record = {
            "slot": self.slot,
            "pid": os.getpid(),
            "state": "running",
            "leader": self.is_leader,
            "restarts": self.restarts,
            "started_at": self.started_at,
        }
        if self._status is not None:
            try:
                record.update({k: v for k, v in self._status().items() if _plain(v)})
            except Exception as exc:
                self._report(exc)
        return record

    def snapshot(self) -> Snapshot:
        """Collect this worker's families, write them to its slot file, and return them: in that order, under one
        lock, so nothing is ever served that the file does not already hold."""
        return self._snapshot()[0]

    def _snapshot(self) -> tuple[Snapshot, bytes]:
        with self._snap_lock:
            families = encode_families(self._collect(), self.policies.policy, Pacer().tick)
            snap = Snapshot(self.record(), time.time(), families)
            return snap, snap.write(slot_path(self.directory, self.slot, "snap"), Pace())

    def _answer(self, request: bytes) -> bytes:
        if request == SNAPSHOT:
            return self._snapshot()[1]
        if request == RECORD:
            return Snapshot(self.record(), time.time(), []).encode()
        raise ValueError(f"unknown request {request!r}")

    def _report(self, exc: BaseException) -> None:
        suppressed = self._log.allow(time.monotonic())
        if suppressed is not None:
            self.logger.error("worker group error", exc=exc if isinstance(exc, Exception) else None,
                              error=repr(exc), suppressed=suppressed)  # fmt: skip

    def _read(self, path: Path) -> Snapshot | None:
        try:
            return Snapshot.read(path, Pace())
        except (SnapshotError, OSError) as exc:
            self._report(SnapshotError(f"{path.name}: {exc}"))
            return None

    # -- the group -------------------------------------------------------------------------------------------

    def _gather(self, request: bytes) -> tuple[dict[int, Snapshot], dict[int, Snapshot], dict[int, str]]:
        """Ask every other slot concurrently. Returns (answers, files of slots that did not answer, states)."""
        others = [s for s in known_slots(self.directory) if s != self.slot]
        answers: dict[int, Snapshot] = {}
        states: dict[int, str] = {}

        def one(slot: int) -> None:
            try:
                data = ask(slot_path(self.directory, slot, "sock"), request, self.timeout)
                answers[slot] = Snapshot.decode(data, Pace())
                states[slot] = "live"
            except Unreachable as exc:
                states[slot] = "unresponsive" if exc.hung else "dead"
            except SnapshotError as exc:
                self._report(exc)
                states[slot] = "unresponsive"

        threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in others]
        for t in threads:
            t.start()
        local = self.snapshot() if request == SNAPSHOT else None
        deadline = time.monotonic() + self.timeout + 0.5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        answers = dict(answers)  # a straggler thread may still write; work on a copy
        files: dict[int, Snapshot] = {}
        for slot in others:
            if slot in answers:
                continue
            states.setdefault(slot, "unresponsive")
            snap = self._read(slot_path(self.directory, slot, "snap"))
            if snap is not None:
                files[slot] = snap
        if local is not None:
            answers[self.slot] = local
            states[self.slot] = "live"
        return answers, files, states

    def merged_families(self) -> list[Metric]:
        """The group's metrics: every worker's families merged (the source a merged ``/metrics`` renders).
        Blocking (socket round trips, file reads): call it off the event loop."""
        pacer = Pacer()
        with locked(self.directory / ARCHIVE_LOCK, shared=True):
            answers, files, states = self._gather(SNAPSHOT)
            archive = self._read(self.directory / ARCHIVE)
        merger = Merger(pacer.tick)
        sources = [Source(s, True, snap.taken, snap.families) for s, snap in answers.items()]
        sources += [Source(s, False, snap.taken, snap.families) for s, snap in files.items()]
        if archive is not None:
            sources.append(Source(-1, False, archive.taken, archive.families))
        sources.sort(key=lambda src: (not src.live, src.slot if src.slot >= 0 else 1 << 30))
        for source in sources:
            try:
                merger.add(source)
            except (TypeError, ValueError) as exc:
                self._report(SnapshotError(f"malformed snapshot of slot {source.slot}: {exc}"))
        records = [snap.record for snap in answers.values()] + [snap.record for snap in files.values()]
        return [*merger.families(), *_group_families(states, records)]

    def roster(self) -> list[Record]:
        """Every slot's record, fresh from live workers and from the files of dead ones; blocking."""
        with locked(self.directory / ARCHIVE_LOCK, shared=True):
            answers, files, states = self._gather(RECORD)
        answers[self.slot] = Snapshot(self.record(), time.time(), [])
        states[self.slot] = "live"
        out = []
        for slot in sorted(set(answers) | set(files) | set(states)):
            snap = answers.get(slot) or files.get(slot)
            record: Record = dict(snap.record) if snap is not None else {"slot": slot}
            if states.get(slot) != "live":
                record["state"] = states.get(slot, "dead")
                record["leader"] = False
            out.append(record)
        return out

    def monitor(self) -> dict[str, Any]:
        """The /monitor section: never blocks for long (the roster is refreshed in a thread at most once a
        second; the first call waits for it briefly)."""
        with self._roster_lock:
            stale = time.monotonic() - self._roster_at > ROSTER_TTL
            flight = self._roster_flight
            if stale and (flight is None or not flight.is_alive()):
                flight = self._roster_flight = threading.Thread(target=self._refresh, daemon=True)
                flight.start()
        if not self._roster and flight is not None:
            flight.join(self.timeout + 0.5)
        return {
            "group": self.group_id,
            "master": self.identity.master,
            "master_pid": self.identity.master_pid,
            "directory": str(self.directory),
            "worker": self.slot,
            "leader": self.is_leader,
            "workers": self._roster,
            "as_of_seconds_ago": round(time.monotonic() - self._roster_at, 3) if self._roster_at else None,
        }

    def _refresh(self) -> None:
        try:
            self._roster = self.roster()
        except Exception as exc:
            self._report(exc)
        self._roster_at = time.monotonic()

    # -- leaving ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Leave the group: a last snapshot to the slot file (what was counted since the last scrape is kept),
        stop answering, release leadership and the slot. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.snapshot()
        if self._server is not None:
            self._server.close()
        self._leader_lock.release()
        self._slot_lock.release()


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _group_families(states: Mapping[int, str], records: Iterable[Record]) -> list[Metric]:
    workers = GaugeMetricFamily(
        "stator_workers", "Worker processes of this instance by state (live, unresponsive, dead).", labels=["state"]
    )
    counts = {"live": 0, "unresponsive": 0, "dead": 0}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    for state, n in counts.items():
        workers.add_metric([state], n)
    restarts = CounterMetricFamily(
        "stator_workers_restarts", "Times a worker slot was taken over after its previous holder ended."
    )
    restarts.add_metric([], sum(int(r.get("restarts", 0) or 0) for r in records))
    return [workers, restarts]
