"""The upstream client: the project HTTP client's request API, sent to a healthy instance of a service.

One call (``await upstream.post("/sum", json=...)``) goes through, in order:

1. the **circuit breaker** (:mod:`~stator.upstream.breaker`) — refused at once while the upstream is down;
2. the **client-side rate limit** (:mod:`~stator.upstream.limiter`) — spaced out, or refused beyond its wait;
3. the **instance set** (:mod:`~stator.upstream.instancer`) — the first call waits for discovery's first answer
   (within the deadline); an empty set is :class:`~stator.upstream.errors.NoInstances` at once, never a hang;
4. **attempts** — the **balancer** picks among the instances outlier detection admits (never the previous
   attempt's instance when there is another); each attempt has its own timeout, a CLIENT span (child of one
   span for the call, ``http.request.resend_count`` on retries) and its counts; its result feeds outlier
   detection; a failed attempt is retried per the **retry policy** while the **retry budget** and the deadline
   allow (:mod:`~stator.upstream.retry`).

An instance's answer is returned whatever its status (after the retries, the last answer), like
:class:`~stator.client.HTTPClient`; failures without an answer raise an :class:`~stator.upstream.errors.
UpstreamError`. ``response.extensions["stator.upstream.instance"]`` names the instance that answered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Unpack

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from stator.client import HTTPClient, ResponseTooLarge
from stator.client.http import RequestOptions
from stator.logs import Logger
from stator.upstream.balancer import Balancer
from stator.upstream.breaker import CircuitBreaker
from stator.upstream.deadlines import AttemptDeadlines
from stator.upstream.errors import AttemptsFailed, CircuitOpen, DeadlineExceeded, NoInstances, RateLimited
from stator.upstream.instances import Endpoint, Instance
from stator.upstream.limiter import ClientRateLimiter
from stator.upstream.outlier import OutlierDetector
from stator.upstream.retry import RetryBudget, RetryPolicy
from stator.upstream.telemetry import CALL_OUTCOMES, DEFAULT_BUCKETS, EndpointStats
from stator.upstream.window import RollingCounts

INSTANCE_EXTENSION = "stator.upstream.instance"
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing reached the instance: safe to retry any method


class Instancer(Protocol):
    """Where the client's instance set comes from (:mod:`stator.upstream.instancer`)."""

    @property
    def source(self) -> str: ...

    @property
    def instances(self) -> tuple[Instance, ...] | None:
        """The current set; None until the source first answered."""

    @property
    def updates(self) -> int: ...

    @property
    def errors(self) -> int: ...

    def subscribe(self, subscriber: Callable[[tuple[Instance, ...]], None]) -> None:
        """Call ``subscriber`` with every new set (at once with the current one, if known)."""

    async def wait_ready(self) -> None:
        """Return once the first set is known."""

    def monitor(self) -> dict[str, Any]: ...


class Upstream:
    def __init__(
        self,
        name: str,
        instancer: Instancer,
        http: HTTPClient,
        *,
        logger: Logger,
        balancer: Balancer,
        policy: RetryPolicy,
        budget: RetryBudget,
        outlier: OutlierDetector,
        breaker: CircuitBreaker | None = None,
        limiter: ClientRateLimiter | None = None,
        tracer: trace.Tracer | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.instancer = instancer
        self.http = http
        self.logger = logger
        self.balancer = balancer
        self.policy = policy
        self.budget = budget
        self.outlier = outlier
        self.breaker = breaker
        self.limiter = limiter
        self._tracer = tracer
        self._buckets = tuple(buckets)
        self._clock = clock
        self._random = (rng or random.Random()).random
        self._by_id: dict[str, Endpoint] = {}
        self.deadlines = AttemptDeadlines()
        self.endpoints: list[Endpoint] = []  # replaced whole on every change: iterate without copying
        self.call_outcomes = dict.fromkeys(CALL_OUTCOMES, 0)
        self.retries = 0
        self.panics = 0  # picks made among ejected instances because none was admitted
        instancer.subscribe(self._update)

    # -- the instance set ------------------------------------------------------------------------------------

    def _update(self, instances: tuple[Instance, ...]) -> None:
        by_id: dict[str, Endpoint] = {}
        for instance in instances:
            endpoint = self._by_id.get(instance.id)
            if endpoint is None or endpoint.instance != instance:
                window = RollingCounts(self.outlier.interval, clock=self._clock)
                endpoint = Endpoint(instance, window, EndpointStats(self._buckets))
            else:
                endpoint.instance = instance  # same address; tags or meta may have changed
            by_id[instance.id] = endpoint
        self._by_id = by_id
        self.endpoints = list(by_id.values())

    def _pick(self, avoid: Endpoint | None) -> tuple[Endpoint, bool]:
        endpoints = self.endpoints
        now = self._clock()
        admits = self.outlier.admits
        admitted = [e for e in endpoints if e.state == "healthy" or admits(e, now)]
        if not admitted:
            self.panics += 1  # every instance ejected: use them all rather than fail the call
            return self.balancer.pick(endpoints, avoid), False
        endpoint = self.balancer.pick(admitted, avoid)
        return endpoint, endpoint.state != "healthy" and self.outlier.picked(endpoint)

    # -- the request API -------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        max_body: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> httpx.Response:
        """Send ``method path`` (a path, with query if any) to an instance and read the answer.

        ``idempotent`` overrides the method's default for retries after a request may have been received.
        """
        if not path.startswith("/"):
            raise ValueError(f"upstream {self.name!r}: request a path starting with '/', not {path!r}")
        method = method.upper()
        breaker = self.breaker
        generation = 0
        if breaker is not None:
            generation = breaker.acquire()
            if generation < 0:
                self.call_outcomes["circuit_open"] += 1
                raise CircuitOpen(self.name, breaker.retry_in())
        tracer = self._tracer
        span = None
        parent = None  # the context the attempts' CLIENT spans start in: made once per call
        if tracer is not None:
            span = tracer.start_span(
                f"{method} {self.name}",
                kind=SpanKind.INTERNAL,
                attributes={"stator.upstream": self.name, "http.request.method": method},
            )
            parent = trace.set_span_in_context(span)
        verdict: bool | None = None  # failed? None = no verdict for the breaker (refused before sending)
        try:
            response = await self._call(method, path, idempotent, max_body, options, span, parent)
            verdict = response.status_code >= 500
            self.call_outcomes["failure" if verdict else "success"] += 1
            return response
        except (AttemptsFailed, DeadlineExceeded) as exc:
            verdict = True
            self.call_outcomes["deadline" if isinstance(exc, DeadlineExceeded) else "failure"] += 1
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            if breaker is not None:
                if verdict is None:
                    breaker.release(generation)
                else:
                    breaker.record(generation, verdict)
            if span is not None:
                if verdict:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()

    async def _call(
        self,
        method: str,
        path: str,
        idempotent: bool | None,
        max_body: int | None,
        options: RequestOptions,
        span: trace.Span | None,
        parent: Context | None,
    ) -> httpx.Response:
        policy = self.policy
        clock = self._clock
        deadline = clock() + policy.deadline
        limiter = self.limiter
        if limiter is not None:
            wait = limiter.try_reserve()
            if wait < 0:
                self.call_outcomes["rate_limited"] += 1
                raise RateLimited(self.name, limiter.wait_for_token())
            if wait > 0:
                await asyncio.sleep(wait)
        if not self.endpoints:
            await self._no_endpoints(deadline)
        self.budget.deposit()
        may_retry = policy.idempotent(method, idempotent)
        previous: Endpoint | None = None
        error: BaseException | None = None
        answer: httpx.Response | None = None  # the last answer received, retryable or not
        attempt = 0
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            if not self.endpoints:
                await self._no_endpoints(deadline)
            endpoint, probe = self._pick(previous)
            response, error, unsent = await self._attempt(
                endpoint, probe, method, path, attempt, min(policy.try_timeout, remaining), max_body, options, parent
            )
            attempt += 1
            if response is not None:
                answer = response
                if response.status_code not in policy.statuses:
                    break
            if (
                attempt >= policy.attempts
                or not (unsent or may_retry)
                or clock() >= deadline
                or not self.budget.try_withdraw()
            ):
                break
            self.retries += 1
            delay = policy.backoff(attempt, self._random())
            if delay > 0:
                await asyncio.sleep(min(delay, max(0.0, deadline - clock())))
            previous = endpoint
        if span is not None:
            span.set_attribute("stator.upstream.attempts", attempt)
        if answer is not None:
            # The last answer, even a retryable one (and even when a later attempt got none): an instance's
            # own words say more than "connection refused".
            return answer
        if clock() >= deadline:
            raise DeadlineExceeded(self.name, f"deadline of {policy.deadline:g}s exceeded", attempt) from error
        raise AttemptsFailed(self.name, f"{attempt} attempt(s) failed: {_describe(error)}", attempt) from error

    async def _no_endpoints(self, deadline: float) -> None:
        if self.instancer.instances is None:
            try:
                async with asyncio.timeout(max(0.0, deadline - self._clock())):
                    await self.instancer.wait_ready()
            except TimeoutError:
                self.call_outcomes["no_instances"] += 1
                raise NoInstances(self.name, f"discovery ({self.instancer.source}) has not answered yet") from None
        if not self.endpoints:
            self.call_outcomes["no_instances"] += 1
            raise NoInstances(self.name, f"no instances ({self.instancer.source}: none registered and passing)")

    async def _attempt(
        self,
        endpoint: Endpoint,
        probe: bool,
        method: str,
        path: str,
        attempt: int,
        try_timeout: float,
        max_body: int | None,
        options: RequestOptions,
        parent: Context | None,
    ) -> tuple[httpx.Response | None, BaseException | None, bool]:
        """One attempt: (answer, error, unsent). Counts, spans and outlier detection happen here."""
        instance = endpoint.instance
        url = endpoint.url(path)
        span = None
        tracer = self._tracer
        if parent is not None and tracer is not None:
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "server.address": instance.address,
                "server.port": instance.port,
                "url.full": endpoint.base_url + path.partition("?")[0],
                "stator.upstream": self.name,
                "stator.upstream.instance": instance.id,
            }
            if attempt:
                attributes["http.request.resend_count"] = attempt
            span = tracer.start_span(method, context=parent, kind=SpanKind.CLIENT, attributes=attributes)
            headers = dict(options.get("headers") or {})
            _inject_traceparent(headers, span.get_span_context())
            options = {**options, "headers": headers}
        endpoint.outstanding += 1
        endpoint.requests += 1
        response: httpx.Response | None = None
        error: BaseException | None = None
        outcome = "success"
        http = self.http
        deadlines = self.deadlines
        start = time.perf_counter()
        try:
            timer = deadlines.start(try_timeout)  # asyncio.timeout's semantics, one loop timer for all attempts
            try:
                response = await http.send(http.build_request(method, url, **options), max_body=max_body)
            except BaseException as exc:
                if deadlines.end(timer, exc):
                    raise TimeoutError from exc
                raise
            deadlines.end(timer, None)
        except TimeoutError as exc:
            error, outcome = exc, "timeout"
        except _UNSENT as exc:
            error, outcome = exc, "connection_error"
        except httpx.TimeoutException as exc:
            error, outcome = exc, "timeout"
        except (httpx.HTTPError, ResponseTooLarge) as exc:
            error, outcome = exc, "error"
        except BaseException:
            # Cancelled (the caller went away): no verdict on the instance.
            endpoint.outstanding -= 1
            if probe:
                self.outlier.released(endpoint)
            if span is not None:
                span.end()
            raise
        endpoint.outstanding -= 1
        elapsed = time.perf_counter() - start
        if response is not None:
            status = response.status_code
            if status >= 500:
                outcome = "status_error"
            response.extensions[INSTANCE_EXTENSION] = instance.id
        endpoint.metrics.observe(outcome, elapsed)
        failed = outcome != "success"
        self.outlier.record(endpoint, failed, probe, self.endpoints)
        if span is not None:
            if response is not None:
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_attribute("error.type", str(response.status_code))
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", type(error).__qualname__)
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        return response, error, outcome == "connection_error"

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- what /monitor shows ---------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        now = self._clock()
        policy = self.policy
        return {
            "discovery": self.instancer.monitor(),
            "balancer": self.balancer.name,
            "instances": [e.snapshot(now) for e in self.endpoints],
            "outstanding": sum(e.outstanding for e in self.endpoints),
            "calls": dict(self.call_outcomes),
            "retries": self.retries,
            "retry_budget": {
                "percent": self.budget.percent,
                "min_per_second": self.budget.min_per_second,
                "available": round(self.budget.balance(), 2),
                "exhausted": self.budget.exhausted,
            },
            "policy": {
                "attempts": policy.attempts,
                "try_timeout_seconds": policy.try_timeout,
                "deadline_seconds": policy.deadline,
                "retry_statuses": sorted(policy.statuses),
                "retry_non_idempotent": policy.retry_non_idempotent,
            },
            "outlier": {"ejections": dict(self.outlier.ejections), "recoveries": self.outlier.recoveries},
            "panic_picks": self.panics,
            "breaker": self.breaker.snapshot() if self.breaker is not None else None,
            "limiter": self.limiter.snapshot() if self.limiter is not None else None,
        }


def _inject_traceparent(headers: dict[str, str], context: SpanContext) -> None:
    """W3C trace context for the callee, as ``TraceContextTextMapPropagator.inject`` writes it, straight from the
    attempt's span context (no Context object built per attempt just to be read back)."""
    if context.is_valid:
        headers["traceparent"] = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        if context.trace_state:
            headers["tracestate"] = context.trace_state.to_header()


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no attempt could be made"
    if isinstance(error, TimeoutError):
        return "per-try timeout"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
