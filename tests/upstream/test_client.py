"""The upstream client against real HTTP backends on loopback: retries, ejection and recovery, per-try timeouts,
the retry budget, the breaker, the limits, errors, metrics and spans."""

from __future__ import annotations

import asyncio
import time

import pytest

from stator.upstream import AttemptsFailed, CircuitOpen, NoInstances, RateLimited, StaticInstancer
from tests.roster.conftest import free_port
from tests.tracing.receiver import OTLPReceiver, attrs

from .conftest import backends, caller


async def test_a_failing_instance_is_ejected_and_gets_traffic_again_after_it_recovers() -> None:
    async with backends("a", "b", "c") as (a, b, c), caller() as cl:
        up = cl.hub.get(
            "be",
            instances=[f"{x.name}={x.address}" for x in (a, b, c)],
            outlier_consecutive_failures=3,
            outlier_base_ejection="300ms",
        )
        a.mode = "fail"
        for _ in range(120):
            response = await up.get("/work")
            assert response.status_code == 200  # 500s from "a" are retried on another instance
            assert response.extensions["stator.upstream.instance"] in ("b", "c")
        ejected = cl.logs("upstream instance ejected")
        assert ejected and all(line["instance"] == "a" for line in ejected)
        assert a.hits < 20  # out of rotation: only the half-open probes reach it
        assert cl.samples("stator_upstream_ejections_total")[(("reason", "consecutive_failures"), ("upstream", "be"))]

        a.mode = "ok"
        before = a.hits

        async def served_by_a() -> bool:
            for _ in range(30):
                r = await up.get("/work")
                if r.extensions["stator.upstream.instance"] == "a":
                    return True
            return False

        deadline = time.monotonic() + 5
        while not await served_by_a():
            assert time.monotonic() < deadline, "recovered instance never got traffic again"
            await asyncio.sleep(0.05)
        assert a.hits > before
        assert len(cl.logs("upstream instance recovered")) == 1
        # One line per ejection and recovery, never one per request.
        assert len(cl.logs()) < 12, [line["msg"] for line in cl.logs()]


async def test_a_hung_instance_costs_one_per_try_timeout_not_the_deadline() -> None:
    async with backends("a", "b") as (a, b), caller() as cl:
        up = cl.hub.get(
            "be",
            instances=[f"a={a.address}", f"b={b.address}"],
            try_timeout="300ms",
            deadline="5s",
            balancer="round_robin",
        )
        a.mode = "hang"
        durations = []
        for _ in range(8):
            started = time.monotonic()
            response = await up.get("/work")
            durations.append(time.monotonic() - started)
            assert response.status_code == 200 and response.json() == {"by": "b"}
        slow = [d for d in durations if d > 0.25]
        assert slow, durations  # some calls did go to the hung instance first...
        assert max(durations) < 1.0, durations  # ...and paid one per-try timeout, far from the 5 s deadline
        outcomes = cl.samples("stator_upstream_requests_total")
        assert outcomes[(("instance", "a"), ("outcome", "timeout"), ("upstream", "be"))] == len(slow)


async def test_retries_never_exceed_the_budget() -> None:
    async with backends("a", "b", "c") as group, caller() as cl:
        up = cl.hub.get(
            "be",
            instances=[f"{x.name}={x.address}" for x in group],
            retry_budget_percent=20,
            retry_budget_min_per_second=0,
            outlier_consecutive_failures=0,
            outlier_failure_rate=0,
            breaker_failure_rate=0,
            retry_backoff="0s",
        )
        for x in group:
            x.mode = "fail"
        calls = 200
        for _ in range(calls):
            assert (await up.get("/work")).status_code == 500  # the last answer is passed on
        sent = sum(x.hits for x in group)
        retries = sent - calls
        assert retries == up.retries
        assert 0 < retries <= calls * 20 // 100
        assert cl.samples("stator_upstream_retries_total")[(("upstream", "be"),)] == retries
        assert cl.samples("stator_upstream_retry_budget_exhausted_total")[(("upstream", "be"),)] > 0


async def test_post_is_retried_only_when_unsent_or_declared_idempotent() -> None:
    dead = f"dead=127.0.0.1:{free_port()}"
    async with backends("a") as (a,), caller() as cl:
        up = cl.hub.get(
            "be", instances=[dead, f"a={a.address}"], balancer="round_robin", outlier_consecutive_failures=0
        )
        for _ in range(4):  # refused connections: nothing was sent, so even POST goes on to "a"
            assert (await up.post("/work", json={})).status_code == 200
        a.mode = "fail"
        hits = a.hits
        assert (await up.post("/work", json={})).status_code == 500
        assert a.hits == hits + 1  # a 500 to a POST is not retried (it may have done the work)...
        retries = up.retries
        assert (await up.post("/work", json={}, idempotent=True)).status_code == 500
        assert up.retries == retries + 2  # ...unless the caller says the request is idempotent


async def test_refusals_are_clear_errors_and_the_breaker_opens() -> None:
    async with caller() as cl:
        empty = cl.hub.get("none", instancer=StaticInstancer("none", (), cl.service.logger))
        started = time.monotonic()
        with pytest.raises(NoInstances, match="no instances") as info:
            await empty.get("/")
        assert info.value.status_code == 503 and time.monotonic() - started < 0.5  # at once, not a hang

        down = cl.hub.get(
            "down",
            instances=[f"127.0.0.1:{free_port()}"],
            breaker_min_calls=5,
            breaker_open="10s",
            outlier_consecutive_failures=0,
        )
        for _ in range(5):
            with pytest.raises(AttemptsFailed, match="ConnectError"):
                await down.get("/")
        with pytest.raises(CircuitOpen) as opened:
            await down.get("/")
        assert opened.value.status_code == 503 and opened.value.retry_in > 9
        assert len(cl.logs("upstream circuit opened")) == 1
        state = cl.samples("stator_upstream_breaker_state")
        assert state[(("state", "open"), ("upstream", "down"))] == 1.0

        async with backends("a") as (a,):
            limited = cl.hub.get("limited", instances=[a.address], limit_rate=5, limit_burst=3)
            results = await asyncio.gather(*(limited.get("/work") for _ in range(10)), return_exceptions=True)
            assert sum(isinstance(r, RateLimited) for r in results) == 7 and a.hits == 3
            calls = cl.samples("stator_upstream_calls_total")
            assert calls[(("outcome", "rate_limited"), ("upstream", "limited"))] == 7


async def test_one_span_per_call_with_a_client_span_per_attempt() -> None:
    with OTLPReceiver() as receiver:
        async with backends("a") as (a,):
            dead = f"dead=127.0.0.1:{free_port()}"
            async with caller({"STATOR_OTLP_ENDPOINT": receiver.endpoint, "STATOR_OTLP_BATCH_DELAY": "50ms"}) as cl:
                up = cl.hub.get("be", instances=[dead, f"a={a.address}"], balancer="round_robin")
                response = await up.get("/work")
                assert response.status_code == 200
        spans = [span for _, span in receiver.snapshot()]
    parents = [s for s in spans if s.name == "GET be"]
    assert len(parents) == 1
    parent = parents[0]
    attempts = sorted((s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_time_unix_nano)
    assert [s.kind for s in attempts] == [3, 3]  # SPAN_KIND_CLIENT
    first, second = (attrs(s) for s in attempts)
    assert first["stator.upstream.instance"] == "dead" and "http.request.resend_count" not in first
    assert first["error.type"] == "ConnectError"
    assert second["stator.upstream.instance"] == "a" and second["http.request.resend_count"] == 1
    assert second["http.response.status_code"] == 200
    assert attrs(parent)["stator.upstream.attempts"] == 2
    assert all(s.trace_id == parent.trace_id for s in attempts)
    # The callee continues the trace from the attempt that reached it (W3C trace context).
    assert a.headers["traceparent"] == f"00-{parent.trace_id.hex()}-{attempts[1].span_id.hex()}-01"


async def test_metrics_and_monitor_show_instances_and_their_state() -> None:
    async with backends("a", "b") as (a, b), caller() as cl:
        up = cl.hub.get("be", instances=[f"a={a.address}", f"b={b.address}"])
        await asyncio.gather(*(up.get("/work") for _ in range(20)))
        instances = cl.samples("stator_upstream_instances")
        assert instances[(("state", "healthy"), ("upstream", "be"))] == 2
        assert cl.samples("stator_upstream_outstanding_requests")[(("upstream", "be"),)] == 0
        counts = cl.samples("stator_upstream_request_duration_seconds_count")
        assert sum(counts.values()) == 20
        section = cl.service.monitor()["upstreams"]["be"]
        assert [i["id"] for i in section["instances"]] == ["a", "b"]
        assert section["balancer"] == "p2c" and section["breaker"]["state"] == "closed"
        assert sum(i["requests"] for i in section["instances"]) == 20
