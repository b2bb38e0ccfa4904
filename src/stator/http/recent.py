"""The last slow and failed requests of one process, for the instance pages (``/-/ui/requests``).

Two bounded deques, one for slow requests (duration >= ``STATOR_HTTP_SLOW``) and one for failures (status >= 500),
each holding the newest :data:`KEEP` entries. The observability middleware calls :meth:`RecentRequests.add` only
in the branch where a request already was slow or failed: a fast successful request never reaches this module.
Entries are appended on the event-loop thread; a page reads them with ``list(deque)`` (one C-level copy).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

KEEP = 100  # entries per kind
MAX_PATH = 256  # a client chooses the path: kept bounded


@dataclass(frozen=True, slots=True)
class RecentRequest:
    at: float  # wall-clock end of the request (epoch seconds)
    method: str
    route: str
    path: str
    status: int
    duration: float  # seconds
    request_id: str
    trace_id: str | None
    span_id: str | None
    error: str | None  # the exception type when the request raised


class RecentRequests:
    def __init__(self, keep: int = KEEP) -> None:
        self.slow: deque[RecentRequest] = deque(maxlen=keep)
        self.failed: deque[RecentRequest] = deque(maxlen=keep)
        self.slow_total = 0
        self.failed_total = 0

    def add(
        self,
        *,
        slow: bool,
        method: str,
        route: str,
        path: str,
        status: int,
        duration: float,
        fields: dict[str, Any],
        error: BaseException | None,
    ) -> None:
        """Keep one slow or failed request (both deques when it was both)."""
        trace_id = fields.get("trace_id")
        span_id = fields.get("span_id")
        entry = RecentRequest(
            at=time.time(),
            method=method,
            route=route,
            path=path[:MAX_PATH],
            status=status,
            duration=duration,
            request_id=str(fields.get("request_id", "")),
            trace_id=str(trace_id) if trace_id else None,
            span_id=str(span_id) if span_id else None,
            error=type(error).__name__ if error is not None else None,
        )
        if slow:
            self.slow.append(entry)
            self.slow_total += 1
        if status >= 500:
            self.failed.append(entry)
            self.failed_total += 1
