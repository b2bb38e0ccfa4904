"""Per-attempt timeouts (stator.upstream.deadlines): asyncio.timeout's semantics with one timer per upstream."""

from __future__ import annotations

import asyncio

import pytest

from stator.upstream.deadlines import AttemptDeadlines


async def attempt(deadlines: AttemptDeadlines, seconds: float, work: float) -> str:
    """What the upstream client does around one attempt: ``work`` seconds of waiting, timed out after ``seconds``."""
    timer = deadlines.start(seconds)
    try:
        await asyncio.sleep(work)
    except BaseException as exc:
        if deadlines.end(timer, exc):
            raise TimeoutError from exc
        raise
    deadlines.end(timer, None)
    return "done"


async def test_an_attempt_past_its_deadline_times_out_and_leaves_its_task_uncancelled() -> None:
    deadlines = AttemptDeadlines()
    with pytest.raises(TimeoutError):
        await attempt(deadlines, 0.02, 60)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no stray cancellation is left for the caller's next await
    assert len(deadlines) == 0


async def test_attempts_in_time_are_not_cancelled_later() -> None:
    deadlines = AttemptDeadlines()
    for _ in range(50):
        assert await attempt(deadlines, 0.05, 0) == "done"
    assert len(deadlines) == 0
    await asyncio.sleep(0.1)  # the timer fires with nothing in flight: nobody is cancelled


async def test_a_shorter_deadline_started_later_fires_first() -> None:
    deadlines = AttemptDeadlines()
    slow = asyncio.create_task(attempt(deadlines, 30, 0.3))  # the timer is set 30 s out
    await asyncio.sleep(0)
    short = asyncio.create_task(attempt(deadlines, 0.02, 30))  # must move it earlier
    with pytest.raises(TimeoutError):
        await short
    assert not slow.done()
    assert await slow == "done"


async def test_many_attempts_expire_together_and_the_rest_keep_their_own_deadline() -> None:
    deadlines = AttemptDeadlines()
    hung = [asyncio.create_task(attempt(deadlines, 0.03, 30)) for _ in range(20)]
    quick = [asyncio.create_task(attempt(deadlines, 0.03, 0)) for _ in range(20)]
    later = asyncio.create_task(attempt(deadlines, 0.2, 30))
    results = await asyncio.gather(*hung, *quick, return_exceptions=True)
    assert [type(r) for r in results[:20]] == [TimeoutError] * 20
    assert results[20:] == ["done"] * 20
    assert not later.done()
    with pytest.raises(TimeoutError):
        await later
    assert len(deadlines) == 0


async def test_a_cancellation_from_the_caller_propagates_as_such() -> None:
    deadlines = AttemptDeadlines()
    task = asyncio.create_task(attempt(deadlines, 30, 30))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_a_caller_cancellation_racing_the_deadline_is_not_swallowed() -> None:
    deadlines = AttemptDeadlines()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(attempt(deadlines, 0.05, 30))
    await asyncio.sleep(0)
    # The caller cancels in the same loop iteration as the timer fires: the task sees two cancel requests.
    loop.call_at(deadlines._when, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task


def test_each_event_loop_gets_its_own_timer() -> None:
    deadlines = AttemptDeadlines()
    for _ in range(2):  # the second loop must not reuse the first (closed) loop's timer or attempts
        with pytest.raises(TimeoutError):
            asyncio.run(attempt(deadlines, 0.02, 30))
        assert asyncio.run(attempt(deadlines, 1, 0)) == "done"


def test_an_attempt_outside_a_task_is_refused() -> None:
    deadlines = AttemptDeadlines()

    async def outside() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def call() -> None:  # a plain callback: no current task
            try:
                with pytest.raises(RuntimeError, match="must run in a task"):
                    deadlines.start(1)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(None)

        loop.call_soon(call)
        await fut

    asyncio.run(outside())
