"""The app the profiling tests serve: CPU burners with known names, a parked sleeper, an allocator, and the pprof
endpoints mounted at /-/debug/pprof, all behind a real stator Service on a real loopback uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stator.config import load_settings
from stator.logs import Logger, MemorySink
from stator.profiling import Profiler
from stator.service import Service

RETAINED: list[bytes] = []


def ids_for(request_id: str) -> tuple[str, str]:
    """The (trace_id, span_id) the test tracer gives a request: derived from its request id."""
    digest = hashlib.sha256(request_id.encode()).hexdigest()
    return digest[:32], digest[32:48]


class DerivedTracer:
    """A RequestTracer whose ids are a function of the request id, so a test knows each request's span."""

    def start(
        self, scope: Any, method: str, traceparent: bytes | None, tracestate: bytes | None, request_id: str
    ) -> tuple[Any, dict[str, str]]:
        trace_id, span_id = ids_for(request_id)
        return None, {"trace_id": trace_id, "span_id": span_id}

    def finish(self, span: Any, route: str, status: int, exc: BaseException | None) -> dict[str, str] | None:
        return None


def burn_alpha(slice_s: float) -> int:
    deadline = time.perf_counter() + slice_s
    n = 0
    while time.perf_counter() < deadline:
        for i in range(300):
            n += i * i
    return n


def burn_beta(slice_s: float) -> int:
    deadline = time.perf_counter() + slice_s
    n = 0
    while time.perf_counter() < deadline:
        for i in range(300):
            n += i * i
    return n


BURNERS = {"alpha": burn_alpha, "beta": burn_beta}


async def burn(request: Request) -> Response:
    """Burn CPU in burn_<name> for ``seconds``, yielding to the loop every 25 ms (so requests interleave)."""
    fn = BURNERS[request.path_params["name"]]
    end = time.perf_counter() + float(request.query_params.get("seconds", "1"))
    while time.perf_counter() < end:
        fn(0.025)
        await asyncio.sleep(0)
    return JSONResponse({"burned": request.path_params["name"]})


async def parked(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return JSONResponse({"slept": True})


def allocate_marker_blocks(count: int) -> int:
    blocks = [bytes(4096) + str(i).encode() for i in range(count)]
    RETAINED.extend(blocks)
    return len(blocks)


async def alloc(request: Request) -> Response:
    return JSONResponse({"allocated": allocate_marker_blocks(int(request.query_params.get("count", "500")))})


@dataclass
class Server:
    service: Service
    profiler: Profiler
    sink: MemorySink
    base: str
    loop_kind: str

    @property
    def pprof(self) -> str:
        return f"{self.base}/-/debug/pprof"


def build(env: dict[str, str] | None = None) -> tuple[Service, Profiler, MemorySink]:
    """The service as users get it: the profiler is the Service's own (STATOR_PROFILE_ENABLED, on by default),
    its endpoints at /-/debug/pprof/, and the observability middleware fills its task table per request."""
    routes = [Route("/burn/{name}", burn), Route("/sleep", parked), Route("/alloc", alloc)]
    sink = MemorySink()
    settings = load_settings(
        {"STATOR_WAVE_ENABLED": "false", "STATOR_HTTP_HOST": "127.0.0.1", "STATOR_HTTP_PORT": "0", **(env or {})}
    )
    logger = Logger(app_id="test", run_id="Run0001", sink=sink, level="info")
    service = Service(settings, app=Starlette(routes=routes), logger=logger, tracer=DerivedTracer())
    assert service.profiler is not None
    return service, service.profiler, sink


@contextmanager
def serve(loop_kind: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Serve on a loopback port from a thread running an ``asyncio`` or ``uvloop`` event loop."""
    service, profiler, sink = build(env)
    factory = None
    if loop_kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    result: dict[str, Any] = {}

    def run() -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            result["loop_obj"] = runner.get_loop()
            result["loop"] = type(runner.get_loop()).__module__
            result["code"] = runner.run(service.serve())

    thread = threading.Thread(target=run, name=f"server-{loop_kind}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while (service.address is None or service.state != "running") and time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"server thread died: {result}")
        time.sleep(0.02)
    assert service.address is not None, "server did not start"
    try:
        yield Server(service, profiler, sink, f"http://127.0.0.1:{service.address[1]}", loop_kind)
    finally:
        loop = result.get("loop")
        result["loop_obj"].call_soon_threadsafe(service.request_stop)
        thread.join(30)
        profiler.close()
        assert not thread.is_alive(), "server did not stop"
        assert loop is not None and (loop_kind != "uvloop" or loop.startswith("uvloop"))
