"""Assembling the registry (state, checks, API, persistence) and serving it over HTTP."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

from stator.logs import Logger
from stator.registry.app import RegistryApp
from stator.registry.checks import CheckRunner
from stator.registry.http import Server
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
    session_ttl_multiplier: float = 2.0,
    stagger: Any = None,
    rng: random.Random | None = None,
) -> RegistryApp:
    """A ready-to-serve registry. Every timing knob defaults to Consul's value; tests shrink them.

    ``session_ttl_multiplier`` is Consul's ``SessionTTLMultiplier`` (2: a session ends TTL x 2 after its last
    renewal). Lowering it is a dev/test-only knob (``--dev-session-ttl-multiplier``): clients keep Consul's
    10 s minimum TTL and still see their sessions expire in a fraction of the time."""
    state = State(
        node_name=node_name,
        datacenter=datacenter,
        node_address=node_address,
        dcsa_min=dcsa_min,
        session_ttl_multiplier=session_ttl_multiplier,
    )
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


def build_server(app: RegistryApp, *, graceful_timeout: float = 5.0) -> Server:
    return Server(app, app.logger, graceful_timeout=graceful_timeout)


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
