"""Structured logs: JSON lines with process identity and contextvars-bound context."""

from stator.logs.context import bind, bound, log_context, reset
from stator.logs.logger import Logger, exception_fields
from stator.logs.sinks import FdSink, LoopBufferedSink, MemorySink, Sink

__all__ = [
    "FdSink",
    "Logger",
    "LoopBufferedSink",
    "MemorySink",
    "Sink",
    "bind",
    "bound",
    "exception_fields",
    "log_context",
    "reset",
]
