"""Log context carried by contextvars: what is bound here appears in every line logged in that context.

asyncio copies the context into each task, and anyio/starlette copy it into threadpool calls, so a request id
bound by the middleware reaches sync handlers and background work started from the request.
The bound fields live in one immutable dict per context: binding makes a new dict, reading never copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

_EMPTY: Mapping[str, Any] = {}
_fields: ContextVar[Mapping[str, Any]] = ContextVar("stator_log_fields", default=_EMPTY)


def bound() -> Mapping[str, Any]:
    """The fields bound in the current context (do not mutate)."""
    return _fields.get()


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to the current context; returns a token for :func:`reset`."""
    return _fields.set({**_fields.get(), **fields})


def reset(token: Token[Mapping[str, Any]]) -> None:
    """Undo a :func:`bind`."""
    _fields.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields for the duration of a ``with`` block."""
    token = bind(**fields)
    try:
        yield
    finally:
        _fields.reset(token)
