"""Per-attempt timeouts for every attempt of an upstream, with one event-loop timer between them.

``asyncio.timeout`` schedules a loop timer per use and cancels it on exit; the cancelled timer stays in the loop's
heap until its time comes (or the loop rebuilds the heap), so a client making thousands of calls a second with a
5 s per-try timeout keeps thousands of dead timers in the heap and pays for a heap push and a cancellation on every
attempt. Attempts of one upstream mostly share one timeout, so their deadlines arrive in the order they started:
:class:`AttemptDeadlines` keeps the attempts in flight in a dict and one timer for the earliest deadline. Starting
an attempt whose deadline is later than the timer's (the common case) only adds it to the dict.

When the timer fires, attempts past their deadline are cancelled exactly as ``asyncio.timeout`` does it (Python
3.11 semantics): their task is cancelled, and when the attempt ends with that ``CancelledError`` and no other
cancellation was requested meanwhile (``Task.uncancel``), :meth:`AttemptDeadlines.end` says so and the caller
raises ``TimeoutError``; a cancellation from elsewhere (the caller went away) still propagates as such.
"""

from __future__ import annotations

import asyncio
import math


class Attempt:
    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.expired = False


class AttemptDeadlines:
    """Deadlines of the attempts in flight on one event loop (a new loop starts afresh)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[Attempt, None] = {}  # insertion-ordered: mostly deadline order
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf  # when the timer fires (inf: no timer)

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, seconds: float) -> Attempt:
        """Time the current task out ``seconds`` from now, until :meth:`end`."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("an upstream attempt must run in a task")
        if loop is not self._loop:
            self._loop = loop  # attempts and timer of another (closed) loop are gone with it
            self._pending = {}
            self._handle = None
            self._when = math.inf
        attempt = Attempt(task, loop.time() + seconds)
        self._pending[attempt] = None
        if attempt.when < self._when:
            self._schedule(loop, attempt.when)
        return attempt

    def end(self, attempt: Attempt, error: BaseException | None) -> bool:
        """The attempt ended (``error`` is what it raised, if anything): True when that error is its own timeout,
        to be raised as ``TimeoutError``."""
        self._pending.pop(attempt, None)
        if not attempt.expired:
            return False
        return attempt.task.uncancel() <= attempt.cancelling and isinstance(error, asyncio.CancelledError)

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        self._handle = None
        self._when = math.inf
        earliest = math.inf
        expired = []
        for attempt in self._pending:
            if attempt.when <= when:
                expired.append(attempt)
            elif attempt.when < earliest:
                earliest = attempt.when
        for attempt in expired:
            del self._pending[attempt]
            attempt.expired = True
            attempt.task.cancel()
        if earliest < math.inf and self._loop is not None:
            self._schedule(self._loop, earliest)
