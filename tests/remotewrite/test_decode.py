"""The decoder against the real prompb schema: random WriteRequests encoded by the protobuf runtime decode to the
same series and latest samples, on the first sight of a series (full parse) and the next (fast path); random
bytes only ever raise WriteError. And a span per write."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from stator.logs import Logger, MemorySink
from stator.remotewrite.api import Receiver
from stator.remotewrite.decode import WriteError, decode
from stator.remotewrite.schema import FAST, PROMPB
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
