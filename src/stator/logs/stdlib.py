"""Library logs (uvicorn, httpx, asyncio, ``warnings``) through the service's own logger: one stream, one format.

Stdlib logging is process-global, so the bridge is the one place stator touches global state, and it keeps it
honest: a record goes to the :class:`Logger` of the service whose task (or thread, via the copied context) emitted
it — :data:`current_logger` — and only when it was emitted outside any service to the most recently installed one.
Two services in one process therefore keep their library logs apart.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from stator.logs.logger import Logger

current_logger: ContextVar[Logger | None] = ContextVar("stator_current_logger", default=None)

# LogRecord attributes that are not user-supplied ``extra=`` fields.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_LIBRARY_LEVELS = {"uvicorn.access": logging.WARNING, "httpx": logging.WARNING, "httpcore": logging.WARNING}


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class BridgeHandler(logging.Handler):
    """A stdlib handler that re-emits records through a stator :class:`Logger`."""

    def __init__(self, fallback: Logger) -> None:
        super().__init__(logging.DEBUG)
        self.fallback = fallback

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = current_logger.get() or self.fallback
            kv: dict[str, Any] = {"logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _STANDARD and not key.startswith("_"):
                    kv[key] = value
            exc = record.exc_info[1] if record.exc_info else None
            logger.log(_level_name(record.levelno), record.getMessage(), kv, exc)
        except Exception:
            self.handleError(record)


def install(logger: Logger, level: str = "info") -> Callable[[], None]:
    """Route the root stdlib logger (and ``warnings``) through ``logger``; returns an uninstall function.

    uvicorn's own handlers are removed so its lines are not written twice; its access log is kept at warning
    because the stator middleware writes a richer access line.
    """
    root = logging.getLogger()
    previous = (list(root.handlers), root.level)
    handler = BridgeHandler(logger)
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper()))
    touched: list[tuple[logging.Logger, list[logging.Handler], bool, int]] = []
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "asyncio"):
        lg = logging.getLogger(name)
        touched.append((lg, list(lg.handlers), lg.propagate, lg.level))
        lg.handlers = []
        lg.propagate = True
        lg.setLevel(_LIBRARY_LEVELS.get(name, logging.NOTSET))
    logging.captureWarnings(True)
    warnings.simplefilter("default")

    def uninstall() -> None:
        root.handlers, root.level = previous
        for lg, handlers, propagate, lvl in touched:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(lvl)
        logging.captureWarnings(False)

    return uninstall
