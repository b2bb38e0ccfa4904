"""The pprof encoder and decoder, checked against each other and against ``go tool pprof``."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stator.profiling.pprof import ProfileBuilder, decode, merge
from tests.profiling.conftest import Pprof

TYPES = [("cpu-samples", "count"), ("cpu", "nanoseconds")]


def _profile() -> ProfileBuilder:
    b = ProfileBuilder(TYPES, period_type=("wall", "nanoseconds"), period=10_000_000, time_nanos=1, duration_nanos=2)
    leaf = ("pkg.leaf_function", "/src/pkg.py", 12, 10)
    root = ("pkg.main", "/src/pkg.py", 40, 38)
    b.add_stack([leaf, root], [3, 30_000_000], {"span_id": "00f067aa0ba902b7", "route": "/items/{id}"})
    b.add_stack([root], [1, 10_000_000], {"thread": "MainThread", "n": 7})
    return b


def test_roundtrip_keeps_stacks_values_and_labels() -> None:
    data = _profile().gzipped()
    assert data[:2] == b"\x1f\x8b"
    p = decode(data)
    assert p.sample_types == TYPES
    assert p.period == 10_000_000 and p.period_type == ("wall", "nanoseconds")
    first, second = p.samples
    assert [f.name for f in first.stack] == ["pkg.leaf_function", "pkg.main"]
    assert first.stack[0].line == 12 and first.stack[0].start_line == 10
    assert first.values == [3, 30_000_000]
    assert first.labels == {"span_id": "00f067aa0ba902b7", "route": "/items/{id}"}
    assert second.labels == {"thread": "MainThread", "n": 7}
    assert p.total("cpu") == 40_000_000


def test_string_table_starts_empty_and_ids_are_nonzero() -> None:
    raw = gzip.decompress(_profile().gzipped())
    # first string_table entry (field 6, wire type 2) has length 0
    assert b"\x32\x00" in raw
    with pytest.raises(ValueError, match="string_table"):
        decode(b"\x32\x01x")


def test_merge_filters_and_sums() -> None:
    a, b = decode(_profile().gzipped()), decode(_profile().gzipped())
    merged = decode(merge([a, b], keep=lambda s: s.labels.get("span_id") == "00f067aa0ba902b7").gzipped())
    assert len(merged.samples) == 1
    assert merged.samples[0].values == [6, 60_000_000]
    with pytest.raises(ValueError):
        merge([])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.text(min_size=1, max_size=20), st.integers(0, 10_000)), min_size=1, max_size=8),
            st.integers(0, 2**62),
            st.dictionaries(st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8), max_size=3),
        ),
        max_size=10,
    )
)
def test_roundtrip_property(samples: list[tuple[list[tuple[str, int]], int, dict[str, str]]]) -> None:
    b = ProfileBuilder([("samples", "count")])
    for frames, value, labels in samples:
        b.add_stack([(name, "f.py", line, 0) for name, line in frames], [value], labels)
    p = decode(b.encode())
    assert [([(f.name, f.line) for f in s.stack], s.values[0], s.labels) for s in p.samples] == samples


def test_go_tool_pprof_reads_it(pprof: Pprof) -> None:
    path = pprof.save(_profile().gzipped())
    top = pprof("-top", path)
    assert "pkg.leaf_function" in top
    tags = pprof("-tags", path)
    assert "00f067aa0ba902b7" in tags and "/items/{id}" in tags
    raw = pprof("-raw", path)
    assert "pkg.main" in raw
