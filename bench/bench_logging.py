"""One access-log-sized JSON line: stator's logger vs structlog, same run, same file, interleaved.

Contenders (all write one line per call to a real file, no fsync):
  A  structlog routed through stdlib logging (ProcessorFormatter + orjson), how most apps wire structlog so that
     library logs share the stream — the path issue 2 measures at ~14 us/line on this machine class;
  B  structlog's fastest documented setup (orjson JSONRenderer, BytesLoggerFactory, cached filtering logger);
  S  stator.logs.Logger (context from contextvars, redaction and truncation on).
Goal: S at least 2x faster than A. Run: .venv/bin/python bench/bench_logging.py
"""

from __future__ import annotations

import io
import logging
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

import orjson
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record_section
from stator.logs import FdSink, Logger, bind

FIELDS: dict[str, Any] = {
    "method": "GET",
    "route": "/items/{item_id}",
    "path": "/items/42",
    "status": 200,
    "duration_ms": 1.234,
    "request_bytes": 0,
    "response_bytes": 37,
    "client": "127.0.0.1:53422",
    "user_agent": "wrk/4.1.0",
}
REQUEST_ID = "0190f1e4-5b7a-7c1e-9d2a-4f3b2a1c0d9e"


def stdlib_structlog(path: str) -> Any:
    structlog.reset_defaults()
    handler = logging.FileHandler(path)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=lambda o, **kw: orjson.dumps(o).decode()),
            ]
        )
    )
    root = logging.getLogger("bench.stdlib")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(request_id=REQUEST_ID, app_id="stator", run_id="Run1234")
    log = structlog.get_logger("bench.stdlib")
    return lambda: log.info("request", **FIELDS)


def fastest_structlog(path: str) -> Any:
    structlog.reset_defaults()
    fh = open(path, "wb")  # noqa: SIM115 - kept open for the benchmark's lifetime
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(fh),
    )
    structlog.contextvars.bind_contextvars(request_id=REQUEST_ID, app_id="stator", run_id="Run1234")
    log = structlog.get_logger()
    return lambda: log.info("request", **FIELDS)


def stator_logger(path: str) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    log = Logger(app_id="stator", run_id="Run1234", sink=FdSink(fd))
    bind(request_id=REQUEST_ID)
    return lambda: log.info("request", **FIELDS)


def measure(fn: Any, number: int) -> float:
    """Best-of-5 microseconds per call (min is the least noisy estimator of the cost)."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    number = int(os.environ.get("BENCH_N", "20000"))
    out: dict[str, list[float]] = {"A": [], "B": [], "S": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp:
        makers = {"A": stdlib_structlog, "B": fastest_structlog, "S": stator_logger}
        for cycle in range(3):  # interleaved: machine noise hits every contender alike
            for key, make in makers.items():
                fn = make(os.path.join(tmp, f"{key}{cycle}.log"))
                fn()
                out[key].append(measure(fn, number))
        sample = Path(tmp, "S0.log").read_bytes().splitlines()[0]
    med = {k: statistics.median(v) for k, v in out.items()}
    names = {
        "A": "structlog via stdlib logging + orjson",
        "B": "structlog fastest (BytesLogger + orjson)",
        "S": "stator.logs.Logger",
    }
    buf = io.StringIO()
    buf.write(
        f"One access-log line ({len(sample)} bytes) to a file, best of 5 x {number} calls, median of 3 cycles.\n\n"
    )
    buf.write("| logger | µs/line | A ÷ this |\n|---|---|---|\n")
    for key in ("A", "B", "S"):
        buf.write(f"| {key} {names[key]} | {med[key]:.2f} | {med['A'] / med[key]:.2f}x |\n")
    buf.write(
        f"\nGoal: stator >= 2x faster than A. Result: {med['A'] / med['S']:.2f}x "
        f"({'met' if med['A'] / med['S'] >= 2 else 'NOT met'}); vs structlog fastest: "
        f"{med['B'] / med['S']:.2f}x.\n\nSample line: `{sample.decode()}`\n"
    )
    print(buf.getvalue())
    record_section("Logging", buf.getvalue(), ["structlog", "orjson"])


if __name__ == "__main__":
    main()
