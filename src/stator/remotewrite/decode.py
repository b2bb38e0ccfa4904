"""Turning a remote-write request body into validated series updates: snappy block → WriteRequest → updates.

Validation follows the remote-write 1.0 spec: a series' labels are non-empty, with names matching
``[a-zA-Z_][a-zA-Z0-9_]*`` (and ``__name__``'s value ``[a-zA-Z_:][a-zA-Z0-9_:]*``), every name and value
non-empty, names sorted and unique. Any violation rejects the whole request (:class:`WriteError`, a 400 that
senders do not retry) before anything is stored. Labels are decoded and checked only for series the store has not
seen in that exact encoding (see :mod:`stator.remotewrite.schema`).
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import struct
from collections.abc import Container
from operator import itemgetter
from typing import Final

import cramjam

from stator.remotewrite.schema import FAST, OUTER, PROMPB, DecodeError

RawLabels = bytes
"""A series' labels in their canonical encoding, as a run of ``TimeSeries`` field 1 (the store's lookup key)."""
Labels = tuple[tuple[str, str], ...]
"""A series' labels decoded and validated: sorted ``(name, value)`` pairs."""

LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class WriteError(Exception):
    """A request the receiver refuses: ``status`` for the response, ``reason`` for the metrics and logs."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class Batch:
    """One decoded request: per series, in request order, its raw labels, latest value and that value's timestamp
    in ms (three parallel lists, the store's input), the labels of the series new to the store, and the counts."""

    __slots__ = ("exemplars", "histograms", "keys", "metadata", "new", "samples", "series", "stamps", "values")

    def __init__(self, *, series: int = 0, metadata: int = 0) -> None:
        self.keys: list[RawLabels] = []
        self.values: list[float] = []
        self.stamps: list[int] = []
        self.new: dict[RawLabels, Labels] = {}
        """Labels of the series the store did not know, decoded and validated."""
        self.series = series
        self.samples = 0
        self.histograms = 0
        self.exemplars = 0
        self.metadata = metadata

    @property
    def updates(self) -> list[tuple[RawLabels, float, int]]:
        """``(raw labels, value, timestamp ms)`` per series with samples, in request order."""
        return list(zip(self.keys, self.values, self.stamps, strict=True))


def decompress(body: bytes, max_decoded: int) -> bytes:
    """Snappy *block* format (not framed), as the spec requires; the declared size is checked before decoding."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise WriteError(400, "bad_snappy", f"body is not snappy block-compressed: {exc}") from None
    if size > max_decoded:
        raise WriteError(413, "too_large", f"decompressed size {size} exceeds the limit of {max_decoded} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise WriteError(400, "bad_snappy", f"body is not snappy block-compressed: {exc}") from None


def _varint(data: bytes) -> int:
    result = 0
    shift = 0
    for byte in data:
        result |= (byte & 0x7F) << shift
        shift += 7
    return result - (1 << 64) if result >= 1 << 63 else result


def _field1(element: bytes) -> bytes:
    """``element`` framed as field 1, length-delimited, with a minimal length varint (the canonical encoding)."""
    n = len(element)
    head = bytearray(b"\x0a")
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + element


class _Shape:
    """The tail Prometheus ends every ``TimeSeries`` with when the timestamp varint is ``k`` bytes long.

    ``size`` bytes: ``12 k+10 09 <value: 8 bytes> 10 <timestamp: k bytes>`` — field 2, one ``Sample`` of a
    fixed64 value and a varint timestamp. A zero value is omitted by proto3 encoders, which leaves the shorter
    ``12 k+1 10 <timestamp>`` (``zero``). The checks run per *column* of the tails laid end to end (the byte at
    one offset of every tail, one C call each): ``checks`` finds the tails whose tag bytes are wrong, ``stamp``
    those whose timestamp is not a ``k``-byte varint.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.size = 12 + k
        self.zero = bytes((0x12, k + 1, 0x10))
        tags = [(0, 0x12), (1, 10 + k), (2, 0x09), (11, 0x10)]
        self.checks = [(offset, byte, re.compile(b"[^" + re.escape(bytes((byte,))) + b"]")) for offset, byte in tags]
        continuation = re.compile(rb"[\x00-\x7f]")
        self.stamp = [(12 + j, continuation) for j in range(k - 1)] + [(11 + k, re.compile(rb"[\x80-\xff]"))]
        self.key = itemgetter(slice(None, -self.size))
        self.tail = itemgetter(slice(-self.size, None))
        self.stamp_of = itemgetter(slice(-k, None))


_SHAPES: Final = {k: _Shape(k) for k in range(1, 11)}


_FIRST: Final = itemgetter(0)
_ONE_CALL: Final = 4096
"""Up to this many series, a request's values are unpacked by one ``struct`` call (32 bytes of format per series,
cached by batch size: senders repeat theirs); beyond, per tail."""


@functools.lru_cache(maxsize=32)
def _unpacker(k: int, n: int) -> struct.Struct:
    return struct.Struct("<" + f"3xd{k + 1}x" * n)


def _values(k: int, n: int, tails: bytes) -> list[float]:
    """The values of ``n`` tails of shape ``k`` laid end to end."""
    if n <= _ONE_CALL:
        return list(_unpacker(k, n).unpack(tails))
    return list(map(_FIRST, _unpacker(k, 1).iter_unpack(tails)))


def _stamp_length(raw: bytes) -> int:
    """Length of the varint ``raw`` ends with (a timestamp's, in the Prometheus shape)."""
    k = 1
    while k < 10 and k < len(raw) and raw[-k - 1] >= 0x80:
        k += 1
    return k


def decode(data: bytes, known: Container[RawLabels]) -> Batch:
    """Parse and validate a serialized ``WriteRequest``; ``known`` holds the label encodings already validated.

    The fast path works on the whole request at once, in C calls over lists, not per series: every series is
    cut into "its labels" and "the tail of one sample" at the length Prometheus's tail has (the timestamp varint
    length is taken from the first series); the tails are checked column by column and their values unpacked by
    one ``struct`` call; a request's series almost always share one timestamp, decoded once. A series takes that
    path when its tail has the shape and its label bytes are ones the store already holds. Soundness: ``known``
    only ever holds canonical encodings of label lists (built by :func:`_field1` from a full parse), so a hit
    means the prefix is exactly a label list and the series is "those labels, then that one sample". Every other
    series — new, several samples, exemplars, histograms, unusual encodings — is parsed in full, in order.
    """
    try:
        request = OUTER.FromString(data)
    except DecodeError as exc:
        raise WriteError(400, "bad_protobuf", f"body is not a protobuf WriteRequest: {exc}") from None
    series = list(request.timeseries)
    n = len(series)
    batch = Batch(series=n, metadata=len(request.metadata))
    if not n:
        return batch
    shape = _SHAPES[_stamp_length(series[0])]
    size = shape.size
    tails = b"".join(map(shape.tail, series))
    if len(tails) != n * size:  # a series shorter than a tail: no columns to check, parse everything
        slow: set[int] = set(range(n))
        keys: list[bytes] = [b""] * n
        values: list[float] = [0.0] * n
        stamps: list[int] = [0] * n
    else:
        slow = set()
        bad_tag: set[int] = set()
        for offset, byte, wrong in shape.checks:
            column = tails[offset::size]
            if column.count(byte) != n:
                bad_tag.update(m.start() for m in wrong.finditer(column))
        for offset, wrong in shape.stamp:
            column = tails[offset::size]
            if wrong.search(column) is not None:
                slow.update(m.start() for m in wrong.finditer(column))
        keys = list(map(shape.key, series))
        values = _values(shape.k, n, tails)
        k = shape.k
        first = tails[size - k : size]
        if all(tails[offset::size].count(first[j]) == n for j, offset in enumerate(range(size - k, size))):
            stamps = [_varint(first)] * n  # one scrape: one timestamp for the whole request
        else:
            raw_stamps = list(map(shape.stamp_of, series))
            table = {s: _varint(s) for s in set(raw_stamps)}
            stamps = list(map(table.__getitem__, raw_stamps))
        zero = shape.zero
        for i in bad_tag - slow:  # value 0.0: the encoder left it out
            raw = series[i]
            if raw[-k - 3 : -k] == zero:
                keys[i] = raw[: -k - 3]
                values[i] = 0.0
            else:
                slow.add(i)
    if slow or not all(map(known.__contains__, keys)):
        slow.update(itertools.compress(range(n), map(operator.not_, map(known.__contains__, keys))))
        _slow_path(series, sorted(slow), batch, known, keys, values, stamps)
    else:
        batch.samples = n
    batch.keys = keys
    batch.values = values
    batch.stamps = stamps
    return batch


def _slow_path(
    series: list[bytes],
    slow: list[int],
    batch: Batch,
    known: Container[RawLabels],
    keys: list[bytes],
    values: list[float],
    stamps: list[int],
) -> None:
    """Parse the series at the indices ``slow`` in full (in request order) and patch the columns in place."""
    empty: list[int] = []
    samples = len(keys) - len(slow)
    for i in slow:
        update = _full(series[i], batch, known)
        if update is None:
            empty.append(i)
            continue
        keys[i], values[i], stamps[i], count = update
        samples += count
    batch.samples = samples
    if empty:  # series with no samples (native histograms only): nothing to store
        for i in reversed(empty):
            del keys[i], values[i], stamps[i]


def _full(raw: bytes, batch: Batch, known: Container[RawLabels]) -> tuple[bytes, float, int, int] | None:
    """Parse one series completely: its key, latest value and timestamp, and its sample count (None: no samples)."""
    try:
        ts = FAST.TimeSeries.FromString(raw)
    except DecodeError as exc:
        raise WriteError(400, "bad_protobuf", f"invalid TimeSeries message: {exc}") from None
    elements = tuple(ts.labels)
    key = b"".join(_field1(e) for e in elements)
    if key not in known and key not in batch.new:
        batch.new[key] = validate(elements)
    batch.exemplars += len(ts.exemplars)
    samples = ts.samples
    if not samples:
        batch.histograms += len(ts.histograms)
        return None
    latest = samples[0]
    for s in samples:  # the latest by timestamp; among equal timestamps, the last one sent
        if s.timestamp >= latest.timestamp:
            latest = s
    return key, latest.value, latest.timestamp, len(samples)


def validate(raw: tuple[bytes, ...]) -> Labels:
    """Decode one series' labels and check them against the spec; raise :class:`WriteError` when invalid."""
    if not raw:
        raise WriteError(400, "invalid_labels", "series has no labels")
    labels: list[tuple[str, str]] = []
    previous = ""
    for element in raw:
        try:
            label = PROMPB.Label.FromString(element)
        except DecodeError as exc:
            raise WriteError(400, "bad_protobuf", f"invalid Label message: {exc}") from None
        name: str = label.name
        value: str = label.value
        if not name:
            raise WriteError(400, "invalid_labels", "empty label name")
        if not value:
            raise WriteError(400, "invalid_labels", f"label {name!r} has an empty value")
        if name <= previous:
            problem = "duplicate label name" if name == previous else "labels not sorted by name"
            raise WriteError(400, "invalid_labels", f"{problem}: {previous!r} then {name!r}")
        if LABEL_NAME.fullmatch(name) is None:
            raise WriteError(400, "invalid_labels", f"invalid label name {name!r}")
        if name == "__name__" and METRIC_NAME.fullmatch(value) is None:
            raise WriteError(400, "invalid_labels", f"invalid metric name {value!r}")
        labels.append((name, value))
        previous = name
    return tuple(labels)
