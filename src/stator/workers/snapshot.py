"""A worker's metrics as bytes: what a slot socket answers and what ``slot-N.snap`` / ``archive.snap`` hold.

Format: a 6-byte header (``STSN``, format version, ``marshal.version``), then frames, each a 4-byte big-endian
length and ``marshal`` of plain builtin values. The first frame is ``(record, taken, number of families)``; each
family follows as one or more frames of at most :data:`CHUNK` series::

    (name, type, help, unit, policy, plain, first, heads, values, timestamps, exemplars)

``first`` is True on a family's first frame (later frames extend its columns). The columns are lists of equal
length; ``heads`` are ``name{k="v",...}`` strings (labels sorted, values escaped: the exposition line's prefix) when
``plain``, else ``(sample name, ((label, value), ...))`` for names only prometheus_client's encoder escapes;
an exemplar is ``(((label, value), ...), value, timestamp | None)`` or None.

Why so: **columns of strings and floats** make almost no objects the garbage collector tracks (a row of tuples
made ~3 tracked containers per series, ~60,000 per scrape of 10,000 series x 2 workers, enough to set off full
collections of 30-75 ms that stop the event loop too); **frames** keep every ``marshal`` call short (~0.1 ms), so
the thread that encodes or decodes gives the GIL back to the event loop between them (:class:`Pace`), where one
``marshal`` call over a whole snapshot held it for milliseconds.

Why marshal and not pickle, JSON or protobuf: it is the fastest codec in the standard library for plain values
(orjson would turn the ``inf``/``nan`` values metrics legitimately hold into ``null``), and unlike pickle it cannot
instantiate classes or call anything: loading yields only builtin values (a code object it could yield is never
executed). Who can hand us bytes at all: the sockets and files live in a 0700 directory owned by this uid, and the
server checks ``SO_PEERCRED`` on every connection, so only processes of this user — which could ptrace us anyway —
can talk to a worker. Every frame is checked for shape before use (:class:`SnapshotError`); the merge rejects a
source whose values turn out malformed. The header pins the marshal format: workers of one group run the same
interpreter (they are children of one master), and a mismatch is reported, not guessed at.
"""

from __future__ import annotations

import marshal
import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from stator.metrics.render import NAP, SLICE, RowsMetric, _plain, _plain_label, format_head

MAGIC: Final = b"STSN\x02" + bytes([marshal.version])
CHUNK: Final = 512
_FRAME: Final = struct.Struct(">I")

Labels = tuple[tuple[str, str], ...]
ExemplarT = tuple[Labels, float, float | None]
FamilyT = tuple[str, str, str, str, str, bool, list[Any], list[float], list[float | None], list[ExemplarT | None]]
"""(name, type, help, unit, policy, plain, heads, values, timestamps, exemplars)."""
Record = dict[str, Any]
Step = Callable[[], None]


class Pace:
    """Called between short pieces of work: once ``SLICE`` seconds of work have passed since the last nap, naps
    ``NAP`` seconds, so the event loop's thread gets the GIL (see :class:`stator.metrics.render.Pacer`)."""

    __slots__ = ("_last", "naps")

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.naps = 0

    def __call__(self) -> None:
        if time.perf_counter() - self._last >= SLICE:
            time.sleep(NAP)
            self.naps += 1
            self._last = time.perf_counter()


class SnapshotError(Exception):
    """Bytes that are not a snapshot of this format (truncated, another version, garbage)."""


class Snapshot:
    __slots__ = ("families", "record", "taken")

    def __init__(self, record: Record, taken: float, families: list[FamilyT]) -> None:
        self.record = record
        self.taken = taken
        self.families = families

    def encode(self, pace: Step | None = None) -> bytes:
        parts = [MAGIC]
        dumps = marshal.dumps
        pack = _FRAME.pack

        def frame(value: Any) -> None:
            data = dumps(value)
            parts.append(pack(len(data)))
            parts.append(data)
            if pace is not None:
                pace()

        frame((self.record, self.taken, len(self.families)))
        for name, kind, doc, unit, policy, plain, heads, values, stamps, exemplars in self.families:
            for i in range(0, max(len(heads), 1), CHUNK):
                j = i + CHUNK
                frame((name, kind, doc, unit, policy, plain, i == 0, heads[i:j], values[i:j], stamps[i:j],
                       exemplars[i:j]))  # fmt: skip
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, pace: Step | None = None) -> Snapshot:
        if not data.startswith(MAGIC):
            raise SnapshotError("not a snapshot of this format/version")
        view = memoryview(data)
        end = len(data)
        pos = len(MAGIC)
        loads = marshal.loads

        def frame() -> Any:
            nonlocal pos
            if pos + _FRAME.size > end:
                raise SnapshotError("truncated snapshot")
            (size,) = _FRAME.unpack_from(view, pos)
            pos += _FRAME.size
            if pos + size > end:
                raise SnapshotError("truncated snapshot")
            try:
                value = loads(view[pos : pos + size])
            except (EOFError, ValueError, TypeError) as exc:
                raise SnapshotError(f"undecodable snapshot: {exc}") from None
            pos += size
            if pace is not None:
                pace()
            return value

        head = frame()
        if not (isinstance(head, tuple) and len(head) == 3):
            raise SnapshotError("snapshot does not start with (record, taken, families)")
        record, taken, count = head
        if not isinstance(record, dict) or not isinstance(taken, float) or not isinstance(count, int):
            raise SnapshotError("snapshot parts have the wrong types")
        families: list[FamilyT] = []
        while pos < end:
            name, kind, doc, unit, policy, plain, first, heads, values, stamps, exemplars = _check_frame(frame())
            if first:
                families.append((name, kind, doc, unit, policy, plain, heads, values, stamps, exemplars))
            elif families and families[-1][0] == name:
                last = families[-1]
                last[6].extend(heads)
                last[7].extend(values)
                last[8].extend(stamps)
                last[9].extend(exemplars)
            else:
                raise SnapshotError(f"family {name!r} continues no family")
        if len(families) != count:
            raise SnapshotError(f"snapshot holds {len(families)} families, its header says {count}")
        return cls(record, taken, families)

    @classmethod
    def read(cls, path: Path, pace: Step | None = None) -> Snapshot | None:
        """The snapshot in ``path``, or None when there is no such file."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return cls.decode(data, pace)

    def write(self, path: Path, pace: Step | None = None) -> bytes:
        """Atomically replace ``path`` (a reader sees the old file or the new one, never a mix); the bytes."""
        data = self.encode(pace)
        write_atomic(path, data)
        return data


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _check_frame(value: object) -> tuple[Any, ...]:
    # Shape of the frame and of its first row: cheap, and enough to reject foreign data. Per-row surprises (a
    # non-number deeper in) surface as TypeError in the merge, which rejects the whole source.
    if not (isinstance(value, tuple) and len(value) == 11):
        raise SnapshotError("family frame is not an 11-tuple")
    name, kind, doc, unit, policy, plain, first, heads, values, stamps, exemplars = value
    if not all(isinstance(x, str) for x in (name, kind, doc, unit, policy)):
        raise SnapshotError(f"family {name!r} has fields of the wrong types")
    if not (isinstance(plain, bool) and isinstance(first, bool)):
        raise SnapshotError(f"family {name!r} has flags of the wrong types")
    columns = (heads, values, stamps, exemplars)
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise SnapshotError(f"family {name!r} has malformed columns")
    if heads:
        head = heads[0]
        if not isinstance(values[0], float) or not (
            isinstance(head, str)
            if plain
            else isinstance(head, tuple) and len(head) == 2 and isinstance(head[1], tuple)
        ):
            raise SnapshotError(f"family {name!r} has malformed rows")
    return value


def encode_families(families: Iterable[Metric], policy_of: Any = None, tick: Step | None = None) -> list[FamilyT]:
    """Families as snapshot columns. ``policy_of(name, type)`` names the gauge merge policy the owner declared
    (recorded with the family: the scraping worker merges with it); ``tick()`` is called per sample (a
    :class:`~stator.metrics.render.Pacer`)."""
    out: list[FamilyT] = []
    for family in families:
        policy = policy_of(family.name, family.type) if policy_of is not None else ""
        if isinstance(family, RowsMetric):  # already columns (a prometheus_client metric read by the hub)
            out.append((family.name, family.type, family.documentation, family.unit, policy, family.plain,
                        family.heads, family.values, family.timestamps, family.exemplars))  # fmt: skip
            continue
        samples = [s for s in family.samples if s.value is not None and getattr(s, "native_histogram", None) is None]
        plain = _plain(family.name) and all(
            _plain(s.name) and all(_plain_label(k) for k in s.labels) for s in samples
        )  # else prometheus_client's encoder escapes the names: keep them as pairs for it
        heads: list[Any] = []
        values: list[float] = []
        stamps: list[float | None] = []
        exemplars: list[ExemplarT | None] = []
        for sample in samples:
            pairs = tuple(sorted(sample.labels.items())) if sample.labels else ()
            heads.append(format_head(sample.name, pairs) if plain else (sample.name, pairs))
            values.append(float(sample.value))
            stamps.append(None if sample.timestamp is None else float(sample.timestamp))
            ex = sample.exemplar
            exemplars.append(
                None
                if ex is None
                else (tuple(sorted(ex.labels.items())), float(ex.value), _float_or_none(ex.timestamp))
            )
            if tick is not None:
                tick()
        out.append((family.name, family.type, family.documentation, family.unit, policy, plain, heads, values,
                    stamps, exemplars))  # fmt: skip
    return out


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
