"""What the discovery watcher needs from a source: the :class:`Poller` protocol (declared here, by its consumer).

A poller answers one question, repeatedly: "what is the document now — after it has changed, or after a while?"
It does the source-specific waiting (Consul blocking queries, an etcd watch, a stat loop) and reports failures
as :class:`PollError` with a short ``reason`` (the ``stator_discovery_errors_total`` label). Retrying, backing
off, deduplication, decoding and publishing are the watcher's, identical for every source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

# Reasons a poll fails; each is a value of the errors_total{reason} label (set at zero from the start).
POLL_REASONS: Final = ("transport", "timeout", "http", "protocol", "oversize", "io")


@dataclass(frozen=True, slots=True)
class PollResult:
    """One observation of the source.

    ``data`` is the raw document, or None when the key/file does not exist ("no services published yet", a
    state, not an error). ``index`` is the source's version of what was observed (Consul ``X-Consul-Index``,
    etcd ``mod_revision``, the file's change count); the same data may come back with the same index when a
    wait times out. ``reset`` tells the watcher the index went backwards before this observation.
    """

    data: bytes | None
    index: int
    # The source's index went backwards since the previous observation: the source restarted without its data,
    # restored a snapshot, or is another server. A missing key seen with ``reset`` may be data loss rather than
    # a deletion, and the watcher keeps the last good set (state ``stale``) instead of emptying it.
    reset: bool = False


class PollError(Exception):
    """A poll that failed; ``reason`` is one of :data:`POLL_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in POLL_REASONS:
            raise ValueError(f"unknown poll error reason {reason!r}")
        self.reason = reason
        super().__init__(message)


@runtime_checkable
class Poller(Protocol):
    @property
    def source(self) -> str:
        """Short source name shown in /services and /monitor (``consul``, ``etcd``, ``file``)."""

    @property
    def key(self) -> str:
        """The key or path being followed."""

    async def poll(self) -> PollResult:
        """The current document: at once on the first call, then once it changed or a wait ran out.

        Raises :class:`PollError` on failure; must be cancellable at any await (shutdown cancels it).
        """

    async def aclose(self) -> None:
        """Release connections and streams. ``poll`` may be called again afterwards (it reconnects)."""

    def monitor(self) -> dict[str, Any]:
        """Source-specific state for /monitor (current index, limiter delays, ...)."""
