"""The roster worker: keeps this instance registered with a registry for as long as it serves.

What it does, and why each differs from the seed (which registered once before serving, re-registered every 15
minutes without backoff, and logged every failure):

* registers only once the HTTP server listens and readiness passes, so the registry never advertises an instance
  that cannot answer yet; a registry that is down at start delays registration, never serving;
* trues up every ``interval``: a cheap presence check, and a re-registration when the registry lost the instance
  (restarted empty, reaped it, lease expired) - an instance is invisible for at most one interval, not 15 minutes;
* keeps registrations that need it alive between true-ups (a Consul TTL check, an etcd lease): ``heartbeat``;
* retries failures with capped exponential backoff and jitter (never a tight loop, never fatal);
* writes one log line per *state change* (registered, lost, registry unreachable, reachable again, deregistered),
  so a registry outage of a day is two lines, not 10,000; every failure still counts in metrics and /monitor;
* deregisters at shutdown in :meth:`Roster.before_drain`, after readiness flips and before the HTTP drain, with
  its own timeout; an in-flight registration is cancelled first so it cannot land after the deregistration.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge

from stator.backoff import Backoff
from stator.logs import Logger

T = TypeVar("T")

RosterState = Literal["waiting", "registered", "lost", "unreachable", "deregistering", "deregistered", "stopped"]


@dataclass(frozen=True)
class Instance:
    """What is registered: one running instance of a service, as the registry should advertise it."""

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    # Where the registry (Consul) probes readiness; the ops port when the ops endpoints are served separately.
    health_url: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "health_url": self.health_url,
        }


@runtime_checkable
class Registrar(Protocol):
    """One registry's way to register, check and remove an instance. Every call may raise on registry errors;
    the roster counts, backs off and retries - a registrar never retries by itself."""

    @property
    def kind(self) -> str:
        """Short registry name for logs and metric labels: ``consul``, ``etcd``."""

    @property
    def endpoint(self) -> str:
        """Where the registry is (for logs and /monitor; no credentials)."""

    @property
    def heartbeat_interval(self) -> float | None:
        """How often :meth:`heartbeat` must run to keep the registration alive; None when it need not run."""

    async def register(self, instance: Instance) -> None:
        """Register (idempotent: registering a registered instance refreshes it)."""

    async def deregister(self, instance: Instance) -> None:
        """Remove the instance; an instance the registry does not know counts as removed."""

    async def present(self, instance: Instance) -> bool:
        """Cheap check that the registry still has the instance."""

    async def heartbeat(self, instance: Instance, ready: bool, note: str) -> bool:
        """Keep the registration alive and report readiness; False when the registry no longer has it."""

    async def aclose(self) -> None:
        """Release connections."""


Readiness = Callable[[], Awaitable[tuple[bool, str]]]
"""Returns (ready, note): whether the instance should receive traffic, and why not when it should not."""


class _Interrupted(Exception):
    """A registry call was cancelled because shutdown began."""


class RosterMetrics:
    """The roster's metrics, in the service's own registry."""

    def __init__(self, registry: CollectorRegistry, kind: str) -> None:
        self.up = Gauge(
            "stator_registration_up",
            "1 while this instance is registered (per the last registry answer), else 0.",
            ["registry"],
            registry=registry,
        ).labels(kind)
        self.registrations = Counter(
            "stator_registration_registrations",
            "Successful registrations: the first one and every re-registration after the registry lost the instance.",
            ["registry"],
            registry=registry,
        ).labels(kind)
        self.lost = Counter(
            "stator_registration_lost",
            "Times the registry no longer had this instance (restarted empty, reaped it, lease expired).",
            ["registry"],
            registry=registry,
        ).labels(kind)
        self._failures = Counter(
            "stator_registration_failures",
            "Failed registry calls, by operation (register, present, heartbeat, deregister).",
            ["registry", "operation"],
            registry=registry,
        )
        self.failures = {
            op: self._failures.labels(kind, op) for op in ("register", "present", "heartbeat", "deregister")
        }
        self.last_success = Gauge(
            "stator_registration_last_success_timestamp_seconds",
            "Unix time of the last successful registry call (0 = none yet).",
            ["registry"],
            registry=registry,
        ).labels(kind)


class Roster:
    """The registration worker (``name = "roster"``); see the module docstring. Also a :class:`PreDrain`."""

    name = "roster"

    def __init__(
        self,
        registrar: Registrar,
        describe: Callable[[], Instance | None],
        readiness: Readiness,
        logger: Logger,
        registry: CollectorRegistry,
        *,
        interval: float = 30.0,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
        deregister_timeout: float = 5.0,
        wait_poll: float = 0.25,
    ) -> None:
        self.registrar = registrar
        self.describe = describe
        self.readiness = readiness
        self.logger = logger.bind(registry=registrar.kind)
        self.interval = interval
        self.deregister_timeout = deregister_timeout
        # While waiting for the server to listen and readiness to pass; never slower than the true-up.
        self.wait_poll = min(wait_poll, interval)
        self.backoff = Backoff(retry_initial, max(retry_initial, retry_max))
        self.metrics = RosterMetrics(registry, registrar.kind)

        self.state: RosterState = "waiting"
        self.instance: Instance | None = None
        self.registered = False  # what the last registry answer says, not what we hope
        self.attempted = False  # a register call was sent: the registry may know us, deregister at shutdown
        self.registrations = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.lost_count = 0
        self.registered_at: float | None = None
        self.last_success_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.unreachable_since: float | None = None
        self._ready = True
        self._next_trueup = math.inf
        self._next_beat = math.inf
        self._draining = False
        self._wake = asyncio.Event()
        self._op: asyncio.Future[Any] | None = None

    # -- the worker --------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.instance is None:
                instance = await self._wait_until_ready()
                if instance is None:
                    return await self._idle()
                self.instance = instance  # kept for the life of the process: every call describes the same entry
            while not self._draining:
                delay = await self._step(self.instance)
                await self._sleep(delay)
            await self._idle()
        except asyncio.CancelledError:
            # Workers are cancelled after the HTTP drain; deregistration already happened in before_drain.
            if self.state != "deregistered":
                self._set_state("stopped", log=False)
            with contextlib.suppress(Exception):
                await self.registrar.aclose()
            raise

    async def _idle(self) -> None:
        # Shutdown began: nothing more to do until the supervisor cancels us. Returning would mark the worker
        # "finished", which /monitor would show as if registration had given up.
        await asyncio.Event().wait()

    async def _wait_until_ready(self) -> Instance | None:
        """Poll until the server listens and readiness passes; None if shutdown began first."""
        while not self._draining:
            instance = self.describe()
            if instance is not None:
                ready, _ = await self.readiness()
                if ready:
                    return instance
            await self._sleep(self.wait_poll)
        return None

    async def _step(self, instance: Instance) -> float:
        """One round: register, heartbeat or true-up, whichever is due. Returns the delay until the next."""
        now = time.monotonic()
        try:
            if not self.registered:
                await self._register(instance)
            else:
                if now >= self._next_beat:
                    ready, note = await self.readiness()
                    self._ready = ready
                    alive = await self._call("heartbeat", self.registrar.heartbeat(instance, ready, note))
                    self._next_beat = time.monotonic() + self._beat_interval()
                    if not alive:
                        await self._lost(instance)
                if self.registered and now >= self._next_trueup:
                    found = await self._call("present", self.registrar.present(instance))
                    self._next_trueup = time.monotonic() + self.interval
                    if not found:
                        await self._lost(instance)
                    else:
                        self.metrics.up.set(1)
                        self._recovered()
        except _Interrupted:
            return 0.0
        except Exception:
            # _call counted and logged it; wait out the backoff and retry what was due (its time stays past).
            return self.backoff.next()
        self.backoff.reset()
        return max(0.0, min(self._next_trueup, self._next_beat) - time.monotonic())

    def _beat_interval(self) -> float:
        beat = self.registrar.heartbeat_interval
        return math.inf if beat is None else beat

    async def _register(self, instance: Instance) -> None:
        self.attempted = True
        await self._call("register", self.registrar.register(instance))
        now = time.monotonic()
        self.registrations += 1
        self.metrics.registrations.inc()
        self.registered = True
        self.registered_at = time.time()
        self.metrics.up.set(1)
        self._next_trueup = now + self.interval
        self._next_beat = now + self._beat_interval()
        failures = self._clear_failures()
        fields: dict[str, Any] = {
            "id": instance.id,
            "address": instance.address,
            "port": instance.port,
            "endpoint": self.registrar.endpoint,
        }
        if failures:
            fields["after_failures"] = failures
        self._set_state("registered", **fields)

    async def _lost(self, instance: Instance) -> None:
        self.registered = False
        self.lost_count += 1
        self.metrics.lost.inc()
        self.metrics.up.set(0)
        self._clear_failures()
        self._set_state("lost", id=instance.id)
        await self._register(instance)

    def _recovered(self) -> None:
        """A presence check or heartbeat succeeded: if calls were failing, the registry is reachable again."""
        if self.state == "unreachable":
            down = time.time() - self.unreachable_since if self.unreachable_since else None
            failures = self._clear_failures()
            self._set_state(
                "registered",
                msg="registry reachable again",
                failures=failures,
                down_seconds=round(down, 3) if down is not None else None,
            )

    def _clear_failures(self) -> int:
        failures = self.consecutive_failures
        self.consecutive_failures = 0
        self.unreachable_since = None
        return failures

    async def _call(self, operation: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run one registry call as a task that :meth:`before_drain` can cancel; count and log its outcome."""
        if self._draining:
            # Shutdown began while we awaited something else (readiness): no new call may start, least of all
            # a registration that would land after the deregistration.
            coro.close()
            raise _Interrupted
        task = asyncio.ensure_future(coro)
        self._op = task
        try:
            await asyncio.wait({task})
        finally:
            self._op = None
            if not task.done():  # we were cancelled ourselves
                task.cancel()
        if task.cancelled():
            raise _Interrupted
        exc = task.exception()
        if exc is not None:
            self._failed(operation, exc)
            raise exc
        self.last_success_at = time.time()
        self.metrics.last_success.set(self.last_success_at)
        result: T = task.result()
        if operation == "heartbeat" and result:
            self.metrics.up.set(1)
            self._recovered()
        return result

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.metrics.failures[operation].inc()
        # Unknown is not "up": an instance whose registry cannot be reached is, for alerting, not registered.
        self.metrics.up.set(0)
        self.last_error = _describe_error(exc)
        self.last_error_at = time.time()
        if self.state != "unreachable":
            self.unreachable_since = time.time()
            # The retry delay is not known yet (the caller takes it); say what the first one can be at most.
            self._set_state(
                "unreachable",
                operation=operation,
                error=self.last_error,
                endpoint=self.registrar.endpoint,
                retry_max=self.backoff.maximum,
            )
        else:
            self.logger.debug("registry call failed", operation=operation, error=self.last_error)

    def _set_state(self, state: RosterState, *, log: bool = True, msg: str | None = None, **fields: Any) -> None:
        """Change state, writing one line per change (and none when nothing changed)."""
        previous = self.state
        self.state = state
        if not log or (previous == state and msg is None):
            return
        text = msg or _MESSAGES.get(state)
        if text is None:
            return
        if state in ("lost", "unreachable"):
            self.logger.warning(text, **fields)
        else:
            self.logger.info(text, **fields)

    async def _sleep(self, delay: float) -> None:
        """Sleep, waking early when shutdown begins."""
        if self._draining:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    # -- shutdown ----------------------------------------------------------------------------------------

    async def before_drain(self) -> None:
        """Deregister (called after readiness flips, before the HTTP drain), within ``deregister_timeout``."""
        self._draining = True
        self._wake.set()
        instance = self.instance
        if instance is None or not self.attempted:
            self.metrics.up.set(0)
            self._set_state("stopped", log=False)
            return
        self._set_state("deregistering", log=False)
        try:
            async with asyncio.timeout(self.deregister_timeout):
                op = self._op
                if op is not None and not op.done():
                    # A registration landing after the deregistration would leave a ghost entry behind.
                    op.cancel()
                    await asyncio.wait({op})
                await self._deregister(instance)
        except TimeoutError:
            self.metrics.failures["deregister"].inc()
            self.logger.error(
                "deregistration timed out",
                id=instance.id,
                timeout=self.deregister_timeout,
                endpoint=self.registrar.endpoint,
                last_error=self.last_error,
            )
        finally:
            self.registered = False
            self.metrics.up.set(0)

    async def _deregister(self, instance: Instance) -> None:
        # Retried within the timeout: one 500 from a busy registry should not leave a ghost entry behind.
        backoff = Backoff(min(0.1, self.backoff.initial), 1.0)
        attempts = 0
        while True:
            attempts += 1
            try:
                await self.registrar.deregister(instance)
            except Exception as exc:
                self.failures += 1
                self.metrics.failures["deregister"].inc()
                self.last_error = _describe_error(exc)
                self.last_error_at = time.time()
                if attempts == 1:
                    self.logger.warning("deregistration failed, retrying", id=instance.id, error=self.last_error)
                await asyncio.sleep(backoff.next())
                continue
            self.last_success_at = time.time()
            self.metrics.last_success.set(self.last_success_at)
            self._set_state("deregistered", id=instance.id, attempts=attempts, endpoint=self.registrar.endpoint)
            return

    # -- what /monitor shows -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        due = min(self._next_trueup, self._next_beat)
        return {
            "registry": self.registrar.kind,
            "endpoint": self.registrar.endpoint,
            "state": self.state,
            "registered": self.registered,
            "instance": self.instance.as_json() if self.instance else None,
            "ready": self._ready,
            "registered_at": self.registered_at,
            "last_success_at": self.last_success_at,
            "registrations": self.registrations,
            "lost": self.lost_count,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "interval_seconds": self.interval,
            "heartbeat_interval_seconds": self.registrar.heartbeat_interval,
            "next_call_in_seconds": round(max(0.0, due - now), 3) if math.isfinite(due) else None,
        }


_MESSAGES: dict[str, str] = {
    "registered": "registered",
    "lost": "registration lost",
    "unreachable": "registry unreachable",
    "deregistered": "deregistered",
}


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
