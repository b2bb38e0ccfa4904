"""The pprof wire format (google/pprof ``proto/profile.proto``): a hand-written encoder and a small decoder.

Only what a profile needs: ``Profile``, ``ValueType``, ``Sample``, ``Label``, ``Location``, ``Line`` and
``Function``; no ``Mapping`` (Python code has no binary to map, and ``go tool pprof`` reads a mapping-less
profile — it only warns that the main binary's name is unknown). ``string_table[0]`` is always ``""`` and every
id is non-zero, the two rules ``go tool pprof`` enforces. Profiles are served gzipped, which every reader
(pprof, Parca, Pyroscope) accepts.

The decoder reads what the encoder writes (and any pprof file of the same shape): the continuous profiler keeps
its windows encoded and merges or filters them on request, and the tests read labels per sample with it.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LabelValue = str | int

# Profile field numbers
_SAMPLE_TYPE, _SAMPLE, _LOCATION, _FUNCTION, _STRING_TABLE = 1, 2, 4, 5, 6
_TIME_NANOS, _DURATION_NANOS, _PERIOD_TYPE, _PERIOD, _COMMENT, _DEFAULT_SAMPLE_TYPE = 9, 10, 11, 12, 13, 14


# -- wire primitives -----------------------------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _key(number: int, wire: int, out: bytearray) -> None:
    _varint((number << 3) | wire, out)


def _uint(number: int, value: int, out: bytearray) -> None:
    if value:
        _key(number, 0, out)
        _varint(value, out)


def _bytes(number: int, data: bytes | bytearray, out: bytearray) -> None:
    _key(number, 2, out)
    _varint(len(data), out)
    out += data


def _packed(number: int, values: Iterable[int], out: bytearray) -> None:
    body = bytearray()
    for v in values:
        _varint(v, body)
    if body:
        _bytes(number, body, out)


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes | memoryview) -> Iterable[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of a message; length-delimited values as memoryviews."""
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(view, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _read_varint(view, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            yield number, wire, view[pos : pos + length]
            pos += length
        elif wire == 1:
            yield number, wire, struct.unpack_from("<q", view, pos)[0]
            pos += 8
        elif wire == 5:
            yield number, wire, struct.unpack_from("<i", view, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value: int | memoryview) -> list[int]:
    """A repeated integer field, packed or not."""
    if wire == 0 and isinstance(value, int):
        return [_signed(value)]
    if isinstance(value, memoryview):
        out, pos = [], 0
        while pos < len(value):
            v, pos = _read_varint(value, pos)
            out.append(_signed(v))
        return out
    raise ValueError("bad repeated integer field")


# -- encoder -------------------------------------------------------------------------------------------------


class ProfileBuilder:
    """Accumulates one profile: interns strings, functions and locations; :meth:`encode` writes the bytes.

    ``add`` takes a stack leaf first as (function name, file name, line, function start line) frames.
    """

    def __init__(
        self,
        sample_types: Sequence[tuple[str, str]],
        *,
        period_type: tuple[str, str] | None = None,
        period: int = 0,
        time_nanos: int = 0,
        duration_nanos: int = 0,
        default_sample_type: str | None = None,
        comments: Sequence[str] = (),
    ) -> None:
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str, int], int] = {}
        self._locations: dict[tuple[int, int], int] = {}
        self._samples = bytearray()
        self.sample_types = [(self.string(t), self.string(u)) for t, u in sample_types]
        self.period_type = (self.string(period_type[0]), self.string(period_type[1])) if period_type else None
        self.period = period
        self.time_nanos = time_nanos
        self.duration_nanos = duration_nanos
        self.default_sample_type = self.string(default_sample_type) if default_sample_type else 0
        self.comments = [self.string(c) for c in comments]
        self.sample_count = 0

    def string(self, value: str) -> int:
        index = self._strings.get(value)
        if index is None:
            index = self._strings[value] = len(self._strings)
        return index

    def location(self, name: str, filename: str, line: int, start_line: int = 0) -> int:
        fkey = (name, filename, start_line)
        fid = self._functions.get(fkey)
        if fid is None:
            fid = self._functions[fkey] = len(self._functions) + 1
        lkey = (fid, line)
        lid = self._locations.get(lkey)
        if lid is None:
            lid = self._locations[lkey] = len(self._locations) + 1
        return lid

    def add(
        self,
        locations: Sequence[int],
        values: Sequence[int],
        labels: Mapping[str, LabelValue] | None = None,
    ) -> None:
        """One sample: location ids leaf first (from :meth:`location`), one value per sample type."""
        if len(values) != len(self.sample_types):
            raise ValueError(f"{len(values)} values for {len(self.sample_types)} sample types")
        body = bytearray()
        _packed(1, locations, body)
        _packed(2, values, body)
        for key, value in (labels or {}).items():
            label = bytearray()
            _uint(1, self.string(key), label)
            if isinstance(value, str):
                _uint(2, self.string(value), label)
            else:
                _uint(3, value, label)
            _bytes(3, label, body)
        _bytes(_SAMPLE, body, self._samples)
        self.sample_count += 1

    def add_stack(
        self,
        frames: Sequence[tuple[str, str, int, int]],
        values: Sequence[int],
        labels: Mapping[str, LabelValue] | None = None,
    ) -> None:
        self.add([self.location(*frame) for frame in frames], values, labels)

    def encode(self) -> bytes:
        out = bytearray()
        for t, u in self.sample_types:
            vt = bytearray()
            _uint(1, t, vt)
            _uint(2, u, vt)
            _bytes(_SAMPLE_TYPE, vt, out)
        out += self._samples
        for (fid, line), lid in self._locations.items():
            loc = bytearray()
            _uint(1, lid, loc)
            ln = bytearray()
            _uint(1, fid, ln)
            _uint(2, line, ln)
            _bytes(4, ln, loc)
            _bytes(_LOCATION, loc, out)
        for (name, filename, start_line), fid in self._functions.items():
            fn = bytearray()
            _uint(1, fid, fn)
            _uint(2, self.string(name), fn)
            _uint(3, self.string(name), fn)
            _uint(4, self.string(filename), fn)
            _uint(5, start_line, fn)
            _bytes(_FUNCTION, fn, out)
        # every string is interned before this point: the table is complete
        for s in self._strings:
            _bytes(_STRING_TABLE, s.encode("utf-8", "surrogateescape"), out)
        _uint(_TIME_NANOS, self.time_nanos, out)
        _uint(_DURATION_NANOS, self.duration_nanos, out)
        if self.period_type is not None:
            vt = bytearray()
            _uint(1, self.period_type[0], vt)
            _uint(2, self.period_type[1], vt)
            _bytes(_PERIOD_TYPE, vt, out)
        _uint(_PERIOD, self.period, out)
        if self.comments:
            _packed(_COMMENT, self.comments, out)
        _uint(_DEFAULT_SAMPLE_TYPE, self.default_sample_type, out)
        return bytes(out)

    def gzipped(self, level: int = 6) -> bytes:
        return gzip.compress(self.encode(), compresslevel=level, mtime=0)


# -- decoder -------------------------------------------------------------------------------------------------


@dataclass
class Frame:
    name: str
    filename: str
    line: int
    start_line: int = 0


@dataclass
class Sample:
    stack: list[Frame]  # leaf first
    values: list[int]
    labels: dict[str, LabelValue]


@dataclass
class Profile:
    sample_types: list[tuple[str, str]]
    samples: list[Sample] = field(default_factory=list)
    time_nanos: int = 0
    duration_nanos: int = 0
    period_type: tuple[str, str] | None = None
    period: int = 0
    comments: list[str] = field(default_factory=list)
    default_sample_type: str = ""

    def total(self, sample_type: str) -> int:
        index = [t for t, _ in self.sample_types].index(sample_type)
        return sum(s.values[index] for s in self.samples)


def decode(data: bytes) -> Profile:
    """Parse a pprof profile (gzipped or not). Raises ``ValueError`` on malformed input."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings: list[str] = []
    raw_types: list[tuple[int, int]] = []
    raw_samples: list[tuple[list[int], list[int], list[tuple[int, int, int]]]] = []
    locations: dict[int, list[tuple[int, int]]] = {}
    functions: dict[int, tuple[int, int, int]] = {}
    scalars: dict[int, int] = {}
    period_type: tuple[int, int] | None = None
    comments: list[int] = []

    def value_type(buf: memoryview) -> tuple[int, int]:
        got = {n: v for n, _, v in _fields(buf) if isinstance(v, int)}
        return got.get(1, 0), got.get(2, 0)

    for number, wire, value in _fields(data):
        if number == _STRING_TABLE and isinstance(value, memoryview):
            strings.append(bytes(value).decode("utf-8", "surrogateescape"))
        elif number == _SAMPLE_TYPE and isinstance(value, memoryview):
            raw_types.append(value_type(value))
        elif number == _SAMPLE and isinstance(value, memoryview):
            locs: list[int] = []
            vals: list[int] = []
            labels: list[tuple[int, int, int]] = []
            for n, w, v in _fields(value):
                if n == 1:
                    locs.extend(_ints(w, v))
                elif n == 2:
                    vals.extend(_ints(w, v))
                elif n == 3 and isinstance(v, memoryview):
                    got = {ln: lv for ln, _, lv in _fields(v) if isinstance(lv, int)}
                    labels.append((got.get(1, 0), got.get(2, 0), _signed(got.get(3, 0))))
            raw_samples.append((locs, vals, labels))
        elif number == _LOCATION and isinstance(value, memoryview):
            lid, lines = 0, []
            for n, _, v in _fields(value):
                if n == 1 and isinstance(v, int):
                    lid = v
                elif n == 4 and isinstance(v, memoryview):
                    got = {ln: lv for ln, _, lv in _fields(v) if isinstance(lv, int)}
                    lines.append((got.get(1, 0), _signed(got.get(2, 0))))
            locations[lid] = lines
        elif number == _FUNCTION and isinstance(value, memoryview):
            got = {n: v for n, _, v in _fields(value) if isinstance(v, int)}
            functions[got.get(1, 0)] = (got.get(2, 0), got.get(4, 0), got.get(5, 0))
        elif number == _PERIOD_TYPE and isinstance(value, memoryview):
            period_type = value_type(value)
        elif number == _COMMENT:
            comments.extend(_ints(wire, value))
        elif isinstance(value, int):
            scalars[number] = value
    if not strings or strings[0] != "":
        raise ValueError("string_table[0] must be empty")

    def s(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ValueError(f"string index {index} out of range")
        return strings[index]

    frames_of: dict[int, list[Frame]] = {}
    for lid, lines in locations.items():
        frames = []
        for fid, line in reversed(lines):  # inlined frames are stored caller-last
            name, filename, start = functions.get(fid, (0, 0, 0))
            frames.append(Frame(s(name), s(filename), line, start))
        frames_of[lid] = frames
    profile = Profile(
        sample_types=[(s(t), s(u)) for t, u in raw_types],
        time_nanos=_signed(scalars.get(_TIME_NANOS, 0)),
        duration_nanos=_signed(scalars.get(_DURATION_NANOS, 0)),
        period_type=(s(period_type[0]), s(period_type[1])) if period_type else None,
        period=_signed(scalars.get(_PERIOD, 0)),
        comments=[s(c) for c in comments],
        default_sample_type=s(scalars.get(_DEFAULT_SAMPLE_TYPE, 0)),
    )
    for locs, vals, labels in raw_samples:
        stack = [frame for lid in locs for frame in frames_of.get(lid, [])]
        profile.samples.append(
            Sample(stack, vals, {s(k): (s(sv) if sv else num) for k, sv, num in labels}),
        )
    return profile


def merge(
    profiles: Sequence[Profile],
    *,
    keep: Callable[[Sample], bool] | None = None,
    comments: Sequence[str] = (),
) -> ProfileBuilder:
    """One profile holding the samples of ``profiles`` (same sample types) that ``keep`` accepts.

    Time is the earliest start, duration spans to the latest end, and the period is the duration-weighted mean.
    """
    if not profiles:
        raise ValueError("nothing to merge")
    types = profiles[0].sample_types
    for p in profiles[1:]:
        if p.sample_types != types:
            raise ValueError("profiles with different sample types cannot be merged")
    start = min(p.time_nanos for p in profiles)
    end = max(p.time_nanos + p.duration_nanos for p in profiles)
    weight = sum(p.duration_nanos for p in profiles)
    period = round(sum(p.period * p.duration_nanos for p in profiles) / weight) if weight else profiles[0].period
    builder = ProfileBuilder(
        types,
        period_type=profiles[0].period_type,
        period=period,
        time_nanos=start,
        duration_nanos=end - start,
        default_sample_type=profiles[0].default_sample_type or None,
        comments=comments,
    )
    summed: dict[tuple[tuple[int, ...], tuple[tuple[str, LabelValue], ...]], list[int]] = {}
    for p in profiles:
        for sample in p.samples:
            if keep is None or keep(sample):
                locations = tuple(builder.location(f.name, f.filename, f.line, f.start_line) for f in sample.stack)
                key = (locations, tuple(sorted(sample.labels.items())))
                values = summed.get(key)
                if values is None:
                    summed[key] = list(sample.values)
                else:
                    for i, v in enumerate(sample.values):
                        values[i] += v
    for (locations, labels), values in summed.items():
        builder.add(locations, values, dict(labels))
    return builder
