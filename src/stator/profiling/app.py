"""The pprof endpoints as one pure ASGI app, serving paths relative to its mount point.

``index`` · ``profile?seconds=N`` (CPU+wall; or ``?start=&end=`` / ``?span_id=`` / ``?trace_id=`` /
``?request_id=`` from the continuous windows) · ``heap?seconds=N`` · ``allocs?seconds=N`` ·
``tasks?debug=0|1|2`` (alias ``goroutine``) · ``threads?debug=0|1|2`` · ``cmdline``.

Mount it anywhere (``/-/debug/pprof/``, ``/debug/pprof/``): the path is taken relative to the scope's
``root_path`` (Starlette ``Mount``) and to any of ``prefixes``. Bad input is a 400 with a JSON reason; a profile
the profiler cannot take now is a 409. A profile stops early when its client goes away.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import math
import sys
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

from stator.asgi import Receive, Scope, Send, send_bytes, send_json
from stator.config.types import redact_url
from stator.profiling import dumps
from stator.profiling.continuous import Window
from stator.profiling.heap import HeapBusy
from stator.profiling.pprof import Sample, decode, merge
from stator.profiling.profiler import MAX_CONCURRENT_PROFILES, Profiler
from stator.profiling.sampler import Aggregate

DEFAULT_SECONDS = 30.0
HEAP_DEFAULT_SECONDS = 10.0
PPROF = b"application/octet-stream"
TEXT = b"text/plain; charset=utf-8"
FILTERS = ("span_id", "trace_id", "request_id")


class BadRequest(Exception):
    def __init__(self, message: str, parameter: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.status = status


Params = dict[str, str]


class ProfilingApp:
    def __init__(self, profiler: Profiler, prefixes: Sequence[str] = ("/-/debug/pprof", "/debug/pprof")) -> None:
        self.profiler = profiler
        self.prefixes = tuple(p.rstrip("/") for p in prefixes)
        self._routes: dict[str, Callable[[Params, Receive, Send], object]] = {
            "": self._index,
            "profile": self._profile,
            "heap": self._heap,
            "allocs": self._allocs,
            "tasks": self._tasks,
            "goroutine": self._tasks,
            "threads": self._threads,
            "cmdline": self._cmdline,
        }

    def relative(self, scope: Scope) -> str:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        for prefix in self.prefixes:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                path = path[len(prefix) :]
                break
        return path.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        name = self.relative(scope)
        handler = self._routes.get(name)
        if handler is None:
            await send_json(send, 404, {"error": f"no profile named {name!r}", "profiles": sorted(self._routes)[1:]})
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
            return
        raw = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params = {key: values[-1] for key, values in raw.items()}
        try:
            await handler(params, receive, send)  # type: ignore[misc]
        except BadRequest as exc:
            reason = "busy" if exc.status == 409 else "bad_request" if exc.status == 400 else "not_found"
            self.profiler.rejected[reason] = self.profiler.rejected.get(reason, 0) + 1
            body: dict[str, object] = {"error": str(exc)}
            if exc.parameter:
                body["parameter"] = exc.parameter
            await send_json(send, exc.status, body)

    def _served(self, kind: str) -> None:
        self.profiler.served[kind] = self.profiler.served.get(kind, 0) + 1

    # -- parameters ----------------------------------------------------------------------------------------

    def _seconds(self, params: Params, default: float) -> float:
        limit = self.profiler.settings.max_seconds
        raw = params.get("seconds")
        if raw is None:
            return min(default, limit)
        try:
            seconds = float(raw)
        except ValueError:
            raise BadRequest(f"seconds must be a number, got {raw[:40]!r}", "seconds") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise BadRequest("seconds must be a positive number", "seconds")
        if seconds > limit:
            raise BadRequest(f"seconds must be at most {limit:g} (STATOR_PROFILE_MAX_SECONDS)", "seconds")
        return seconds

    @staticmethod
    def _debug(params: Params) -> int:
        raw = params.get("debug", "0") or "0"
        if raw not in ("0", "1", "2"):
            raise BadRequest("debug must be 0 (pprof), 1 (text, aggregated) or 2 (text, one entry each)", "debug")
        return int(raw)

    @staticmethod
    def _time(params: Params, name: str) -> float | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = float(raw)
        except ValueError:
            try:
                parsed = datetime.datetime.fromisoformat(raw)
            except ValueError:
                raise BadRequest(f"{name} must be unix seconds or an RFC 3339 time", name) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            value = parsed.timestamp()
        if not math.isfinite(value) or value < 0:
            raise BadRequest(f"{name} must be a time after 1970", name)
        return value

    # -- endpoints -----------------------------------------------------------------------------------------

    async def _profile(self, params: Params, receive: Receive, send: Send) -> None:
        if any(key in params for key in ("start", "end", *FILTERS)):
            if "seconds" in params:
                raise BadRequest("seconds cannot be combined with start/end/span_id", "seconds")
            await self._stored(params, send)
            return
        seconds = self._seconds(params, DEFAULT_SECONDS)
        profiler = self.profiler
        if profiler.cpu_profiles_active >= MAX_CONCURRENT_PROFILES:
            raise BadRequest(f"{MAX_CONCURRENT_PROFILES} CPU profiles are already running; retry later", status=409)
        aggregate = Aggregate(profiler.table, profiler.settings.rate)
        profiler.cpu_profiles_active += 1
        profiler.sampler.subscribe(aggregate)  # shares the sampler with any other profile or the windows
        try:
            await _wait(receive, seconds)
        finally:
            profiler.sampler.unsubscribe(aggregate)
            profiler.cpu_profiles_active -= 1
        aggregate.close()
        data = await asyncio.to_thread(aggregate.encode)
        self._served("profile")
        await _send_profile(send, data, "profile")

    async def _stored(self, params: Params, send: Send) -> None:
        profiler = self.profiler
        if not profiler.settings.continuous:
            raise BadRequest("continuous profiling is off (STATOR_PROFILE_CONTINUOUS=true turns it on)", status=404)
        start, end = self._time(params, "start"), self._time(params, "end")
        filters = {key: params[key] for key in FILTERS if params.get(key)}
        if start is None and end is None and not filters:
            raise BadRequest("give start and/or end (or span_id, trace_id, request_id)", "start")
        start_ns = int(start * 1e9) if start is not None else 0
        end_ns = int(end * 1e9) if end is not None else 2**63 - 1
        if start_ns >= end_ns:
            raise BadRequest("start must be before end", "start")
        windows = profiler.ring.windows()
        sink = profiler.window_sink
        if sink is not None:
            open_window = sink.snapshot()
            if open_window is not None:
                windows.append(open_window)
        chosen = [w for w in windows if w.overlaps(start_ns, end_ns) and _may_hold(w, filters)]
        if not chosen:
            raise BadRequest("no stored window holds samples for that query", status=404)

        def build() -> bytes | None:
            profiles = [decode(w.data) for w in chosen]

            def keep(sample: Sample) -> bool:
                return all(sample.labels.get(k) == v for k, v in filters.items())

            query = " ".join(f"{k}={v}" for k, v in params.items() if k in ("start", "end", *FILTERS))
            builder = merge(profiles, keep=keep if filters else None, comments=[f"stator windows: {query}"])
            return builder.gzipped() if builder.sample_count else None

        data = await asyncio.to_thread(build)
        if data is None:
            raise BadRequest("no samples match that query in the stored windows", status=404)
        self._served("profile_stored")
        await _send_profile(send, data, "profile")

    async def _heap(self, params: Params, receive: Receive, send: Send) -> None:
        await self._memory(params, receive, send, allocs=False)

    async def _allocs(self, params: Params, receive: Receive, send: Send) -> None:
        await self._memory(params, receive, send, allocs=True)

    async def _memory(self, params: Params, receive: Receive, send: Send, *, allocs: bool) -> None:
        seconds = self._seconds(params, HEAP_DEFAULT_SECONDS)
        self._debug_zero(params)

        async def wait(s: float) -> bool:
            return await _wait(receive, s)

        try:
            data = await self.profiler.heap.profile(seconds, allocs=allocs, wait=wait)
        except HeapBusy as exc:
            raise BadRequest(str(exc), status=409) from None
        kind = "allocs" if allocs else "heap"
        self._served(kind)
        await _send_profile(send, data, kind)

    def _debug_zero(self, params: Params) -> None:
        if self._debug(params) != 0:
            raise BadRequest("only debug=0 (pprof) is available for this profile", "debug")

    async def _tasks(self, params: Params, receive: Receive, send: Send) -> None:
        debug = self._debug(params)
        entries = dumps.task_entries(self.profiler.table)
        await self._dump(entries, "task", debug, send)

    async def _threads(self, params: Params, receive: Receive, send: Send) -> None:
        debug = self._debug(params)
        await self._dump(dumps.thread_entries(), "thread", debug, send)

    async def _dump(self, entries: list[dumps.Entry], kind: str, debug: int, send: Send) -> None:
        self._served(f"{kind}s")
        if debug == 0:
            await _send_profile(send, dumps.to_pprof(entries, kind), f"{kind}s")
        elif debug == 1:
            await send_bytes(send, 200, dumps.aggregated_text(entries, kind).encode(), TEXT)
        else:
            await send_bytes(send, 200, dumps.detailed_text(entries, kind).encode(), TEXT)

    async def _cmdline(self, params: Params, receive: Receive, send: Send) -> None:
        self._served("cmdline")
        args = [redact_url(arg) if "://" in arg else arg for arg in [sys.executable, *sys.argv]]
        await send_bytes(send, 200, "\x00".join(args).encode("utf-8", "replace"), TEXT)

    async def _index(self, params: Params, receive: Receive, send: Send) -> None:
        profiler = self.profiler
        tasks = len(asyncio.all_tasks())
        import threading

        rows = [
            ("profile?seconds=30", "", "CPU and wall-time profile; samples labelled with request, span and route."),
            ("heap?seconds=10", "", "Live allocations made during the window (tracemalloc, on demand)."),
            ("allocs?seconds=10", "", "Per-site peak of live allocations during the window, and live at the end."),
            ("tasks?debug=2", str(tasks), "Every asyncio task with its await chain (debug=0 pprof, 1 aggregated)."),
            ("threads?debug=2", str(threading.active_count()), "Every thread's stack."),
            ("cmdline", "", "The command line, NUL-separated."),
        ]
        if profiler.settings.continuous:
            rows.append(
                ("profile?start=&end=", str(len(profiler.ring)), "CPU samples of a time range, from stored windows.")
            )
        body = ["<html><head><title>/debug/pprof/</title></head><body><h1>/debug/pprof/</h1>"]
        body.append("<p>Read with <code>go tool pprof http://HOST/-/debug/pprof/profile?seconds=10</code></p>")
        body.append("<table><tr><th>count</th><th>profile</th><th>what</th></tr>")
        for href, count, what in rows:
            body.append(
                f'<tr><td>{count}</td><td><a href="{html.escape(href)}">{html.escape(href.split("?")[0])}</a></td>'
                f"<td>{html.escape(what)}</td></tr>"
            )
        body.append("</table></body></html>")
        self._served("index")
        await send_bytes(send, 200, "\n".join(body).encode(), b"text/html; charset=utf-8")


def _may_hold(window: Window, filters: dict[str, str]) -> bool:
    span = filters.get("span_id")
    if span is not None and span not in window.span_ids:
        return False
    request = filters.get("request_id")
    return request is None or request in window.request_ids


async def _send_profile(send: Send, data: bytes, name: str) -> None:
    headers = [
        (b"content-disposition", f'attachment; filename="{name}.pb.gz"'.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    ]
    await send_bytes(send, 200, data, PPROF, headers)


async def _wait(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``; return early (False) when the client disconnects."""

    async def disconnected() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        return not done
    finally:
        watcher.cancel()
