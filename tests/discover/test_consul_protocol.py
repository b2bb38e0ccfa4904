"""The Consul KV poller against a raw HTTP fake: the answers a correct registry never gives (indexes going
backwards or 0, instant answers, 500s, truncated and oversized bodies, garbage). The behaviour against the
real dev registry is in test_consul_registry.py."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stator.client import HTTPClient
from stator.discover import ConsulKVPoller, Discover, PollError, TokenBucket
from tests.discover.conftest import FakeRequest, Handler, RawFake, doc, http_response, kv_body, memory_logger

MakeFake = Callable[[Handler], Awaitable[RawFake]]


def _poller(fake: RawFake, **kw: Any) -> ConsulKVPoller:
    kw.setdefault("limiter", TokenBucket(100, 0))
    return ConsulKVPoller(lambda: HTTPClient(fake.url), "services/prod", **kw)


def scripted(*answers: tuple[int, bytes | None, int | None]) -> Handler:
    """Answer (status, value, X-Consul-Index) in order; the last one repeats."""
    queue = list(answers)

    async def handle(request: FakeRequest) -> bytes:
        status, value, index = queue.pop(0) if len(queue) > 1 else queue[0]
        headers = {"X-Consul-Index": str(index)} if index is not None else {}
        if status == 200:
            return http_response(200, kv_body("services/prod", value, modify_index=7), headers)
        return http_response(status, value or b"", headers)

    return handle


async def test_first_request_has_no_index_then_blocks_on_the_header_index(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((200, doc(1), 100), (200, doc(2), 120)))
    poller = _poller(fake, wait=90.0)
    first = await poller.poll()
    second = await poller.poll()
    assert first.data == doc(1) and first.index == 100 and second.index == 120
    r1, r2 = fake.requests
    assert r1.method == "GET" and r1.path == "/v1/kv/services/prod" and r1.query == {}
    # X-Consul-Index (100), not the entry's ModifyIndex (7), and wait as a Go duration.
    assert r2.query == {"index": "100", "wait": "90000ms"}
    assert poller.index == 120
    await poller.aclose()


async def test_index_going_backwards_resets_to_an_unblocked_read(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((200, doc(1), 500), (200, doc(1), 40), (200, doc(1), 40), (200, doc(1), 41)))
    poller = _poller(fake, wait=1.0)
    for _ in range(4):
        await poller.poll()
    sent = [r.query.get("index") for r in fake.requests]
    # 500 → blocks on 500; answer 40 went backwards → next request has no index; then blocks on 40.
    assert sent == [None, "500", None, "40"]
    assert poller.resets == 1 and poller.index == 41
    await poller.aclose()


async def test_index_zero_is_not_sane_and_used_as_one(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((200, doc(1), 0), (404, None, 0), (404, None, None)))
    poller = _poller(fake, wait=1.0)
    first = await poller.poll()
    assert first.index == 1 and poller.index == 1
    await poller.poll()
    await poller.poll()  # no header at all on a 404: also 1, never 0 (which would mean "answer at once")
    assert [r.query.get("index") for r in fake.requests] == [None, "1", "1"]
    assert poller.index == 1
    await poller.aclose()


async def test_timed_out_wait_returns_same_index_and_nothing_is_published(raw_fake: MakeFake) -> None:
    async def hold(request: FakeRequest) -> bytes:
        if "index" in request.query:
            await asyncio.sleep(0.05)  # "the wait ran out": same value, same index
        return http_response(200, kv_body("services/prod", doc(1)), {"X-Consul-Index": "9"})

    fake = await raw_fake(hold)
    logger, _ = memory_logger()
    registry = CollectorRegistry()
    discover = Discover(_poller(fake, wait=0.05), logger=logger, registry=registry)
    task = asyncio.create_task(discover.run())
    await asyncio.wait_for(discover.changed(0), 5)
    while len(fake.requests) < 6:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert {r.query.get("index") for r in fake.requests[1:]} == {"9"}
    assert discover.snapshot.version == 1
    assert registry.get_sample_value("stator_discovery_updates_total") == 1


async def test_limiter_holds_against_a_registry_that_answers_at_once(raw_fake: MakeFake) -> None:
    changes = 0

    async def instant(request: FakeRequest) -> bytes:
        nonlocal changes
        changes += 1  # a new index and value every time: the worst case, churn without end
        return http_response(200, kv_body("services/prod", doc(changes)), {"X-Consul-Index": str(changes)})

    fake = await raw_fake(instant)
    logger, _ = memory_logger()
    limiter = TokenBucket(3, 0.1)
    discover = Discover(_poller(fake, wait=300.0, limiter=limiter), logger=logger)
    task = asyncio.create_task(discover.run())
    await asyncio.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # burst 3 + one per 100 ms for 1 s ≈ 13; unlimited, this loop makes hundreds of requests per second.
    assert 5 <= len(fake.requests) <= 3 + 10 + 2
    assert limiter.delayed >= len(fake.requests) - 4
    assert discover.monitor()["poller"]["limiter"]["delayed"] == limiter.delayed


async def test_read_timeout_is_above_wait_plus_jitter(raw_fake: MakeFake) -> None:
    wait = 0.4

    async def slow(request: FakeRequest) -> bytes:
        if "index" in request.query:
            await asyncio.sleep(wait * 17 / 16)  # the longest a Consul server may hold a query
        return http_response(200, kv_body("services/prod", doc(1)), {"X-Consul-Index": "3"})

    fake = await raw_fake(slow)
    poller = _poller(fake, wait=wait, request_timeout=0.2)
    timeout = poller._timeout(blocking=True)
    assert timeout.read is not None and timeout.read > wait * 17 / 16
    assert poller._timeout(blocking=False).read == 0.2
    await poller.poll()
    result = await poller.poll()  # held 0.425 s, longer than the 0.2 s ordinary timeout: still fine
    assert result.index == 3
    await poller.aclose()


async def test_404_is_a_state_not_an_error(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((404, None, 17)))
    poller = _poller(fake)
    result = await poller.poll()
    assert result.data is None and result.index == 17 and poller.index == 17
    await poller.aclose()


async def test_500_is_an_http_error_with_the_body_and_keeps_the_index(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((200, doc(1), 5), (500, b"rpc error: No cluster leader", 0)))
    poller = _poller(fake)
    await poller.poll()
    with pytest.raises(PollError) as info:
        await poller.poll()
    assert info.value.reason == "http"
    assert "unexpected status code 500 with body: rpc error: No cluster leader" in str(info.value)
    assert poller.index == 5  # the next try blocks on what we knew
    await poller.aclose()


async def test_truncated_body_is_a_transport_error(raw_fake: MakeFake) -> None:
    body = kv_body("services/prod", doc(1))

    async def truncated(request: FakeRequest) -> bytes:
        return http_response(200, body[: len(body) // 2], {"X-Consul-Index": "5"}, length=len(body))

    fake = await raw_fake(truncated)
    poller = _poller(fake)
    with pytest.raises(PollError) as info:
        await poller.poll()
    assert info.value.reason == "transport" and poller.index == 0
    await poller.aclose()


async def test_after_a_broken_connection_the_next_read_is_immediate(raw_fake: MakeFake) -> None:
    calls = 0

    async def flaky(request: FakeRequest) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 2:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{"  # cut off: the registry died
        return http_response(200, kv_body("services/prod", doc(1)), {"X-Consul-Index": str(900 if calls == 1 else 3)})

    fake = await raw_fake(flaky)
    poller = _poller(fake, wait=60.0)
    await poller.poll()
    with pytest.raises(PollError):
        await poller.poll()
    # The registry came back with indexes that started over: no blocking on 900 (it would wait out 60 s).
    result = await poller.poll()
    assert [r.query.get("index") for r in fake.requests] == [None, "900", None]
    assert result.index == 3 and poller.index == 3
    # 900 → 3 is the index going backwards even though the error had already reset what is sent: flagged, so
    # the watcher does not take a key missing from the new registry for a deletion (test_stale.py).
    assert result.reset and poller.resets == 1
    await poller.aclose()


async def test_oversize_payloads_are_refused(raw_fake: MakeFake) -> None:
    big = b"[" + b" " * 5000 + b"]"
    fake = await raw_fake(scripted((200, big, 5)))
    with pytest.raises(PollError) as info:
        await _poller(fake, max_bytes=4000).poll()  # value (after base64) over the limit
    assert info.value.reason == "oversize"
    with pytest.raises(PollError) as info:
        await _poller(fake, max_bytes=100).poll()  # the answer itself is over limit*4/3 + envelope?
    assert info.value.reason == "oversize"

    async def huge(request: FakeRequest) -> bytes:
        return http_response(200, b"[", {"X-Consul-Index": "5"}, length=50_000_000)

    fake2 = await raw_fake(huge)
    began = time.monotonic()
    with pytest.raises(PollError) as info:
        await _poller(fake2, max_bytes=1000).poll()  # refused on Content-Length, before reading
    assert info.value.reason == "oversize" and time.monotonic() - began < 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "non-singular"),
        (b'[{"Key": "a", "Value": null}, {"Key": "b", "Value": null}]', "non-singular"),
        (b'[{"Key": "services/prod", "Value": "***"}]', "not base64"),
        (b'[{"Key": "services/prod", "Value": 5}]', "not a string"),
    ],
)
async def test_garbage_answers_are_protocol_errors(raw_fake: MakeFake, body: bytes, message: str) -> None:
    async def garbage(request: FakeRequest) -> bytes:
        return http_response(200, body, {"X-Consul-Index": "5"})

    fake = await raw_fake(garbage)
    with pytest.raises(PollError) as info:
        await _poller(fake).poll()
    assert info.value.reason == "protocol" and message in str(info.value)


async def test_bad_index_header_and_empty_value(raw_fake: MakeFake) -> None:
    async def answer(request: FakeRequest) -> bytes:
        if "index" in request.query:
            return http_response(200, kv_body("services/prod", b""), {"X-Consul-Index": "soon"})
        return http_response(200, kv_body("services/prod", None), {"X-Consul-Index": "4"})

    fake = await raw_fake(answer)
    poller = _poller(fake)
    empty = await poller.poll()
    assert empty.data == b""  # Consul's "Value": null: the key exists, empty (the watcher rejects it as "empty")
    with pytest.raises(PollError, match="X-Consul-Index"):
        await poller.poll()


async def test_key_is_escaped_and_token_sent(raw_fake: MakeFake) -> None:
    fake = await raw_fake(scripted((404, None, 1)))
    client = HTTPClient(fake.url, headers={"X-Consul-Token": "tok"})
    poller = ConsulKVPoller(lambda: client, "/team a/svc?x", limiter=TokenBucket(5, 0))
    await poller.poll()
    req = fake.requests[0]
    assert req.path == "/v1/kv/team%20a/svc%3Fx" and req.headers["x-consul-token"] == "tok"
    assert poller.key == "team a/svc?x"
    await poller.aclose()


async def test_value_is_base64_decoded(raw_fake: MakeFake) -> None:
    raw = bytes(range(256))

    async def answer(request: FakeRequest) -> bytes:
        body = b'[{"Key": "services/prod", "Value": "%s", "ModifyIndex": 3}]' % base64.b64encode(raw)
        return http_response(200, body, {"X-Consul-Index": "3"})

    fake = await raw_fake(answer)
    assert (await _poller(fake).poll()).data == raw
