"""The discovery watcher: polls a source, validates what it gets, and publishes immutable snapshots.

Readers (``/services``, the application) read ``discover.snapshot`` — one attribute read of a frozen value that
is replaced whole on every change. No lock, no copy (the seed took an RWMutex and copied the list per read).
Code that must react to changes awaits :meth:`Discover.changed` or iterates :meth:`Discover.updates`.

The loop, per poll:

* failure → ``stator_discovery_errors_total{reason}``, back off (capped exponential, jittered), keep serving the
  last good set; logs are bounded: the 1st, 2nd, 4th, 8th, ... failure of a streak (and any change of reason),
  then one ``discovery recovered`` line;
* the same bytes as last time (blake2b of the raw payload) → nothing to do: a timed-out blocking query, an
  etcd watch restart, a touched file;
* missing key/file → publish an empty set in state ``missing`` ("no services published yet");
* missing key right after the source's index went backwards (``PollResult.reset``: a registry restarted
  without its data, a restored snapshot) → *not* a deletion: the last good set is kept in state ``stale``,
  said once in the log, in ``/monitor`` and by ``stator_discovery_stale``; it stays until the key is published
  again (a deletion seen with an advancing index still empties the set, as before);
* a document that does not decode or validate → counted, logged once per distinct payload, last good set kept;
* otherwise → publish a new snapshot (``updating services``, as the seed logged it).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from stator.backoff import Backoff
from stator.discover.model import InvalidDocument, ServiceEntry, decode_services
from stator.discover.poller import POLL_REASONS, Poller, PollError, PollResult
from stator.logs import Logger

State = Literal["waiting", "ok", "missing", "stale"]
# errors_total reasons beyond the pollers': documents that arrive but cannot be used, and our own bugs.
DOCUMENT_REASONS: Final = ("invalid", "empty", "internal")
_BAD_PAYLOADS_REMEMBERED: Final = 32


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published state of the services set. Never mutated: a change publishes a new one.

    ``version`` counts publications by this process (0 = nothing yet); ``index`` is the source's own version
    (Consul index, etcd revision, file change count) of the payload published; ``body`` is the ``/services``
    answer, rendered once at publication so serving it costs no work.
    """

    services: tuple[ServiceEntry, ...]
    version: int
    state: State
    source: str
    index: int | None
    updated_at: float | None
    body: bytes = field(repr=False, compare=False)

    @staticmethod
    def make(
        services: tuple[ServiceEntry, ...],
        version: int,
        state: State,
        source: str,
        index: int | None,
        updated_at: float | None,
    ) -> Snapshot:
        body = orjson.dumps(
            {
                "services": [s.as_json() for s in services],
                "updated_at": updated_at,
                "source": source,
                "index": index,
                "version": version,
                "state": state,
            }
        )
        return Snapshot(services, version, state, source, index, updated_at, body)


class DiscoveryMetrics:
    """The watcher's metrics, registered on the service's registry (never prometheus_client's global one)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.updates = Counter(
            "stator_discovery_updates_total",
            "Services sets published by the discovery watcher.",
            registry=registry,
        )
        self.errors = Counter(
            "stator_discovery_errors_total",
            "Discovery polls that failed or brought an unusable document, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in (*POLL_REASONS, *DOCUMENT_REASONS):
            self.errors.labels(reason)  # present at 0, so rate() and alerts work before the first error
        self.last_update = Gauge(
            "stator_discovery_last_update_timestamp_seconds",
            "Unix time the services set last changed (0 = never).",
            registry=registry,
        )
        self.services = Gauge(
            "stator_discovery_services",
            "Services in the current set.",
            registry=registry,
        )
        self.stale = Gauge(
            "stator_discovery_stale",
            "1 while the last good services set is kept although the source lost the key (its index went"
            " backwards: a registry restarted without its data); 0 otherwise.",
            registry=registry,
        )
        self.resets = Counter(
            "stator_discovery_source_resets_total",
            "Times the source's index (Consul index, etcd revision) went backwards.",
            registry=registry,
        )


class Discover:
    """The discovery worker (``service.add_worker(discover)``) and the API to its current services set."""

    name = "discovery"

    def __init__(
        self,
        poller: Poller,
        *,
        logger: Logger,
        registry: CollectorRegistry | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.poller = poller
        self.logger = logger
        self.metrics = DiscoveryMetrics(registry)
        self.backoff = Backoff(retry_initial, max(retry_initial, retry_max), rng=rng)
        self.snapshot: Snapshot = Snapshot.make((), 0, "waiting", poller.source, None, None)
        self._changed = asyncio.Event()
        self._draining = False
        self._last_digest: bytes | None = None
        self._seen_any = False
        self._bad_logged: OrderedDict[bytes, None] = OrderedDict()
        # What /monitor shows beyond the snapshot.
        self.polls = 0
        self.last_poll_at: float | None = None
        self.source_index: int | None = None
        self.failures = 0  # consecutive
        self._failing_since: float | None = None
        self._last_reason: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.invalid_payloads = 0
        self.last_invalid: str | None = None
        self.last_invalid_at: float | None = None
        self.source_resets = 0
        self.last_reset_at: float | None = None
        self.stale_since: float | None = None

    # -- reading -----------------------------------------------------------------------------------------

    @property
    def services(self) -> tuple[ServiceEntry, ...]:
        return self.snapshot.services

    async def changed(self, after_version: int) -> Snapshot:
        """The first snapshot whose version is above ``after_version`` (at once if the current one is).

        Returns the current snapshot early when the service starts draining, so long-polls end with it.
        """
        while self.snapshot.version <= after_version and not self._draining:
            await self._changed.wait()
        return self.snapshot

    async def updates(self) -> AsyncIterator[Snapshot]:
        """Every snapshot from now on (intermediate ones may be skipped when changes come faster than read)."""
        version = self.snapshot.version
        while True:
            snap = await self.changed(version)
            if snap.version == version:  # draining: no more updates worth waiting for
                return
            version = snap.version
            yield snap

    async def before_drain(self) -> None:
        """Called by the service at shutdown before the HTTP drain: release /services long-polls at once."""
        self._draining = True
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- the loop ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                try:
                    result = await self.poller.poll()
                except PollError as exc:
                    await self._failed(exc.reason, str(exc), None)
                    continue
                except Exception as exc:  # a bug in a poller: counted and retried like any failure
                    await self._failed("internal", f"{type(exc).__name__}: {exc}", exc)
                    continue
                self._succeeded()
                self._process(result)
        finally:
            # Release connections (a pending blocking query was cancelled with us); bounded, never hangs shutdown.
            try:
                async with asyncio.timeout(1.0):
                    await self.poller.aclose()
            except Exception as exc:
                self.logger.warning("discovery poller close failed", error=f"{type(exc).__name__}: {exc}")

    async def _failed(self, reason: str, message: str, exc: Exception | None) -> None:
        now = time.time()
        self.metrics.errors.labels(reason).inc()
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = now
        self.last_error = message
        self.last_error_at = now
        delay = self.backoff.next()
        n = self.failures
        # 1st, 2nd, 4th, 8th, ... of a streak, and whenever the reason changes: a registry down for an hour
        # writes a dozen lines, not thousands.
        if n & (n - 1) == 0 or reason != self._last_reason:
            fields: dict[str, Any] = {
                "source": self.poller.source,
                "key": self.poller.key,
                "reason": reason,
                "failures": n,
                "retry_in": round(delay, 3),
            }
            if exc is not None:
                self.logger.error("discovery poll failed", exc=exc, **fields)
            else:
                self.logger.warning("discovery poll failed", error=message, **fields)
        self._last_reason = reason
        await asyncio.sleep(delay)

    def _succeeded(self) -> None:
        now = time.time()
        self.polls += 1
        self.last_poll_at = now
        if self.failures:
            down = now - (self._failing_since or now)
            self.logger.info(
                "discovery recovered",
                source=self.poller.source,
                key=self.poller.key,
                failures=self.failures,
                down_seconds=round(down, 3),
            )
        self.failures = 0
        self._failing_since = None
        self._last_reason = None
        self.backoff.reset()

    def _process(self, result: PollResult) -> None:
        self.source_index = result.index
        if result.reset:
            self.source_resets += 1
            self.last_reset_at = time.time()
            self.metrics.resets.inc()
        data = result.data
        digest = b"missing" if data is None else hashlib.blake2b(data, digest_size=16).digest()
        if self._seen_any and digest == self._last_digest:
            return  # unchanged: a timed-out wait, a watch restart, a touched file
        self._seen_any = True
        self._last_digest = digest
        if data is None and result.reset and self.snapshot.state == "ok":
            self._stale(result)
            return
        if data is None:
            self.logger.warning(
                "no services published yet", source=self.poller.source, key=self.poller.key, index=result.index
            )
            self._publish((), "missing", result.index)
            return
        try:
            services = decode_services(data)
        except InvalidDocument as exc:
            problem = exc
        else:
            self._publish(services, "ok", result.index)
            return
        # Outside the except block: a bad document is the operator's news, not a stack trace of ours.
        self._invalid(digest, problem, result, len(data))

    def _stale(self, result: PollResult) -> None:
        """The key vanished together with the source's history: keep the set, say so once."""
        now = time.time()
        kept = self.snapshot
        self.stale_since = now
        self.metrics.stale.set(1)
        self.logger.warning(
            "services key missing after the registry's index went backwards (restarted without its data?);"
            " keeping the last good set until it is published again",
            source=self.poller.source,
            key=self.poller.key,
            index=result.index,
            kept_index=kept.index,
            kept_services=len(kept.services),
        )
        # A new version (long-polls see the state change); the set, its index and updated_at are the kept ones.
        self.snapshot = Snapshot.make(
            kept.services, kept.version + 1, "stale", kept.source, kept.index, kept.updated_at
        )
        self._wake()

    def _invalid(self, digest: bytes, exc: InvalidDocument, result: PollResult, size: int) -> None:
        now = time.time()
        reason = "empty" if exc.kind == "empty" else "invalid"
        self.metrics.errors.labels(reason).inc()
        self.invalid_payloads += 1
        self.last_invalid = str(exc)
        self.last_invalid_at = now
        if digest in self._bad_logged:
            self._bad_logged.move_to_end(digest)
            return  # this very payload was already reported (A bad, B bad, A bad again)
        self._bad_logged[digest] = None
        if len(self._bad_logged) > _BAD_PAYLOADS_REMEMBERED:
            self._bad_logged.popitem(last=False)
        self.logger.error(
            "invalid services document; keeping the last good set",
            source=self.poller.source,
            key=self.poller.key,
            index=result.index,
            bytes=size,
            reason=reason,
            error=str(exc),
            kept_services=len(self.snapshot.services),
        )

    def _publish(self, services: tuple[ServiceEntry, ...], state: State, index: int) -> None:
        now = time.time()
        if self.stale_since is not None:
            self.logger.info(
                "services key published again; no longer stale",
                source=self.poller.source,
                key=self.poller.key,
                stale_seconds=round(now - self.stale_since, 3),
            )
            self.stale_since = None
            self.metrics.stale.set(0)
        snap = Snapshot.make(services, self.snapshot.version + 1, state, self.poller.source, index, now)
        self.snapshot = snap  # the one atomic swap readers see
        self.metrics.updates.inc()
        self.metrics.services.set(len(services))
        self.metrics.last_update.set(now)
        if state == "ok":
            self.logger.info(
                "updating services",
                source=snap.source,
                key=self.poller.key,
                services=len(services),
                index=index,
                version=snap.version,
            )
        self._wake()

    # -- /monitor ----------------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "source": snap.source,
            "key": self.poller.key,
            "state": snap.state,
            "healthy": self.failures == 0,
            # The set is the last good one, kept although the source lost the key (see ``_stale``).
            "stale": snap.state == "stale",
            "stale_since": self.stale_since,
            "source_resets": self.source_resets,
            "last_reset_at": self.last_reset_at,
            "version": snap.version,
            "index": snap.index,
            "services": len(snap.services),
            "updated_at": snap.updated_at,
            "polls": self.polls,
            "last_poll_at": self.last_poll_at,
            "source_index": self.source_index,
            "consecutive_failures": self.failures,
            "failing_since": self._failing_since,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "invalid_payloads": self.invalid_payloads,
            "last_invalid": self.last_invalid,
            "last_invalid_at": self.last_invalid_at,
            "poller": self.poller.monitor(),
        }
