"""Turning a remote-write request body into validated series updates: snappy block → WriteRequest → updates.

Validation follows the remote-write 1.0 spec: a series' labels are non-empty, with names matching
``[a-zA-Z_][a-zA-Z0-9_]*`` (and ``__name__``'s value ``[a-zA-Z_:][a-zA-Z0-9_:]*``), every name and value
non-empty, names sorted and unique. Any violation rejects the whole request (:class:`WriteError`, a 400 that
senders do not retry) before anything is stored. Labels are decoded and checked only for series the store has not
seen in that exact encoding (see :mod:`stator.remotewrite.schema`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Container
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Batch:
    """One decoded request: per series (raw labels, latest value, its timestamp in ms) and the counts."""

    updates: list[tuple[RawLabels, float, int]] = field(default_factory=list)
    new: dict[RawLabels, Labels] = field(default_factory=dict)
    """Labels of the series the store did not know, decoded and validated."""
    series: int = 0
    samples: int = 0
    histograms: int = 0
    exemplars: int = 0
    metadata: int = 0


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


# One TimeSeries as Prometheus encodes it: its labels (field 1), then a single Sample (field 2: tag 0x12, length
# 10 + k, value as field 1 fixed64, timestamp as field 2 varint of k bytes) ending the message.
_TAIL: Final = re.compile(rb"(.*)\x12([\x0b-\x14])\x09(.{8})\x10([\x80-\xff]{0,9}[\x00-\x7f])", re.DOTALL)
_DOUBLE: Final = struct.Struct("<d").unpack


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


def decode(data: bytes, known: Container[RawLabels]) -> Batch:
    """Parse and validate a serialized ``WriteRequest``; ``known`` holds the label encodings already validated.

    The fast path: a series whose bytes are "labels, then one sample" (as Prometheus sends them) is split by one
    anchored regex (run in C) into its label bytes and its sample; when the store already holds those label bytes,
    that is all the work done for the series. Soundness: ``known`` only ever holds canonical encodings of label
    lists (built by :func:`_field1` from a full parse), so a hit means the prefix is exactly a label list. Every
    other series — new, several samples, exemplars, histograms, unusual encodings — is parsed in full.
    """
    try:
        request = OUTER.FromString(data)
    except DecodeError as exc:
        raise WriteError(400, "bad_protobuf", f"body is not a protobuf WriteRequest: {exc}") from None
    batch = Batch(metadata=len(request.metadata))
    updates = batch.updates
    append = updates.append
    new = batch.new
    times: dict[bytes, int] = {}  # one scrape's series share a timestamp: decode each distinct one once
    match = _TAIL.fullmatch
    slow = 0
    raw_series = request.timeseries
    for raw in raw_series:
        m = match(raw)
        if m is not None:
            key, length, value, stamp = m.groups()
            if length[0] == 10 + len(stamp) and (key in known or key in new):
                timestamp = times.get(stamp)
                if timestamp is None:
                    timestamp = times[stamp] = _varint(stamp)
                append((key, _DOUBLE(value)[0], timestamp))
                continue
        slow += _full(raw, batch, known)
    batch.series = len(raw_series)
    batch.samples = len(updates) - slow + batch.samples
    return batch


def _full(raw: bytes, batch: Batch, known: Container[RawLabels]) -> int:
    """Parse one series completely; record its update (if it has samples) and return 1 when it added one."""
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
        return 0
    batch.samples += len(samples)
    latest = samples[0]
    for s in samples:  # the latest by timestamp; among equal timestamps, the last one sent
        if s.timestamp >= latest.timestamp:
            latest = s
    batch.updates.append((key, latest.value, latest.timestamp))
    return 1


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
