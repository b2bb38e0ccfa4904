"""Instancers: where an upstream's instance set comes from, kept current.

:class:`InstanceWatcher` follows a registry through a :class:`~stator.discover.poller.Poller` (Consul health
blocking queries, an etcd prefix watch) and a decoder that turns an answer into instances; it is a worker of the
service. :class:`StaticInstancer` is a fixed list.

The watcher's rules (the discovery watcher's, applied to instance sets):

* a failed poll keeps the last good set and backs off (capped exponential, jittered); its log lines are bounded —
  the 1st, 2nd, 4th, 8th, ... failure of a streak, then one ``upstream discovery recovered``;
* an answer that does not decode keeps the last good set and is logged once per distinct payload;
* the same bytes as last time change nothing (a blocking query that timed out);
* an empty set from a registry whose index went backwards (restarted without its data: instances re-register
  at their next true-up) keeps the last good set — logged once — until the registry reports instances again or
  confirms the empty set in a later answer;
* a new set is published whole (subscribers see an immutable tuple) with one ``upstream instances changed`` line
  naming what was added and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from stator.backoff import Backoff
from stator.discover.poller import Poller, PollError
from stator.logs import Logger
from stator.upstream.instances import Instance

Decoder = Callable[[bytes | None], tuple[Instance, ...]]
"""Turns one poll's data into the instance set; raises ValueError on an unusable answer."""

Subscriber = Callable[[tuple[Instance, ...]], None]
_BAD_REMEMBERED = 32


class _Publisher:
    def __init__(self, upstream: str, logger: Logger) -> None:
        self.upstream = upstream
        self.logger = logger
        self.instances: tuple[Instance, ...] | None = None  # None: not known yet
        self.updates = 0
        self.errors = 0
        self.updated_at: float | None = None
        self._ready = asyncio.Event()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)
        if self.instances is not None:
            subscriber(self.instances)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _publish(self, instances: tuple[Instance, ...]) -> None:
        previous = self.instances
        if previous is not None and _key(previous) == _key(instances):
            self.instances = instances  # tags or meta changed: keep them current, say nothing
            return
        before = {i.id for i in previous or ()}
        after = {i.id for i in instances}
        self.instances = instances
        self.updates += 1
        self.updated_at = time.time()
        self._ready.set()
        self.logger.info(
            "upstream instances changed",
            upstream=self.upstream,
            instances=len(instances),
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        for subscriber in self._subscribers:
            subscriber(instances)


def _key(instances: tuple[Instance, ...]) -> frozenset[Instance]:
    return frozenset(instances)


class StaticInstancer(_Publisher):
    """A fixed set of instances (``STATOR_UPSTREAM_INSTANCES``)."""

    source = "static"

    def __init__(self, upstream: str, instances: tuple[Instance, ...], logger: Logger) -> None:
        super().__init__(upstream, logger)
        self._publish(instances)

    def monitor(self) -> dict[str, Any]:
        return {"source": self.source, "state": "ok"}


class InstanceWatcher(_Publisher):
    """A worker following one upstream's instances in a registry (``service.add_worker(watcher)``)."""

    def __init__(
        self,
        upstream: str,
        poller: Poller,
        decode: Decoder,
        logger: Logger,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
    ) -> None:
        super().__init__(upstream, logger)
        self.name = f"upstream:{upstream}"
        self.poller = poller
        self.decode = decode
        self.backoff = Backoff(retry_initial, max(retry_initial, retry_max))
        self.failures = 0  # consecutive
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._last_reason: str | None = None
        self._digest: bytes | None = None
        self._bad: OrderedDict[bytes, None] = OrderedDict()

    @property
    def source(self) -> str:
        return self.poller.source

    async def run(self) -> None:
        try:
            while True:
                try:
                    result = await self.poller.poll()
                except PollError as exc:
                    await self._failed(exc.reason, str(exc))
                    continue
                except Exception as exc:  # a poller bug: counted and retried like any failure
                    await self._failed("internal", f"{type(exc).__name__}: {exc}")
                    continue
                self._succeeded()
                self._process(result.data, result.reset)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.poller.aclose()

    def _process(self, data: bytes | None, reset: bool = False) -> None:
        digest = hashlib.blake2b(data or b"\x00missing", digest_size=16).digest()
        if digest == self._digest:
            return
        try:
            instances = self.decode(data)
        except ValueError as exc:
            self.errors += 1
            if digest not in self._bad:
                self._bad[digest] = None
                if len(self._bad) > _BAD_REMEMBERED:
                    self._bad.popitem(last=False)
                kept = len(self.instances) if self.instances is not None else None
                self.logger.warning(
                    "upstream discovery answer unusable", upstream=self.upstream, error=str(exc), kept_instances=kept
                )
            return
        if reset and not instances and self.instances:
            self.logger.warning(
                "upstream registry lost its instances; keeping the last known ones",
                upstream=self.upstream,
                source=self.source,
                kept_instances=len(self.instances),
            )
            return
        self._digest = digest
        self._publish(instances)

    async def _failed(self, reason: str, message: str) -> None:
        self.errors += 1
        self.failures += 1
        self.last_error = message
        self.last_error_at = time.time()
        n = self.failures
        if reason != self._last_reason or n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th ... or a new reason
            self.logger.warning(
                "upstream discovery failed",
                upstream=self.upstream,
                source=self.source,
                reason=reason,
                error=message,
                failures=n,
                kept_instances=len(self.instances) if self.instances is not None else None,
            )
        self._last_reason = reason
        await asyncio.sleep(self.backoff.next())

    def _succeeded(self) -> None:
        if self.failures:
            self.logger.info("upstream discovery recovered", upstream=self.upstream, failures=self.failures)
        self.failures = 0
        self._last_reason = None
        self.backoff.reset()

    def monitor(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "key": self.poller.key,
            "state": "failing" if self.failures else ("ok" if self.instances is not None else "waiting"),
            "updates": self.updates,
            "updated_at": self.updated_at,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "poller": self.poller.monitor(),
        }
