"""/metrics over ASGI: content negotiation, gzip, HEAD, both formats parse, exemplars only in OpenMetrics."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import Counter, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from stator.metrics import accepts_gzip, negotiate
from stator.metrics.negotiation import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, parse_header_list
from tests.metrics.conftest import call

TEXT = TEXT_CONTENT_TYPE.decode()
OM = OPENMETRICS_CONTENT_TYPE.decode()

PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3_PROTOBUF_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6," + PROMETHEUS_3
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT),
        ("*/*", TEXT),
        ("text/plain", TEXT),
        ("text/plain; version=0.0.4", TEXT),
        ("text/*", TEXT),
        ("application/json", TEXT),  # nothing we make is acceptable: the text format rather than a 406
        ("application/openmetrics-text", OM),
        ("application/openmetrics-text; version=1.0.0", OM),
        ("application/openmetrics-text; version=0.0.1", OM),
        ("application/openmetrics-text; version=2.0.0", TEXT),  # not producible
        ("application/openmetrics-text;q=0, text/plain", TEXT),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.9", OM),
        ("text/plain, application/openmetrics-text", TEXT),  # equal q: header order
        ("*/*;q=0.9, application/openmetrics-text;q=0.9", OM),  # equal q: explicit beats wildcard
        (PROMETHEUS_2, OM),
        (PROMETHEUS_3, OM),
        (PROMETHEUS_3_PROTOBUF_FIRST, OM),
        ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", TEXT),
    ],
)
async def test_negotiation_matrix(harness: Any, accept: str | None, expected: str) -> None:
    h = harness()
    response = await call(h.metrics.endpoint(), headers={"accept": accept} if accept else None)
    assert response.status == 200
    assert response.headers["content-type"] == expected
    assert response.headers["vary"] == "Accept, Accept-Encoding"
    assert "content-encoding" not in response.headers
    body = response.body.decode()
    if expected == OM:
        assert body.endswith("# EOF\n")
        assert {f.name for f in parse_openmetrics(body)} >= {"process_cpu_seconds", "target"}
    else:
        assert "# EOF" not in body
        assert {f.name for f in parse_text(body)} >= {"process_cpu_seconds", "target_info"}


@pytest.mark.parametrize(
    ("encoding", "gzipped"),
    [
        (None, False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("deflate", False),
    ],
)
@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
async def test_gzip_matrix(harness: Any, encoding: str | None, gzipped: bool, accept: str | None) -> None:
    h = harness()
    headers = {}
    if encoding:
        headers["accept-encoding"] = encoding
    if accept:
        headers["accept"] = accept
    response = await call(h.metrics.endpoint(), headers=headers)
    assert response.status == 200
    assert int(response.headers["content-length"]) == len(response.body)
    if gzipped:
        assert response.headers["content-encoding"] == "gzip"
        body = gzip.decompress(response.body).decode()
    else:
        assert "content-encoding" not in response.headers
        body = response.body.decode()
    assert body.endswith("# EOF\n") == bool(accept)
    assert "process_cpu_seconds_total" in body


@pytest.mark.parametrize("headers", [{}, {"accept-encoding": "gzip"}, {"accept": "application/openmetrics-text"}])
async def test_head_has_get_headers_and_no_body(harness: Any, headers: dict[str, str]) -> None:
    h = harness(defaults=False)
    Counter("stable_total", "A value that does not change between the two requests.", registry=h.metrics.registry)
    get = await call(h.metrics.endpoint(), "GET", headers)
    head = await call(h.metrics.endpoint(), "HEAD", headers)
    assert head.status == 200 and head.body == b""
    for key in ("content-type", "content-encoding", "vary"):
        assert head.headers.get(key) == get.headers.get(key)
    assert int(head.headers["content-length"]) == len(get.body)


async def test_other_methods_are_refused(harness: Any) -> None:
    response = await call(harness(defaults=False).metrics.endpoint(), "POST")
    assert response.status == 405 and response.headers["allow"] == "GET, HEAD"


async def test_exemplars_only_in_openmetrics(harness: Any) -> None:
    h = harness(defaults=False)
    latency = Histogram("http_request_duration_seconds", "Latency.", ["route"], registry=h.metrics.registry)
    latency.labels("/items/{id}").observe(0.07, exemplar={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    requests = Counter("http_requests", "Requests.", ["route"], registry=h.metrics.registry)
    requests.labels("/items/{id}").inc(exemplar={"trace_id": "00f067aa0ba902b7"})
    om = (await h.metrics.render(openmetrics=True)).decode()
    text = (await h.metrics.render()).decode()
    assert "# {" not in text and "4bf92f35" not in text
    families = {f.name: f for f in parse_openmetrics(om)}
    exemplars = [s.exemplar for s in families["http_request_duration_seconds"].samples if s.exemplar]
    assert len(exemplars) == 1
    assert exemplars[0].labels == {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"} and exemplars[0].value == 0.07
    bucket = next(s for s in families["http_request_duration_seconds"].samples if s.exemplar)
    assert bucket.labels["le"] == "0.075"
    total = next(s for s in families["http_requests"].samples if s.name == "http_requests_total")
    assert total.exemplar is not None and total.exemplar.labels == {"trace_id": "00f067aa0ba902b7"}


# -- header parsing, property-based ------------------------------------------------------------------------

MEDIA = st.sampled_from(
    [
        "text/plain",
        "text/plain;version=0.0.4",
        "application/openmetrics-text",
        "application/openmetrics-text;version=1.0.0",
        "application/openmetrics-text;version=2.0.0",
        "application/json",
        "*/*",
        "text/*",
        "application/*",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    ]
)
QUALITY = st.one_of(st.none(), st.sampled_from([0.0, 0.001, 0.1, 0.5, 0.75, 1.0]))


def _model(ranges: list[tuple[str, float | None]]) -> str:
    """The rule the implementation must follow, written the slow, obvious way."""
    producible = {
        "text/plain": ("text", True),
        "text/plain;version=0.0.4": ("text", True),
        "application/openmetrics-text": ("openmetrics", True),
        "application/openmetrics-text;version=1.0.0": ("openmetrics", True),
        "*/*": ("text", False),
        "text/*": ("text", False),
        "application/*": ("openmetrics", False),
    }
    candidates = []
    for index, (media, q) in enumerate(ranges):
        quality = 1.0 if q is None else q
        if media in producible and quality > 0:
            fmt, explicit = producible[media]
            candidates.append(((quality, explicit, -index), fmt))
    return max(candidates)[1] if candidates else "text"


@given(st.lists(st.tuples(MEDIA, QUALITY), min_size=1, max_size=6), st.sampled_from([",", ", ", " ,  "]))
def test_negotiate_follows_the_q_model(ranges: list[tuple[str, float | None]], sep: str) -> None:
    header = sep.join(media + (f";q={q}" if q is not None else "") for media, q in ranges)
    assert negotiate(header) == _model(ranges)
    assert negotiate(header.upper().replace("Q=", "q=")) == _model(ranges)  # media types are case-insensitive


@given(st.text())
def test_header_parsers_never_raise(header: str) -> None:
    assert negotiate(header) in ("text", "openmetrics")
    assert isinstance(accepts_gzip(header), bool)
    for media in parse_header_list(header):
        assert 0.0 <= media.q <= 1.0


CODING = st.sampled_from(["gzip", "x-gzip", "deflate", "br", "identity", "*", "zstd"])


@given(st.lists(st.tuples(CODING, QUALITY), max_size=5))
def test_accepts_gzip_model(codings: list[tuple[str, float | None]]) -> None:
    header = ", ".join(c + (f";q={q}" if q is not None else "") for c, q in codings)
    explicit = [1.0 if q is None else q for c, q in codings if c in ("gzip", "x-gzip")]
    wildcard = [1.0 if q is None else q for c, q in codings if c == "*"]
    expected = max(explicit) > 0 if explicit else bool(wildcard) and wildcard[-1] > 0
    assert accepts_gzip(header) == expected
