"""What a call through an upstream can fail with, beyond an answer from an instance.

Each error carries ``status_code`` (Go kit's StatusCoder): raised inside a stator handler, the observability
middleware answers with that status, so a forwarder that cannot reach its dependency says 502/503/504 rather
than 500. An instance's own answer (a 404, a 500 after the retries) is *returned*, like the project HTTP client
does, never raised.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base of every upstream failure. ``attempts`` is how many requests were sent to instances."""

    status_code = 502

    def __init__(self, upstream: str, message: str, attempts: int = 0) -> None:
        self.upstream = upstream
        self.attempts = attempts
        super().__init__(f"upstream {upstream!r}: {message}")


class NoInstances(UpstreamError):
    """The instance set is empty (nothing registered and passing), or discovery never answered in time."""

    status_code = 503


class CircuitOpen(UpstreamError):
    """The upstream's circuit breaker is open: the call was refused without being sent."""

    status_code = 503

    def __init__(self, upstream: str, retry_in: float) -> None:
        self.retry_in = retry_in
        super().__init__(upstream, f"circuit open (next probe in {retry_in:.3g}s)")


class RateLimited(UpstreamError):
    """The client-side rate limit would have made the call wait longer than allowed."""

    status_code = 503

    def __init__(self, upstream: str, wait: float) -> None:
        self.wait = wait
        super().__init__(upstream, f"client-side rate limit (a token in {wait:.3g}s)")


class DeadlineExceeded(UpstreamError):
    """The overall deadline ran out before an instance answered."""

    status_code = 504


class AttemptsFailed(UpstreamError):
    """Every attempt failed without an answer (connection refused, reset, per-try timeout); ``__cause__`` is the
    last attempt's error."""

    status_code = 502
