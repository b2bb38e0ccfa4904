"""The demo's terminal, read like ``docker compose up``: one line per event, prefixed by the process that wrote it.

Each child of ``stator demo`` writes its full output to its own log file (kept after the demo, path printed);
a :class:`Console` thread follows those files and prints one short line per event::

    05:25:27 instance-1 | info  registered  registry=consul id=stator-gophbp-instance-1 port=38643
    05:25:40 registry   | info  service deregistered  service_id=stator-gophbp-instance-3

Routine start/stop lines (``worker starting``, uvicorn's own) stay in the files. Access lines (``request``) are
not printed one by one: every :data:`SUMMARY_EVERY` seconds each process that served some gets one line
(``42 requests: 2xx 41, 5xx 1``), so state changes stand out. Prometheus and
Alertmanager (logfmt) show their warnings and errors only; their info chatter stays in their files. Colours
(a colour per process, yellow warnings, red errors) only on a terminal.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SUMMARY_EVERY = 5.0
POLL = 0.1
MAX_VALUE = 80  # characters of one field value on a line
MAX_FIELDS = 8
# Fields every stator line carries, or that the prefix already says.
_SKIP = frozenset({"ts", "level", "msg", "app_id", "run_id", "worker", "logger", "config"})
# Routine info lines every process writes at start and stop: kept in the files, left out of the terminal.
_QUIET = frozenset(
    {
        "worker starting",
        "worker stopped",
        "Waiting for application startup.",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
        "Shutting down",
        "Started server process",
        "Finished server process",
    }
)
_ACCESS = "request"
_COLOURS = ("36", "35", "34", "32", "33", "96", "95", "94")  # cyan, magenta, blue, green, yellow, bright...
_LEVEL_COLOURS = {"warn": "33", "error": "31"}
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass
class _Source:
    name: str
    path: Path
    colour: str
    logfmt_quiet: bool  # a logfmt program (Prometheus, Alertmanager): warnings and errors only
    offset: int = 0
    partial: bytes = b""
    statuses: Counter[str] = field(default_factory=Counter)


class Console:
    """Follows the children's log files and prints the pretty lines through ``say`` (one call per line)."""

    def __init__(
        self, say: Callable[[str], None], *, colour: bool, width: int = 10, columns: int | None = None
    ) -> None:
        self.say = say
        self.colour = colour
        self.columns = columns  # a terminal's width: each line is cut to it (one event, one screen line)
        self.width = width
        self._sources: list[_Source] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def follow(self, name: str, path: Path, *, quiet_info: bool = False) -> None:
        """Follow ``path`` (it may not exist yet) as the output of process ``name``."""
        with self._lock:
            colour = _COLOURS[len(self._sources) % len(_COLOURS)]
            self._sources.append(_Source(name, path, colour, quiet_info))
            self.width = max(self.width, len(name))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Print what is left (the last lines of processes that just stopped), then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.poll()
        self.summarise()

    def _run(self) -> None:
        next_summary = time.monotonic() + SUMMARY_EVERY
        while not self._stop.wait(POLL):
            self.poll()
            if time.monotonic() >= next_summary:
                next_summary += SUMMARY_EVERY
                self.summarise()

    def poll(self) -> None:
        """Read what every file gained since the last poll and print its events."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            for raw in _new_lines(source):
                line = self.format(source, raw)
                if line is not None:
                    with contextlib.suppress(OSError):
                        self.say(line)

    def summarise(self) -> None:
        """One line per process that served requests since the last summary."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            if not source.statuses:
                continue
            total = sum(source.statuses.values())
            parts = ", ".join(f"{k} {v}" for k, v in sorted(source.statuses.items()))
            source.statuses.clear()
            with contextlib.suppress(OSError):
                self.say(self._line(source, time.strftime("%H:%M:%S"), "info", f"{total} requests: {parts}", ""))

    # -- formatting ------------------------------------------------------------------------------------------

    def format(self, source: _Source, raw: str) -> str | None:
        """The terminal line for one log line, or None when it is counted (access) or quiet (logfmt info)."""
        text = raw.strip()
        if not text:
            return None
        if text.startswith("{"):
            try:
                record = orjson.loads(text)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                return self._json(source, record)
        if text.startswith(("ts=", "level=")) or " level=" in text:
            return self._logfmt(source, text)
        return self._line(source, time.strftime("%H:%M:%S"), "", _cut(text, 200), "")

    def _json(self, source: _Source, record: dict[str, Any]) -> str | None:
        msg = str(record.get("msg", ""))
        level = str(record.get("level", ""))
        if level == "info" and (msg in _QUIET or msg.startswith("Uvicorn running on")):
            return None
        if msg == _ACCESS:
            status = record.get("status")
            source.statuses[f"{str(status)[:1]}xx" if isinstance(status, int) else "?"] += 1
            return None
        fields = " ".join(
            f"{k}={_value(v)}" for k, v in list((k, v) for k, v in record.items() if k not in _SKIP)[:MAX_FIELDS]
        )
        return self._line(source, _clock(str(record.get("ts", ""))), level, _cut(msg, 200), fields)

    def _logfmt(self, source: _Source, text: str) -> str | None:
        pairs = {k: v.strip('"') for k, v in _LOGFMT.findall(text)}
        level = pairs.get("level", "").lower()
        if source.logfmt_quiet and level not in ("warn", "warning", "error"):
            return None
        fields = " ".join(
            f"{k}={_cut(v, MAX_VALUE)}" for k, v in pairs.items() if k not in ("ts", "level", "msg", "caller")
        )
        return self._line(source, _clock(pairs.get("ts", "")), level, _cut(pairs.get("msg", ""), 200), fields)

    def _line(self, source: _Source, clock: str, level: str, msg: str, fields: str) -> str:
        level = {"warning": "warn", "critical": "error"}.get(level, level)
        name = source.name.ljust(self.width)
        tag = level.ljust(5) if level else "     "
        if self.columns is not None and fields:
            room = self.columns - len(f"{clock} {name} | {tag} {msg}  ")
            fields = fields if len(fields) <= room else (fields[: room - 1] + "…" if room > 1 else "")
        if self.colour:
            name = f"\x1b[{source.colour}m{name}\x1b[0m"
            if level in _LEVEL_COLOURS:
                tag = f"\x1b[{_LEVEL_COLOURS[level]}m{tag}\x1b[0m"
                msg = f"\x1b[1m{msg}\x1b[0m"
            fields = f"\x1b[2m{fields}\x1b[0m" if fields else ""
        return f"{clock} {name} | {tag} {msg}" + (f"  {fields}" if fields else "")


def _new_lines(source: _Source) -> list[str]:
    try:
        with source.path.open("rb") as f:
            f.seek(source.offset)
            data = f.read(1 << 20)
    except OSError:
        return []  # not created yet
    source.offset += len(data)
    data = source.partial + data
    lines = data.split(b"\n")
    source.partial = lines.pop()  # the unfinished last line waits for its end
    return [line.decode("utf-8", "replace") for line in lines]


def _clock(ts: str) -> str:
    """``HH:MM:SS`` of an ISO-8601 (or logfmt) timestamp, else now."""
    match = re.search(r"T(\d\d:\d\d:\d\d)", ts)
    return match.group(1) if match else time.strftime("%H:%M:%S")


def _value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = _cut(text, MAX_VALUE)
    return f'"{text}"' if " " in text else text


def _cut(text: str, n: int) -> str:
    text = text.replace("\n", "⏎").replace("\x1b", "␛")  # one line, and no escape sequences from a log line
    return text if len(text) <= n else text[: n - 1] + "…"
