"""Task and thread dumps — Go's goroutine dump for asyncio: every task with its whole await chain, every thread
with its stack, as pprof (``debug=0``), aggregated text (``debug=1``) or one entry each (``debug=2``).

``Task.get_stack()`` returns one frame per suspended task; the await chain is found by following ``cr_await``
from the task's coroutine down to the innermost awaitable (a Future, a sleep, a lock).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

from stator.profiling.attribution import RequestTable
from stator.profiling.pprof import ProfileBuilder

FrameInfo = tuple[str, str, int, int]  # name, filename, line, first line
MAX_CHAIN = 256


@dataclass
class Entry:
    """One task or thread: its stack leaf first, what it is waiting on, and what we know about it."""

    kind: str  # "task" | "thread"
    ident: int
    name: str
    state: str
    stack: list[FrameInfo]
    waiting: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def _frame_info(frame: FrameType | None, code: CodeType, line: int | None) -> FrameInfo:
    module = frame.f_globals.get("__name__") if frame is not None else None
    qualname = getattr(code, "co_qualname", code.co_name)
    name = f"{module}.{qualname}" if isinstance(module, str) else qualname
    return (name, code.co_filename, line or 0, code.co_firstlineno)


def await_chain(task: asyncio.Task[Any]) -> tuple[list[FrameInfo], str]:
    """The frames of a task's coroutine chain, leaf first, and a description of the innermost awaitable."""
    frames: list[FrameInfo] = []
    obj: Any = task.get_coro()
    waiting = ""
    for _ in range(MAX_CHAIN):
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None) or getattr(obj, "ag_code", None)
        if code is None:
            if obj is not None:
                waiting = _describe_awaitable(obj)
            break
        if frame is not None:
            frames.append(_frame_info(frame, code, frame.f_lineno))
        nxt = getattr(obj, "cr_await", None)
        if nxt is None:
            nxt = getattr(obj, "gi_yieldfrom", None)
        if nxt is None:
            nxt = getattr(obj, "ag_await", None)
        if nxt is None:
            break
        obj = nxt
    frames.reverse()
    return frames, waiting


def _describe_awaitable(obj: Any) -> str:
    if isinstance(obj, asyncio.Task):
        return f"task {obj.get_name()!r}"
    if isinstance(obj, asyncio.Future):
        return "Future (done)" if obj.done() else "Future (pending)"
    name = type(obj).__qualname__
    return "Future" if name == "FutureIter" else name  # asyncio's C future iterator: an awaited Future


def _task_state(task: asyncio.Task[Any], running: asyncio.Task[Any] | None) -> str:
    if task is running:
        return "running"
    if task.done():
        return "cancelled" if task.cancelled() else "done"
    return "cancelling" if task.cancelling() else "pending"


def task_entries(table: RequestTable, loop: asyncio.AbstractEventLoop | None = None) -> list[Entry]:
    """Every task of ``loop`` (the running one by default). Call it on the loop's thread."""
    loop = loop or asyncio.get_running_loop()
    current = asyncio.current_task(loop)
    now = time.perf_counter()
    entries = []
    for task in sorted(asyncio.all_tasks(loop), key=id):
        frames, waiting = await_chain(task)
        info: dict[str, Any] = {}
        request = table.active.get(task)
        if request is not None:
            info = table.describe(request, now)
        entries.append(
            Entry("task", id(task), task.get_name(), _task_state(task, current), frames, waiting, info),
        )
    return entries


def thread_entries() -> list[Entry]:
    frames = sys._current_frames()
    entries = []
    for thread in threading.enumerate():
        ident = thread.ident
        top = frames.get(ident) if ident is not None else None
        stack: list[FrameInfo] = []
        f: FrameType | None = top
        while f is not None and len(stack) < MAX_CHAIN:
            stack.append(_frame_info(f, f.f_code, f.f_lineno))
            f = f.f_back
        state = "running" if thread.is_alive() else "stopped"
        info: dict[str, Any] = {"daemon": thread.daemon, "native_id": thread.native_id}
        entries.append(Entry("thread", ident or 0, thread.name, state, stack, "", info))
    return entries


# -- renderings ----------------------------------------------------------------------------------------------


def to_pprof(entries: list[Entry], kind: str) -> bytes:
    builder = ProfileBuilder(
        [(f"{kind}s", "count")],
        period_type=(f"{kind}s", "count"),
        period=1,
        time_nanos=time.time_ns(),
    )
    for e in entries:
        labels: dict[str, str | int] = {kind: e.name, "state": e.state}
        for key in ("request_id", "trace_id", "span_id", "method", "route"):
            if key in e.info:
                labels[key] = str(e.info[key])
        builder.add_stack(e.stack or [(f"<{e.state}>", "", 0, 0)], [1], labels)
    return builder.gzipped()


def _stack_lines(stack: list[FrameInfo]) -> Iterator[str]:
    for name, filename, line, _ in stack:
        yield f"{name}()"
        yield f"\t{filename}:{line}"


def aggregated_text(entries: list[Entry], kind: str) -> str:
    """``debug=1``: one block per distinct stack with how many tasks/threads share it, most common first."""
    groups: dict[tuple[FrameInfo, ...], list[Entry]] = {}
    for e in entries:
        groups.setdefault(tuple(e.stack), []).append(e)
    out = [f"{kind}s profile: total {len(entries)}"]
    for stack, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        names = ", ".join(sorted({m.name for m in members})[:8])
        out.append(f"{len(members)} @ {names}")
        for name, filename, line, _ in stack:
            out.append(f"#\t{name}\t{filename}:{line}")
        out.append("")
    return "\n".join(out) + "\n"


def detailed_text(entries: list[Entry], kind: str) -> str:
    """``debug=2``: one block per task/thread, like Go's goroutine dump, with request details for request tasks."""
    out = []
    for e in entries:
        head = f"{kind} {e.ident} {e.name!r} [{e.state}"
        if "age_seconds" in e.info:
            head += f", {e.info['age_seconds']}s"
        head += "]"
        if "route" in e.info:
            details = " ".join(
                f"{k}={e.info[k]}" for k in ("route", "path", "request_id", "trace_id", "span_id") if e.info.get(k)
            )
            head += f" request {e.info.get('method', '')} {details}"
        elif kind == "thread":
            head += f" native_id={e.info.get('native_id')} daemon={e.info.get('daemon')}"
        out.append(head + ":")
        out.extend(_stack_lines(e.stack))
        if e.waiting:
            out.append(f"\tawaiting {e.waiting}")
        out.append("")
    return "\n".join(out) + "\n"
