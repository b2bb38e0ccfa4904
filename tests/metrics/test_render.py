"""Our encoder against prometheus_client's: byte-identical output on hypothesis-generated registries."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.samples import Exemplar, NativeHistogram, Timestamp

from stator.metrics.render import Encoder, Pacer, render_plain_registry, self_check

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
COLON_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,4}:[a-z0-9_]{1,4}", fullmatch=True)
LABEL = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(lambda n: n not in ("le", "quantile"))
# Any text that UTF-8 can encode, with the three characters the formats escape made likely.
TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from('\\\n"')), max_size=12)
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e-9, 123456789.0, 1e21, 0.1 + 0.2]),
)
POSITIVE = st.floats(min_value=0, max_value=1e15, allow_nan=False)
TIMESTAMP = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.builds(Timestamp, st.integers(0, 4_000_000_000), st.integers(0, 999_999_999)),
)


@st.composite
def exemplar(draw: st.DrawFn) -> dict[str, str] | None:
    if not draw(st.booleans()):
        return None
    labels = draw(st.dictionaries(LABEL, st.text(alphabet='ab"\\\n é', max_size=6), max_size=2))
    return labels


@st.composite
def wrapper_metric(draw: st.DrawFn, registry: CollectorRegistry, name: str) -> None:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "info", "enum"]))
    labelnames = draw(st.lists(LABEL, max_size=3, unique=True))
    doc = draw(TEXT)
    unit = draw(st.sampled_from(["", "", "seconds", "bytes"])) if kind not in ("info", "enum") else ""
    try:
        if kind == "counter":
            metric: Any = Counter(name, doc, labelnames, unit=unit, registry=registry)
        elif kind == "gauge":
            metric = Gauge(name, doc, labelnames, unit=unit, registry=registry)
        elif kind == "histogram":
            buckets = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=4, unique=True))
            metric = Histogram(name, doc, labelnames, unit=unit, buckets=sorted(buckets), registry=registry)
        elif kind == "summary":
            metric = Summary(name, doc, labelnames, unit=unit, registry=registry)
        elif kind == "info":
            metric = Info(name, doc, labelnames, registry=registry)
        else:
            states = draw(st.lists(TEXT.filter(bool), min_size=1, max_size=3, unique=True))
            metric = Enum(name, doc, labelnames, states=states, registry=registry)
    except ValueError:  # a name or label prometheus_client itself refuses (reserved, clashing...)
        return
    children = draw(st.lists(st.tuples(*[TEXT for _ in labelnames]), max_size=4)) if labelnames else [()]
    for values in children:
        child = metric.labels(*values) if labelnames else metric
        if kind == "counter":
            child.inc(draw(POSITIVE), exemplar=draw(exemplar()))
        elif kind == "gauge":
            child.set(draw(FLOAT))
        elif kind == "histogram":
            for _ in range(draw(st.integers(0, 3))):
                child.observe(draw(st.floats(-1e7, 1e7, allow_nan=False)), exemplar=draw(exemplar()))
        elif kind == "summary":
            child.observe(draw(st.floats(-1e7, 1e7, allow_nan=False)))
        elif kind == "info":
            with contextlib.suppress(ValueError):
                child.info(draw(st.dictionaries(LABEL, TEXT, max_size=2)))
        else:
            child.state(draw(st.sampled_from(metric._states)))


@st.composite
def custom_family(draw: st.DrawFn, name: str) -> Metric:
    kind = draw(st.sampled_from(["gauge", "counter", "histogram", "summary", "info", "stateset", "gh", "unknown"]))
    doc = draw(TEXT)
    labels = draw(st.lists(LABEL, max_size=2, unique=True))
    rows = draw(st.lists(st.tuples(*[TEXT for _ in labels]), min_size=0, max_size=3))
    ts = draw(TIMESTAMP)
    family: Metric
    if kind == "gauge":
        family = GaugeMetricFamily(name, doc, labels=labels, unit=draw(st.sampled_from(["", "celsius"])))
        for row in rows:
            family.add_metric(list(row), draw(FLOAT), timestamp=ts)
    elif kind == "counter":
        family = CounterMetricFamily(name, doc, labels=labels)
        for row in rows:
            created = draw(st.one_of(st.none(), st.floats(0, 4e9)))
            family.add_metric(list(row), draw(POSITIVE), created=created, timestamp=ts)
    elif kind == "histogram":
        family = HistogramMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), [("0.5", 1.0), ("+Inf", 3.0)], draw(POSITIVE), timestamp=ts)
    elif kind == "summary":
        family = SummaryMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), 3, draw(POSITIVE), timestamp=ts)
    elif kind == "info":
        family = InfoMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), {"extra": draw(TEXT)}, timestamp=ts)
    elif kind == "stateset":
        family = StateSetMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), {"a": True, "b": False}, timestamp=ts)
    elif kind == "gh":
        family = GaugeHistogramMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), [("1.0", 2.0), ("+Inf", 5.0)], draw(POSITIVE), timestamp=ts)
    else:
        family = UnknownMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(list(row), draw(FLOAT), timestamp=ts)
    return family


class Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


@st.composite
def registries(draw: st.DrawFn) -> CollectorRegistry:
    registry = CollectorRegistry()
    names = draw(st.lists(st.one_of(NAME, NAME, NAME, COLON_NAME), min_size=1, max_size=6, unique=True))
    for name in names:
        if draw(st.booleans()):
            draw(wrapper_metric(registry, name))
        else:
            with contextlib.suppress(ValueError):
                registry.register(Fixed([draw(custom_family(name))]))
    if draw(st.booleans()):
        registry.set_target_info(draw(st.dictionaries(LABEL, TEXT, min_size=1, max_size=2)))
    return registry


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(registries())
def test_text_is_byte_identical(registry: CollectorRegistry) -> None:
    assert render_plain_registry(registry, "text") == generate_latest(registry)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(registries())
def test_openmetrics_is_byte_identical(registry: CollectorRegistry) -> None:
    ours = render_plain_registry(registry, "openmetrics")
    assert ours == generate_openmetrics(registry)
    assert ours.endswith(b"# EOF\n")


def test_canary_self_check_passes() -> None:
    assert self_check() is None


def test_colon_names_are_delegated_to_prometheus_client() -> None:
    registry = CollectorRegistry()
    Counter("http:requests", "Recording-rule style name.", ["code"], registry=registry).labels("200").inc()
    Histogram("job:latency_seconds", "Colon name.", registry=registry).observe(0.3)
    registry.register(Fixed([GaugeMetricFamily("x:y", "Custom colon family.", value=1)]))
    for fmt, reference in (("text", generate_latest), ("openmetrics", generate_openmetrics)):
        assert render_plain_registry(registry, fmt) == reference(registry)  # type: ignore[arg-type]


def test_native_histogram_samples_are_left_out() -> None:
    registry = CollectorRegistry()
    native = Metric("native_seconds", "A native histogram.", "histogram")
    native.add_sample(
        "native_seconds",
        {"route": "/x"},
        None,  # type: ignore[arg-type]
        native_histogram=NativeHistogram(24, 100, 0, 0.001, 4, ((0, 2),), (2, 1)),
    )
    registry.register(Fixed([native]))
    assert render_plain_registry(registry, "openmetrics") == generate_openmetrics(registry)
    text = render_plain_registry(registry, "text").decode()  # prometheus_client's text encoder raises here
    assert "# TYPE native_seconds histogram" in text and "native_seconds{" not in text


def test_parseable_and_paced() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("many", "Many series.", ["i"], registry=registry)
    for i in range(5000):
        gauge.labels(str(i)).set(i)
    pacer = Pacer(slice_seconds=1e-9, nap=0.0)  # nap at every opportunity
    encoder = Encoder("openmetrics", pacer)
    encoder.wrapper(gauge)
    body = encoder.finish()
    assert pacer.naps >= 5000 // 64 - 1
    assert body == generate_openmetrics(registry)
    (family,) = parse_openmetrics(body.decode())
    assert len(family.samples) == 5000


async def test_service_encoders_agree(harness: Any) -> None:
    """The whole pipeline, default collectors and guarded custom families included, in both encoder modes."""
    ours = harness(defaults=False)
    theirs = harness(defaults=False, STATOR_METRICS_RENDERER="prometheus_client")
    for h in (ours, theirs):
        h.metrics.add_collector(Fixed([GaugeMetricFamily("fixed_value", 'a "quoted"\nhelp', value=math.pi)]), "fixed")
        h.metrics.registry.set_target_info({"app_id": "a", "run_id": "b"})
    shared = Counter("shared_requests", "Requests.", ["code"], registry=ours.metrics.registry)
    theirs.metrics.registry.register(shared)
    shared.labels("200").inc(exemplar={"trace_id": "abc"})

    def stable(body: bytes) -> list[bytes]:  # collector durations are measured, so they differ between the two
        return [line for line in body.splitlines() if not line.startswith(b"stator_collector_duration_seconds{")]

    for openmetrics in (False, True):
        ours_body, theirs_body = await ours.metrics.render(openmetrics), await theirs.metrics.render(openmetrics)
        assert b"fixed_value 3.14" in ours_body and b"target_info{" in ours_body
        assert stable(ours_body) == stable(theirs_body)


@pytest.mark.parametrize("fmt", ["text", "openmetrics"])
def test_clashing_families_keep_the_first(fmt: str) -> None:
    clashes: list[str] = []
    encoder = Encoder(fmt, on_clash=lambda name, origin: clashes.append(name))  # type: ignore[arg-type]
    encoder.family(CounterMetricFamily("jobs", "Counter.", value=1))
    encoder.family(GaugeMetricFamily("jobs_total", "Gauge clashing with the counter's sample name.", value=2))
    body = encoder.finish().decode()
    assert clashes == ["jobs_total"] and "jobs_total 1.0" in body and " 2.0" not in body


def test_exemplar_timestamps_and_sample_timestamps() -> None:
    family = CounterMetricFamily("ticks", "Ticks.", labels=["a"])
    family.add_metric(["x"], 3, timestamp=Timestamp(1700000000, 5))
    family.samples[0] = family.samples[0]._replace(exemplar=Exemplar({"t": "1"}, 0.5, 1700000000.5))
    registry = CollectorRegistry()
    registry.register(Fixed([family]))
    for fmt, reference in (("text", generate_latest), ("openmetrics", generate_openmetrics)):
        assert render_plain_registry(registry, fmt) == reference(registry)  # type: ignore[arg-type]
