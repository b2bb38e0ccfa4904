"""The SLO document model: what it accepts, and that every mistake is refused with the field's path."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from stator.slo import BURN_WINDOWS, SLOError, burn_factor, parse_document
from stator.slo.model import parse_prometheus_duration

VALID = """
version: 1
slos:
  - service: api
    name: availability
    objective: 99.9
    window: 30d
    sli: {type: availability}
  - service: api
    name: latency
    objective: 99
    window: 28d
    sli: {type: latency, threshold: 0.25}
    routes: ["/items/{item_id}"]
    labels: {team: core}
"""


def test_valid_document_and_budget_arithmetic() -> None:
    doc = parse_document(VALID)
    availability, latency = doc.slos
    assert availability.budget == Decimal("0.001") and availability.ratio == Decimal("0.999")
    assert [burn_factor(availability, w) for w in BURN_WINDOWS] == [Decimal("14.4"), 6, 3, 1]
    # 28 days: the same budget shares over a shorter period (Sloth's google-28d windows).
    factors = [burn_factor(latency, w) for w in BURN_WINDOWS]
    assert factors[:3] == [Decimal("13.44"), Decimal("5.6"), Decimal("2.8")]
    assert factors[3].quantize(Decimal("0.0001")) == Decimal("0.9333")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("objective: 99.9", "objective: Input should be less than 100"),  # replaced below by 100
        ("window: 30d", "window: Value error, must be a whole number of days"),
        ("window: 30d", "window: Value error, must be between 7d and 90d"),
        ("window: 30d", "is not a Prometheus duration"),
        ("sli: {type: availability}", "sli: Input tag 'bogus'"),
        ("sli: {type: availability}", "sli.error_status: Value error, not a valid regular expression"),
        ("sli: {type: availability}", "sli.error_status: Value error, matches status 200"),
        ("sli: {type: availability}", "is not a bucket bound of http_request_duration_seconds"),
        ("name: availability", "name: Value error, must match"),
        ("service: api\n    name: availability", "SLO 'latency' of service 'api' is declared twice"),
        ("window: 30d", "labels: Value error, 'severity' is set by the generator"),
        ("window: 30d", "labels: Value error, '2x' is not a valid Prometheus label name"),
        ("window: 30d", "extra: Extra inputs are not permitted"),
        ("window: 30d", "routes: Value error, duplicate items"),
        ("window: 30d", "routes both included and excluded"),
        ("objective: 99.9", "duplicate key 'objective'"),
    ],
)
def test_mistakes_are_refused_with_their_path(change: str, message: str) -> None:
    replacements = {
        "objective: Input should be less than 100": "objective: 100",
        "window: Value error, must be a whole number of days": "window: 36h",
        "window: Value error, must be between 7d and 90d": "window: 3d",
        "is not a Prometheus duration": "window: a month",
        "sli: Input tag 'bogus'": "sli: {type: bogus}",
        "sli.error_status: Value error, not a valid regular expression": (
            "sli: {type: availability, error_status: '5(..'}"
        ),
        "sli.error_status: Value error, matches status 200": "sli: {type: availability, error_status: '.*'}",
        "is not a bucket bound of http_request_duration_seconds": "sli: {type: latency, threshold: 0.3}",
        "name: Value error, must match": "name: Availability!",
        "SLO 'latency' of service 'api' is declared twice": "service: api\n    name: latency",
        "labels: Value error, 'severity' is set by the generator": "window: 30d\n    labels: {severity: low}",
        "labels: Value error, '2x' is not a valid Prometheus label name": "window: 30d\n    labels: {2x: y}",
        "extra: Extra inputs are not permitted": "window: 30d\n    extra: 1",
        "routes: Value error, duplicate items": "window: 30d\n    routes: [/a, /a]",
        "routes both included and excluded": "window: 30d\n    routes: [/a]\n    exclude_routes: [/a]",
        "duplicate key 'objective'": "objective: 99.9\n    objective: 99.5",
    }
    text = VALID.replace(change, replacements[message], 1)
    assert text != VALID
    with pytest.raises(SLOError) as info:
        parse_document(text, "slo.yaml")
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith("slo.yaml: ")


@pytest.mark.parametrize(
    "text",
    ["", "[]", "version: 2\nslos: []", "version: 1\nslos: []", "version: 1\nslos: [{service: a}]", "a: [1"],
)
def test_unusable_documents(text: str) -> None:
    with pytest.raises(SLOError):
        parse_document(text)


def test_custom_buckets_make_other_thresholds_valid() -> None:
    text = VALID.replace("threshold: 0.25", "threshold: 0.3").replace(
        "version: 1", "version: 1\nbuckets: [0.1, 0.3, 1]"
    )
    assert parse_document(text).slos[1].sli.threshold == 0.3  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "seconds"), [("30d", 2592000), ("1h30m", 5400), ("5m", 300), ("1w", 604800)])
def test_prometheus_durations(text: str, seconds: int) -> None:
    assert parse_prometheus_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "1.5h", "-1d", "0s", "500ms", "1d ", "d"])
def test_bad_prometheus_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_prometheus_duration(text)


def test_objective_keeps_its_decimal_text() -> None:
    doc = parse_document(textwrap.dedent(VALID).replace("objective: 99.9", "objective: 99.95"))
    assert doc.slos[0].budget == Decimal("0.0005")
