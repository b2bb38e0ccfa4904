"""DogStatsD output checked line by line against the grammar by a UDP socket standing in for the agent; and the
formatting rules (folding, negative gauges, packing, exact counts through sample rates) as units."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import httpx
import pytest

from stator.app.reference import create_app
from stator.statsd.bridge import spread
from stator.statsd.lines import fold, gauge_lines, metric_name, pack, rate_text, tag_suffix, value_lines
from tests.remotewrite.conftest import serve_service
from tests.statsd.conftest import UDPAgent

LINE = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9_.\-]*):(?P<values>-?[0-9.]+(?::-?[0-9.]+)*)\|(?P<type>c|g|ms|h|s|d)"
    r"(?:\|@(?P<rate>0?\.[0-9]+|1))?(?:\|#(?P<tags>[^|,\n]+(?:,[^|,\n]+)*))?"
)


def parse(datagrams: list[bytes]) -> list[dict[str, object]]:
    out = []
    for datagram in datagrams:
        for line in datagram.decode().split("\n"):
            m = LINE.fullmatch(line)
            assert m is not None, f"not DogStatsD: {line!r}"
            tags = dict(t.split(":", 1) for t in (m["tags"] or "").split(",") if t)
            out.append({**m.groupdict(), "tags": tags})
    return out


def test_dogstatsd_lines_follow_the_grammar(udp_agent: UDPAgent) -> None:
    env = {
        "STATOR_STATSD_ADDR": f"127.0.0.1:{udp_agent.port}",
        "STATOR_STATSD_FORMAT": "dogstatsd",
        "STATOR_STATSD_FLUSH": "300ms",
        "STATOR_STATSD_TAGS": "env:test,team:obs",
        "STATOR_STATSD_MAX_PACKET": "512",
        "STATOR_STATSD_EXCLUDE": "python_gc_*",
    }
    with serve_service(env, remote_write=False, app=create_app()) as svc:
        for n in range(40):
            assert httpx.get(f"{svc.url}/items/{n}", timeout=5).status_code == 200
        lines = parse(udp_agent.drain(1.5))
    assert all(len(d) <= 512 for d in udp_agent.datagrams)
    assert not any(str(line["name"]).startswith("python_gc_") for line in lines)
    requests = [line for line in lines if line["name"] == "http_requests_total"]
    assert requests and all(line["type"] == "c" for line in requests)
    assert requests[0]["tags"] == {
        "env": "test",
        "team": "obs",
        "method": "GET",
        "route": "/items/{item_id}",
        "status": "200",
    }
    assert sum(float(str(line["values"])) for line in requests) == 40
    durations = [line for line in lines if line["name"] == "http_request_duration_seconds"]
    assert durations and all(line["type"] == "d" for line in durations)
    count = sum(
        len(str(line["values"]).split(":")) / float(str(line["rate"] or 1)) for line in durations
    )  # what the agent counts: each value scaled by 1/rate
    assert count == 40
    assert any(line["type"] == "g" and line["name"] == "http_requests_in_flight" for line in lines)


def test_plain_statsd_folding_rule() -> None:
    tags = (("route", "/items/{id}"), ("method", "GET"))
    assert (
        metric_name("app", "http_requests_total", tags, "statsd")
        == "app.http_requests_total.method.GET.route.-items-_id_"
    )
    assert metric_name("app.", "x:y", (), "statsd") == "app.x_y"
    assert fold("a b/c") == "a_b-c" and fold("") == "_"
    assert tag_suffix((("k", "a|b,c"),), "dogstatsd") == "|#k:a_b_c"
    assert tag_suffix((("k", "v"),), "statsd") == ""


def test_negative_gauges_and_non_finite_values() -> None:
    assert gauge_lines("g", -2.5, "", "statsd") == ["g:0|g\ng:-2.5|g"]  # a leading sign alone would be a delta
    assert gauge_lines("g", -2.5, "", "dogstatsd") == ["g:-2.5|g"]
    assert gauge_lines("g", math.nan, "", "statsd") == []


def test_packing_respects_the_datagram_limit() -> None:
    values = [0.001 * n for n in range(1000)]
    lines = list(value_lines("lat", values, "d", "|#a:b", "dogstatsd", 200))
    assert all(len(line) <= 200 for line in lines)
    assert sum(len(line.split("|")[0].split(":")) - 1 for line in lines) == 1000
    datagrams, oversize = pack([*lines, "x" * 300], 200)
    assert oversize == 1 and all(len(d) <= 200 for d in datagrams)
    assert b"\n".join(datagrams).count(b"|d") == len(lines)


def test_bucket_counts_survive_sample_rates_exactly() -> None:
    for n in (1, 16, 17, 40, 1000, 123457):
        by_rate = spread([(0.0, 0.005, n), (0.005, 0.01, 3), (10.0, math.inf, 2)], n * 0.0025 + 3 * 0.0075 + 2 * 30)
        total = Fraction(0)
        for power, values in by_rate.items():
            rate = Fraction(rate_text(power)) if power else Fraction(1)
            total += len(values) / rate
        assert total == n + 5
        assert max(v for vs in by_rate.values() for v in vs) == pytest.approx(
            30
        )  # the +Inf bucket takes what the sum says
