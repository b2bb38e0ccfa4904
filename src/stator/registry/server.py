"""Assembling the registry (state, checks, API, persistence) and serving it with uvicorn."""

from __future__ import annotations

import asyncio
import random
import socket
import weakref
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stator.logs import Logger
from stator.registry.api import RegistryApp
from stator.registry.checks import CheckRunner
from stator.registry.persist import Persister
from stator.registry.state import State


def create_app(
    logger: Logger,
    *,
    data_dir: Path | None = None,
    node_name: str = "stator-registry",
    datacenter: str = "dc1",
    node_address: str = "127.0.0.1",
    dcsa_min: float = 60.0,
    reap_interval: float = 30.0,
    min_interval: float = 1.0,
    check_update_interval: float = 300.0,
    tombstone_ttl: float = 900.0,
    max_query_time: float = 600.0,
    default_query_time: float = 300.0,
    stagger: Any = None,
    rng: random.Random | None = None,
) -> RegistryApp:
    """A ready-to-serve registry. Every timing knob defaults to Consul's value; tests shrink them."""
    state = State(node_name=node_name, datacenter=datacenter, node_address=node_address, dcsa_min=dcsa_min)
    runner = CheckRunner(
        state,
        logger,
        reap_interval=reap_interval,
        min_interval=min_interval,
        check_update_interval=check_update_interval,
        tombstone_ttl=tombstone_ttl,
        stagger=stagger,
        rng=rng,
    )
    persister = Persister(state, data_dir, logger) if data_dir is not None else None
    return RegistryApp(
        state,
        runner,
        logger,
        persister=persister,
        max_query_time=max_query_time,
        default_query_time=default_query_time,
        rng=rng,
    )


class RegistryServer(uvicorn.Server):
    """uvicorn's server, releasing parked blocking queries as soon as shutdown starts.

    uvicorn waits for in-flight requests before it runs the lifespan shutdown; a long poll is in flight for up
    to ten minutes, so without this a SIGTERM would wait for the graceful-shutdown timeout.
    """

    def __init__(self, config: uvicorn.Config, app: RegistryApp) -> None:
        super().__init__(config)
        self.registry_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.registry_app.begin_shutdown()
        await super().shutdown(sockets)


class _Flusher:
    """The connections of one event loop holding back writes, flushed together by a single callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[_CoalescingTransport] = []

    def add(self, transport: _CoalescingTransport) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(transport)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for transport in pending:
            transport.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


class _CoalescingTransport:
    """Sends everything written to a connection during one event-loop iteration as one ``send``, at the end of
    that iteration, together with every other connection's.

    Two effects, both measured with 1,000 parked queries released by one PUT (bench/bench_registry.py):
    uvicorn writes a response's status line and headers, then its body, and these become a single syscall; and
    all woken handlers run first, then all their sends follow back to back. Back-to-back sends on loopback cost a
    third of sends interleaved with Python work (~15 us instead of ~45 us each here: the receiving clients are
    still awake instead of being woken for every response), which halves the wake-up p99. Bytes and their order
    per connection are unchanged; ``close``/``write_eof`` flush first; an answer waits at most one iteration.
    """

    __slots__ = ("_flusher", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        loop = asyncio.get_running_loop()
        flusher = _flushers.get(loop)
        if flusher is None:
            flusher = _flushers[loop] = _Flusher(loop)
        self._flusher = flusher

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._flusher.add(self)
        else:
            self._held += data

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Protocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]


def build_server(app: RegistryApp, *, graceful_timeout: float = 5.0) -> RegistryServer:
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        interface="asgi3",
        proxy_headers=False,
        server_header=False,
        ws="none",
        http=_Protocol,
        backlog=4096,
        timeout_graceful_shutdown=int(graceful_timeout),
    )
    return RegistryServer(config, app)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (bound before serving, so the real port of ``:0`` is known and logged)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in ("", "::") else 1)
    sock.bind(addr)
    # Listen now: clients that connect while startup runs wait in the backlog instead of being refused.
    sock.listen(4096)
    sock.setblocking(False)
    return sock
