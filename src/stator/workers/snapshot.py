"""A worker's metrics as bytes: what a slot socket answers and what ``slot-N.snap`` / ``archive.snap`` hold.

Format: a 6-byte header (``STSN``, format version, ``marshal.version``) then ``marshal`` of plain tuples::

    (record: dict[str, str|int|float|bool|None], taken: float,
     families: [(name, type, help, unit, policy, [(sample name, ((label, value), ...), value, timestamp,
                                                    exemplar | None)])])
    exemplar = (((label, value), ...), value, timestamp | None)

Why marshal and not pickle, JSON or protobuf: it is the fastest codec in the standard library for plain tuples
(10,000 series encode in ~3 ms and decode in ~2 ms, several times faster than building JSON, and orjson would turn
the ``inf``/``nan`` values metrics legitimately hold into ``null``), and unlike pickle it cannot instantiate
classes or call anything: loading yields only builtin values (a code object it could yield is never executed).
Who can hand us bytes at all: the sockets and files live in a 0700 directory owned by this uid, and the server
checks ``SO_PEERCRED`` on every connection, so only processes of this user — which could ptrace us anyway — can
talk to a worker. A decoded snapshot is checked for shape before use (:class:`SnapshotError`); the merge rejects
a source whose samples turn out malformed. The header pins the marshal format: workers of one group run the
same interpreter (they are children of one master), and a mismatch is reported, not guessed at.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from stator.metrics.render import RowsMetric

MAGIC: Final = b"STSN\x01" + bytes([marshal.version])

Labels = tuple[tuple[str, str], ...]
ExemplarT = tuple[Labels, float, float | None]
SampleT = tuple[str, Labels, float, float | None, ExemplarT | None]
FamilyT = tuple[str, str, str, str, str, list[SampleT]]
Record = dict[str, Any]


class SnapshotError(Exception):
    """Bytes that are not a snapshot of this format (truncated, another version, garbage)."""


class Snapshot:
    __slots__ = ("families", "record", "taken")

    def __init__(self, record: Record, taken: float, families: list[FamilyT]) -> None:
        self.record = record
        self.taken = taken
        self.families = families

    def encode(self) -> bytes:
        return MAGIC + marshal.dumps((self.record, self.taken, self.families))

    @classmethod
    def decode(cls, data: bytes) -> Snapshot:
        if not data.startswith(MAGIC):
            raise SnapshotError("not a snapshot of this format/version")
        try:
            value = marshal.loads(memoryview(data)[len(MAGIC) :])
        except (EOFError, ValueError, TypeError) as exc:
            raise SnapshotError(f"undecodable snapshot: {exc}") from None
        if not (isinstance(value, tuple) and len(value) == 3):
            raise SnapshotError("snapshot is not a (record, taken, families) tuple")
        record, taken, families = value
        if not isinstance(record, dict) or not isinstance(taken, float) or not isinstance(families, list):
            raise SnapshotError("snapshot parts have the wrong types")
        for family in families:
            _check_family(family)
        return cls(record, taken, families)

    @classmethod
    def read(cls, path: Path) -> Snapshot | None:
        """The snapshot in ``path``, or None when there is no such file."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return cls.decode(data)

    def write(self, path: Path) -> None:
        """Atomically replace ``path``: a reader sees the old file or the new one, never a mix."""
        write_atomic(path, self.encode())


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


def _check_family(family: object) -> None:
    # Shape of the family and of its first sample: cheap, and enough to reject foreign data. Per-sample
    # surprises (a non-number deeper in) surface as TypeError in the merge, which rejects the whole source.
    if not (isinstance(family, tuple) and len(family) == 6):
        raise SnapshotError("family is not a 6-tuple")
    name, kind, doc, unit, policy, samples = family
    if not all(isinstance(x, str) for x in (name, kind, doc, unit, policy)) or not isinstance(samples, list):
        raise SnapshotError(f"family {name!r} has fields of the wrong types")
    if samples:
        sample = samples[0]
        if not (
            isinstance(sample, tuple)
            and len(sample) == 5
            and isinstance(sample[0], str)
            and isinstance(sample[1], tuple)
            and isinstance(sample[2], float)
        ):
            raise SnapshotError(f"family {name!r} has malformed samples")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def encode_families(families: Iterable[Metric], policy_of: Any = None, tick: Any = None) -> list[FamilyT]:
    """Metric families (as collectors yield them) to snapshot tuples. ``policy_of(name, type)`` names the gauge
    merge policy the owner declared (recorded with the family: the scraping worker merges with it);
    ``tick()`` is called per sample (a :class:`~stator.metrics.render.Pacer`)."""
    out: list[FamilyT] = []
    for family in families:
        policy = policy_of(family.name, family.type) if policy_of is not None else ""
        if isinstance(family, RowsMetric):  # already rows (a prometheus_client metric read by the hub)
            out.append((family.name, family.type, family.documentation, family.unit, policy, family.rows))
            continue
        samples: list[SampleT] = []
        append = samples.append
        for sample in family.samples:
            if getattr(sample, "native_histogram", None) is not None or sample.value is None:
                continue  # neither exposition format here carries native histograms
            labels = sample.labels
            ex = sample.exemplar
            append(
                (
                    sample.name,
                    tuple(sorted(labels.items())) if labels else (),
                    float(sample.value),
                    None if sample.timestamp is None else float(sample.timestamp),
                    None
                    if ex is None
                    else (tuple(sorted(ex.labels.items())), float(ex.value), _float_or_none(ex.timestamp)),
                )
            )
            if tick is not None:
                tick()
        out.append((family.name, family.type, family.documentation, family.unit, policy, samples))
    return out
