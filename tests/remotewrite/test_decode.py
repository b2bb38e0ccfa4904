"""The decoder against the real prompb schema: random WriteRequests encoded by the protobuf runtime decode to the
same series and latest samples, on the first sight of a series (full parse) and the next (fast path); random
bytes only ever raise WriteError. And a span per write."""

from __future__ import annotations

import asyncio
import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from stator.logs import Logger, MemorySink
from stator.remotewrite import decode as decode_module
from stator.remotewrite.api import Receiver
from stator.remotewrite.decode import WriteError, decode
from stator.remotewrite.schema import FAST, PROMPB, STALE_NAN_BITS
from stator.remotewrite.store import Store
from tests.remotewrite.conftest import HEADERS, snappy, write_request

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True).filter(lambda n: n != "__name__")
values = st.text(min_size=1, max_size=20)
metric = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
label_sets = st.tuples(metric, st.dictionaries(names, values, max_size=6)).map(
    lambda t: tuple(sorted({"__name__": t[0], **t[1]}.items()))
)
samples = st.lists(
    st.tuples(st.floats(allow_nan=True), st.integers(min_value=-(2**63), max_value=2**63 - 1)), min_size=1, max_size=3
)
requests = st.lists(st.tuples(label_sets, samples), max_size=20)


def expected(series: list[tuple[Any, list[tuple[float, int]]]]) -> list[tuple[Any, float, int]]:
    out = []
    for labels, ss in series:
        latest = ss[0]
        for s in ss:
            if s[1] >= latest[1]:
                latest = s
        out.append((labels, latest[0], latest[1]))
    return out


def same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_decode_matches_the_real_schema(series: list[tuple[Any, list[tuple[float, int]]]]) -> None:
    data = write_request([(list(labels), ss) for labels, ss in series])
    store = Store(10_000)
    for round_ in range(2):  # first sight: full parse and validation; second: the fast path through known keys
        batch = decode(data, store.aliases)
        assert batch.series == len(series)
        assert batch.samples == sum(len(ss) for _, ss in series)
        labels_of = {**{raw: s.labels for raw, s in store.aliases.items()}, **batch.new}
        got = [(labels_of[raw], value, ts) for raw, value, ts in batch.updates]
        want = expected(series)
        assert [g[0] for g in got] == [w[0] for w in want]
        assert all(same(g[1], w[1]) and g[2] == w[2] for g, w in zip(got, want, strict=True))
        if round_ == 1:
            assert batch.new == {}
        store.apply(batch)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_write_error(data: bytes) -> None:
    error: WriteError | None = None
    try:
        decode(data, set())
    except WriteError as exc:
        error = exc
    assert error is None or (error.status == 400 and error.reason in ("bad_protobuf", "invalid_labels"))


def test_native_histograms_and_metadata_are_accepted_and_counted() -> None:
    label = PROMPB.Label(name="__name__", value="h").SerializeToString()
    req = FAST.WriteRequest()
    req.timeseries.add(labels=[label], histograms=[b"\x08\x01"])  # a native histogram: counted, not stored
    req.metadata.add(type=1, metric_family_name="h", help="x")
    batch = decode(req.SerializeToString(), set())
    assert batch.histograms == 1 and batch.samples == 0 and batch.metadata == 1 and len(batch.new) == 1
    assert batch.updates == []


def test_a_span_per_write_with_counts() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    receiver = Receiver(
        max_series=10,
        max_body=1 << 20,
        max_decoded=1 << 22,
        rate=0,
        burst=0,
        lookback=300,
        logger=Logger(app_id="t", run_id="t", sink=MemorySink()),
        registry=CollectorRegistry(),
        tracer=provider.get_tracer("t"),
    )
    body = snappy(write_request([([("__name__", "up"), ("job", "x")], [(1.0, 1)]), ([("__name__", "up")], [(1.0, 1)])]))

    async def post(payload: bytes) -> int:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": payload, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        await receiver.write({"type": "http", "method": "POST", "headers": headers}, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(post(body)) == 204
    assert asyncio.run(post(b"junk")) == 400
    ok, bad = exporter.get_finished_spans()
    assert ok.name == "remote_write" and ok.attributes is not None
    assert ok.attributes["stator.remote_write.series"] == 2 and ok.attributes["stator.remote_write.samples"] == 2
    assert ok.attributes["stator.remote_write.new_series"] == 2
    assert bad.attributes is not None and bad.attributes["stator.remote_write.rejected"] == "bad_snappy"
    assert not bad.status.is_ok
    assert len(receiver.store) == 2


STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
NOW = 1_764_650_000_000  # ms timestamps of this century are 6-byte varints, as in every Prometheus batch
prom_values = st.one_of(
    st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, 1.0, STALE, math.inf]), st.integers(0, 10**6).map(float)
)
# Mostly what Prometheus sends (one sample per series, one timestamp per scrape), sometimes what it may: several
# samples, an exemplar, a timestamp of another varint length, the same series twice.
prom_stamps = st.one_of(st.sampled_from([NOW, NOW + 15_000]), st.sampled_from([0, 1, 300, -5, 2**62]))
prom_series = st.tuples(
    st.integers(0, 7),  # which label set (few of them: repeats within a request happen)
    st.lists(st.tuples(prom_values, prom_stamps), min_size=0, max_size=3),
    st.booleans(),  # an exemplar
)


def prom_request(pool: list[Any], entries: list[tuple[int, list[tuple[float, int]], bool]]) -> bytes:
    req = PROMPB.WriteRequest()
    for which, ss, exemplar in entries:
        ts = req.timeseries.add()
        for name, value in pool[which]:
            ts.labels.add(name=name, value=value)
        for value, stamp in ss:
            ts.samples.add(value=value, timestamp=stamp)
        if exemplar:
            ts.exemplars.add(value=1.0, timestamp=NOW).labels.add(name="trace_id", value="abc")
    return bytes(req.SerializeToString())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(label_sets, min_size=8, max_size=8, unique=True),
    st.lists(st.lists(prom_series, max_size=30), min_size=1, max_size=4),
    st.data(),
)
def test_prometheus_shaped_requests_store_what_a_sequential_reference_stores(
    pool: list[Any], rounds: list[list[tuple[int, list[tuple[float, int]], bool]]], data: st.DataObject
) -> None:
    """Batches in Prometheus's shape (the receiver's fast path), mixed with the shapes it does not take, decode
    to the same updates as the real schema and leave the store as a sample-by-sample reference leaves it."""
    store = Store(10_000)
    reference: dict[Any, tuple[float, int]] = {}
    sent: set[Any] = set()

    def scrape(stamp: int, entry: tuple[int, list[tuple[float, int]], bool]) -> Any:
        which, _, exemplar = entry
        choice = data.draw(st.integers(0, 3))
        if choice == 0:  # as drawn: several samples, none, other timestamps
            return entry
        return which, [(data.draw(prom_values), stamp)], exemplar and choice == 1  # one sample at the scrape's time

    for drawn in rounds:
        stamp = data.draw(st.sampled_from([NOW, NOW + 1, NOW + 2**20]))
        entries = [scrape(stamp, e) for e in drawn]
        sent.update(pool[w] for w, _, _ in entries)
        batch = decode(prom_request(pool, entries), store.aliases)
        assert batch.series == len(entries)
        assert batch.samples == sum(len(ss) for _, ss, _ in entries)
        assert batch.exemplars == sum(ex for _, _, ex in entries)
        labels_of = {**{raw: s.labels for raw, s in store.aliases.items()}, **batch.new}
        got = [(labels_of[raw], value, ts) for raw, value, ts in batch.updates]
        want = expected([(pool[w], ss) for w, ss, _ in entries if ss])
        assert [g[0] for g in got] == [w[0] for w in want]
        assert all(same(g[1], w[1]) and g[2] == w[2] for g, w in zip(got, want, strict=True))
        store.apply(batch)
        for labels, value, ts in want:  # the store's rule, one sample at a time
            held = reference.get(labels)
            if held is None or ts > held[1] or (ts == held[1] and value != held[0]):
                reference[labels] = (value, ts)
        assert {s.labels for s in store} == sent  # a series sent without samples is known, with no value
        for s in store:
            if s.timestamp_ms == -(2**63):
                assert s.labels not in reference
                continue
            assert same(s.value, reference[s.labels][0]) and s.timestamp_ms == reference[s.labels][1]
            assert s.stale == (struct.pack("<d", s.value) == struct.pack("<Q", STALE_NAN_BITS))


def test_known_series_in_prometheus_shape_are_never_parsed_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path takes a whole scrape of known series — zero values (left out by the encoder), NaN, staleness
    markers included — without a per-series protobuf parse; a new series among them is parsed, alone."""
    pool = [(("__name__", f"m{i % 7}"), ("instance", f"10.0.0.{i}:9100"), ("job", "node")) for i in range(600)]
    values = [0.0, -0.0, 1.5, math.nan, STALE, -math.inf, 2.0**70]
    first = [(i, [(values[i % len(values)], NOW)], False) for i in range(500)]
    store = Store(10_000)
    store.apply(decode(prom_request(pool, first), store.aliases))
    parsed: list[bytes] = []
    real_full = decode_module._full

    def counting(raw: bytes, *args: Any) -> Any:
        parsed.append(raw)
        return real_full(raw, *args)

    monkeypatch.setattr(decode_module, "_full", counting)
    newer = [(i, [(values[(i + 1) % len(values)], NOW + 15_000)], False) for i in range(500)]
    newer.insert(250, (599, [(7.0, NOW + 15_000)], False))
    batch = decode(prom_request(pool, newer), store.aliases)
    assert len(parsed) == 1 and list(batch.new.values()) == [pool[599]]
    applied = store.apply(batch)
    assert applied.stored == 501 and applied.new_series == 1 and batch.samples == 501
    got = {s.labels: s for s in store}
    for i in range(500):
        assert same(got[pool[i]].value, values[(i + 1) % len(values)]) and got[pool[i]].timestamp_ms == NOW + 15_000
    assert sum(s.stale for s in store) == sum(1 for i in range(500) if (i + 1) % len(values) == 4)


def test_a_batch_larger_than_one_unpack_call_decodes_the_same() -> None:
    """Over 4096 series the values are unpacked tail by tail instead of by one struct call: same result."""
    pool = [(("__name__", "m"), ("i", str(i))) for i in range(5000)]
    store = Store(10_000)
    store.apply(decode(prom_request(pool, [(i, [(1.0, NOW)], False) for i in range(5000)]), store.aliases))
    batch = decode(prom_request(pool, [(i, [(i * 0.5, NOW + 1)], False) for i in range(5000)]), store.aliases)
    assert batch.new == {} and batch.samples == 5000
    assert batch.values == [i * 0.5 for i in range(5000)] and batch.stamps == [NOW + 1] * 5000
    assert store.apply(batch).stored == 5000
