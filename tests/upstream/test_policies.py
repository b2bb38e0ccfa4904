"""The policies on their own, with a fake clock: balancers, retry budget, outlier ejection, circuit breaker,
client-side limiter, the server-side buckets, static lists and the registry decoders."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from stator.http.ratelimit import KeyedTokenBuckets, key_from_setting
from stator.logs import Logger, MemorySink
from stator.upstream.balancer import PowerOfTwoChoices, Random, RoundRobin, make_balancer
from stator.upstream.breaker import CircuitBreaker
from stator.upstream.consul import decode_health
from stator.upstream.etcd import decode_roster, prefix_end
from stator.upstream.instances import Endpoint, Instance, parse_static
from stator.upstream.limiter import ClientRateLimiter
from stator.upstream.outlier import OutlierDetector
from stator.upstream.retry import RetryBudget, RetryPolicy
from stator.upstream.window import RollingCounts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logger() -> tuple[Logger, MemorySink]:
    sink = MemorySink()
    return Logger(app_id="t", run_id="r", sink=sink), sink


def msgs(sink: MemorySink) -> list[str]:
    return [orjson.loads(line)["msg"] for line in sink.lines]


def endpoints(n: int, clock: Clock | None = None) -> list[Endpoint]:
    return [
        Endpoint(Instance(f"i{k}", "127.0.0.1", 9000 + k), RollingCounts(10.0, clock=clock or Clock()))
        for k in range(n)
    ]


# -- balancers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p2c", "round_robin", "random"])
def test_a_balancer_never_repeats_the_avoided_instance(name: str) -> None:
    balancer = make_balancer(name, random.Random(1))
    for n in (2, 3, 5):
        eps = endpoints(n)
        for k in range(300):
            avoid = eps[k % n]
            assert balancer.pick(eps, avoid) is not avoid
    one = endpoints(1)
    assert balancer.pick(one, one[0]) is one[0]  # nothing else to go to


def test_round_robin_cycles_and_random_spreads() -> None:
    eps = endpoints(3)
    rr = RoundRobin()
    assert [rr.pick(eps, None).id for _ in range(6)] == ["i0", "i1", "i2", "i0", "i1", "i2"]
    rnd = Random(random.Random(2))
    counts = Counter(rnd.pick(eps, None).id for _ in range(3000))
    assert all(800 < c < 1200 for c in counts.values()), counts


def test_p2c_prefers_fewer_outstanding_requests() -> None:
    eps = endpoints(3)
    eps[0].outstanding = 50  # a slow instance accumulates requests in flight
    p2c = PowerOfTwoChoices(random.Random(3))
    counts = Counter(p2c.pick(eps, None).id for _ in range(3000))
    assert counts["i0"] == 0  # it loses every comparison it takes part in
    assert 1200 < counts["i1"] < 1800, counts
    with pytest.raises(ValueError, match="unknown balancer"):
        make_balancer("least_conn")


# -- retry ---------------------------------------------------------------------------------------------------


def test_retry_budget_allows_a_percentage_of_calls_plus_a_floor() -> None:
    clock = Clock()
    budget = RetryBudget(percent=20, min_per_second=0, window=10, clock=clock)
    for _ in range(100):
        budget.deposit()
    granted = sum(budget.try_withdraw() for _ in range(50))
    assert granted == 20 and budget.exhausted == 30
    clock.now += 11  # the window moved on: old deposits and withdrawals expire together
    assert not budget.try_withdraw()
    floor = RetryBudget(percent=0, min_per_second=1, window=10, clock=clock)
    assert sum(floor.try_withdraw() for _ in range(20)) == 10


def test_retry_policy_idempotency_and_backoff() -> None:
    policy = RetryPolicy(backoff_initial=0.01, backoff_max=0.04)
    assert policy.idempotent("GET", None) and policy.idempotent("PUT", None)
    assert not policy.idempotent("POST", None) and policy.idempotent("POST", True)
    assert not policy.idempotent("GET", False)
    assert RetryPolicy(retry_non_idempotent=True).idempotent("PATCH", None)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4)] == [0.01, 0.02, 0.04, 0.04]
    assert policy.backoff(1, 0.999) > 0.005
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# -- outlier ejection -----------------------------------------------------------------------------------------


def test_consecutive_failures_eject_then_one_probe_recovers() -> None:
    clock = Clock()
    log, sink = logger()
    od = OutlierDetector("up", log, consecutive_failures=3, failure_rate=0, base_ejection=10, clock=clock)
    eps = endpoints(3, clock)
    bad = eps[0]
    for _ in range(2):
        od.record(bad, True, False, eps)
    od.record(bad, False, False, eps)  # a success breaks the streak
    for _ in range(3):
        od.record(bad, True, False, eps)
    assert bad.state == "ejected" and not od.admits(bad, clock.now)
    clock.now += 10
    assert od.admits(bad, clock.now)
    assert od.picked(bad) is True  # the half-open probe
    assert not od.admits(bad, clock.now)  # one probe at a time
    od.record(bad, True, True, eps)  # the probe failed: out again, for twice as long
    assert bad.state == "ejected" and bad.ejected_until == clock.now + 20
    clock.now += 20
    assert od.picked(bad)
    od.record(bad, False, True, eps)
    assert bad.state == "healthy"
    assert msgs(sink) == ["upstream instance ejected", "upstream instance ejected", "upstream instance recovered"]


def test_failure_rate_ejects_and_max_ejection_percent_holds() -> None:
    clock = Clock()
    log, _ = logger()
    od = OutlierDetector(
        "up", log, consecutive_failures=0, failure_rate=0.5, min_requests=10, max_ejection_percent=34, clock=clock
    )
    eps = endpoints(3, clock)
    for k in range(10):  # every other attempt fails: never a streak, but half of them
        od.record(eps[0], k % 2 == 1, False, eps)
    assert eps[0].state == "ejected"
    for k in range(10):
        od.record(eps[1], k % 2 == 1, False, eps)
    assert eps[1].state == "healthy"  # 34% of 3 instances: one may be out at a time
    assert od.ejections["failure_rate"] == 1


# -- circuit breaker ------------------------------------------------------------------------------------------


def test_breaker_opens_refuses_half_opens_and_closes() -> None:
    clock = Clock()
    log, sink = logger()
    cb = CircuitBreaker("up", log, failure_rate=0.5, min_calls=4, open_for=5, half_open_calls=2, clock=clock)
    for failed in (False, True, True, True):
        cb.record(cb.acquire(), failed)
    assert cb.state == "open" and cb.acquire() == -1 and cb.retry_in() == pytest.approx(5)
    clock.now += 5
    g1, g2 = cb.acquire(), cb.acquire()
    assert cb.state == "half_open" and g1 >= 0 and g2 >= 0 and cb.acquire() == -1  # two trials only
    cb.record(g1, False)
    cb.record(g2, True)  # one trial failed: open again
    assert cb.state == "open"
    clock.now += 5
    for _ in range(2):
        cb.record(cb.acquire(), False)
    assert cb.state == "closed"
    stale = cb.generation - 1
    cb.record(stale, True)  # an outcome from an older state does not count
    assert cb.window.counts() == (0, 0)
    assert msgs(sink) == [
        "upstream circuit opened",
        "upstream circuit half-open",
        "upstream circuit opened",
        "upstream circuit half-open",
        "upstream circuit closed",
    ]


# -- rate limits ------------------------------------------------------------------------------------------------


def test_client_limiter_waits_within_max_wait_and_refuses_beyond_without_charging() -> None:
    clock = Clock()
    lim = ClientRateLimiter(rate=10, burst=2, max_wait=0.15, clock=clock)
    assert [lim.try_reserve() for _ in range(2)] == [0.0, 0.0]
    assert lim.try_reserve() == pytest.approx(0.1)
    assert lim.try_reserve() == -1.0  # would wait 0.2 s
    assert lim.wait_for_token() == pytest.approx(0.2)
    clock.now += 0.2
    assert lim.try_reserve() == pytest.approx(0.0, abs=1e-9)  # the refusal took nothing
    assert lim.refused == 1


def test_keyed_buckets_admit_burst_then_rate_per_key() -> None:
    clock = Clock()
    buckets = KeyedTokenBuckets(rate=10, burst=3, max_keys=2, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.1)
    assert buckets.take("b") == 0.0  # another key, another bucket
    admitted = 0
    clock.now += 0.005  # off the refill instants, away from float rounding
    for _ in range(100):  # 1 s at 100 attempts/s: 10 admitted
        clock.now += 0.01
        admitted += buckets.take("a") == 0.0
    assert admitted == 10
    buckets.take("c")  # a third key: the least recently seen ("b") is forgotten
    assert len(buckets) == 2
    assert key_from_setting("") is None
    with pytest.raises(ValueError):
        key_from_setting("cookie:x")


# -- instance lists and registry answers ----------------------------------------------------------------------


def test_static_instances_parse_or_name_the_bad_entry() -> None:
    out = parse_static(["127.0.0.1:80", "b=https://h.example:8443", "[::1]:9"])
    assert [(i.id, i.base_url) for i in out] == [
        ("127.0.0.1:80", "http://127.0.0.1:80"),
        ("b", "https://h.example:8443"),
        ("::1:9", "http://[::1]:9"),
    ]
    for bad in ("nohost", "h:99999", "ftp://h:1", "h:1/path"):
        with pytest.raises(ValueError, match="bad upstream instance"):
            parse_static([bad])


def test_consul_health_decoder() -> None:
    decode = decode_health("http")
    body = orjson.dumps(
        [
            {"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "a", "Address": "", "Port": 80, "Tags": ["x"]}},
            {"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "b", "Address": "10.0.0.2", "Port": 81}},
        ]
    )
    assert [(i.id, i.base_url, i.tags) for i in decode(body)] == [
        ("a", "http://10.0.0.1:80", ("x",)),
        ("b", "http://10.0.0.2:81", ()),
    ]
    for garbage in (b"<html>", b"{}", b'[{"Service": {"ID": "a", "Port": "80"}}]', b"[1]"):
        with pytest.raises(ValueError):
            decode(garbage)


def test_etcd_roster_decoder_keeps_passing_instances() -> None:
    decode = decode_roster("http")
    docs = [
        {"id": "a", "address": "127.0.0.1", "port": 1, "status": "passing"},
        {"id": "b", "address": "127.0.0.1", "port": 2, "status": "critical"},
    ]
    assert [i.id for i in decode(orjson.dumps(docs))] == ["a"]
    with pytest.raises(ValueError):
        decode(b'[{"id": "a"}]')
    assert prefix_end(b"/s/x/") == b"/s/x0"
