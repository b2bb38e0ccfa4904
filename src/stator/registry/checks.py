"""Running checks for real: HTTP and TCP probes on their interval, TTL timers, the critical-service reaper,
tombstone GC and the deferred output sync. Timing knobs are constructor parameters with Consul's defaults, so
tests can shrink them without changing the logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import ssl
from collections.abc import Callable
from typing import Final

import httpx

from stator.logs import Logger
from stator.registry.model import CRITICAL, PASSING, WARNING, CheckDef
from stator.registry.state import DEFAULT_OUTPUT_MAX, State

USER_AGENT: Final = "Consul Health Check"
ACCEPT: Final = "text/plain, text/*, */*"
DEFAULT_TIMEOUT: Final = 10.0


def truncate_output(output: str, limit: int = DEFAULT_OUTPUT_MAX) -> str:
    """Consul's cap on stored output: the first ``limit`` bytes plus how much was cut."""
    raw = output.encode("utf-8", "replace")
    if len(raw) <= limit:
        return output
    head = raw[:limit].decode("utf-8", "replace")
    return f"{head} ... (captured {limit} of {len(raw)} bytes)"


def ttl_expired_output(last_output: str) -> str:
    if not last_output:
        return "TTL expired"
    return f"TTL expired (last output before timeout follows): {last_output}"


def probe_timeout(definition: CheckDef, interval: float) -> float:
    """Consul's probe timeout: ``Timeout`` if set and below the interval, else the interval when under 10 s,
    else 10 s, so a probe normally finishes before the next one starts."""
    timeout = definition.timeout_ns / 1e9
    if 0 < timeout < interval:
        return timeout
    if interval < DEFAULT_TIMEOUT:
        return interval
    return DEFAULT_TIMEOUT


def _go_op(method: str) -> str:
    # Go's url.Error names the operation "Get", "Post", ...
    return method[:1].upper() + method[1:].lower()


def split_host_port(addr: str) -> tuple[str, int] | None:
    """``net.SplitHostPort`` for ``host:port`` and ``[v6]:port``; None if malformed."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0 or addr[end + 1 : end + 2] != ":":
            return None
        host, port = addr[1:end], addr[end + 2 :]
    else:
        host, sep, port = addr.rpartition(":")
        if not sep or ":" in host:
            return None
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or (isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED):
            return True
        if "refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StatusHandler:
    """SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical, as Consul's StatusHandler."""

    def __init__(self, success_before_passing: int, failures_before_warning: int, failures_before_critical: int):
        self.success_before_passing = success_before_passing
        self.failures_before_critical = failures_before_critical
        self.failures_before_warning = failures_before_warning or failures_before_critical
        self.successes = 0
        self.failures = 0

    def apply(self, status: str, output: str) -> tuple[str, str] | None:
        """The status to record for a probe result, or None while a threshold is not reached."""
        if status in (PASSING, WARNING):
            self.successes += 1
            self.failures = 0
            return (status, output) if self.successes >= self.success_before_passing else None
        self.failures += 1
        self.successes = 0
        if self.failures >= self.failures_before_critical:
            return status, output
        if self.failures >= self.failures_before_warning:
            return WARNING, output
        return None


class CheckRunner:
    """Runs the checks the state holds; subscribed to the state as an observer."""

    def __init__(
        self,
        state: State,
        logger: Logger,
        *,
        reap_interval: float = 30.0,
        min_interval: float = 1.0,
        check_update_interval: float = 300.0,
        tombstone_ttl: float = 900.0,
        stagger: Callable[[float], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.logger = logger
        self.reap_interval = reap_interval
        self.min_interval = min_interval
        self.check_update_interval = check_update_interval
        self.tombstone_ttl = tombstone_ttl
        self._rng = rng or random.Random()
        self._stagger = stagger or (lambda interval: self._rng.uniform(0, interval))
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ttl_timers: dict[str, asyncio.TimerHandle] = {}
        self._ttl_last: dict[str, str] = {}
        self._deferred: dict[str, asyncio.TimerHandle] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._running = False
        state.observers.append(self)

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._running = True
        self._reaper = asyncio.create_task(self._reap_loop(), name="registry-reaper")
        self.checks_started(list(self.state.agent.agent_checks))

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        if self._reaper is not None:
            tasks.append(self._reaper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for handle in [*self._ttl_timers.values(), *self._deferred.values()]:
            handle.cancel()
        self._ttl_timers.clear()
        self._deferred.clear()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _client(self, skip_verify: bool) -> httpx.AsyncClient:
        client = self._clients.get(skip_verify)
        if client is None:
            # No keep-alive, as Consul: each probe opens a fresh connection, so it tests connectivity too.
            client = httpx.AsyncClient(
                verify=not skip_verify,
                limits=httpx.Limits(max_keepalive_connections=0),
                timeout=None,
                max_redirects=10,
            )
            self._clients[skip_verify] = client
        return client

    # ------------------------------------------------------------------------------------------ observer

    def changed(self) -> None:
        pass

    def checks_started(self, check_ids: list[str]) -> None:
        if not self._running:
            return  # start() picks them up
        for cid in check_ids:
            self._stop_one(cid)
            check = self.state.agent.agent_checks.get(cid)
            if check is None:
                continue
            d = check.definition
            kind = d.type()
            if kind == "ttl":
                self._ttl_last[cid] = ""
                self._arm_ttl(cid, d.ttl_ns / 1e9)
            elif kind in ("http", "tcp"):
                self._tasks[cid] = asyncio.create_task(self._probe_loop(cid, d), name=f"check:{cid}")
            elif kind:
                self.logger.warning(
                    "check type not run by the dev registry", check_id=cid, check_type=kind, status=check.status
                )

    def checks_stopped(self, check_ids: list[str]) -> None:
        for cid in check_ids:
            self._stop_one(cid)

    def _stop_one(self, cid: str) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()
        timer = self._ttl_timers.pop(cid, None)
        if timer is not None:
            timer.cancel()
        self._ttl_last.pop(cid, None)
        deferred = self._deferred.pop(cid, None)
        if deferred is not None:
            deferred.cancel()

    # ------------------------------------------------------------------------------------------ recording

    def record(self, cid: str, status: str, output: str) -> None:
        """Store a result; an output-only change reaches the catalog after ``check_update_interval``."""
        check = self.state.agent.agent_checks.get(cid)
        before = check.status if check is not None else None
        result = self.state.agent.set_check_status(cid, status, output)
        if result == "synced":
            log = self.logger.info if status == PASSING else self.logger.warning
            log("check status changed", check_id=cid, status=status, previous=before)
        elif result == "deferred":
            if self.check_update_interval <= 0:
                self.state.agent.sync_check(cid)
            elif cid not in self._deferred:
                d = self.check_update_interval
                delay = d / 2 + self._rng.uniform(0, d)
                self._deferred[cid] = asyncio.get_running_loop().call_later(delay, self._flush_deferred, cid)

    def _flush_deferred(self, cid: str) -> None:
        self._deferred.pop(cid, None)
        self.state.agent.sync_check(cid)

    # ------------------------------------------------------------------------------------------ TTL

    def _arm_ttl(self, cid: str, ttl: float) -> None:
        timer = self._ttl_timers.pop(cid, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._ttl_timers[cid] = loop.call_later(ttl, self._ttl_expired, cid)

    def _ttl_expired(self, cid: str) -> None:
        self._ttl_timers.pop(cid, None)
        if cid not in self.state.agent.agent_checks:
            return
        self.logger.warning("check missed TTL, is now critical", check_id=cid)
        self.record(cid, CRITICAL, ttl_expired_output(self._ttl_last.get(cid, "")))

    def ttl_update(self, cid: str, status: str, output: str, *, truncated: bool = False) -> None:
        """``PUT /v1/agent/check/{pass,warn,fail,update}``: record and restart the TTL timer.

        Output over the check's limit is cut once (``truncated``: the caller already did, so the marker
        reports the original size, not the size of an already-cut text)."""
        check = self.state.agent.agent_checks[cid]
        if not truncated:
            output = truncate_output(output, check.definition.output_max_size or DEFAULT_OUTPUT_MAX)
        self._ttl_last[cid] = output
        self.record(cid, status, output)
        if self._running:
            self._arm_ttl(cid, check.definition.ttl_ns / 1e9)

    # ------------------------------------------------------------------------------------------ probes

    async def _probe_loop(self, cid: str, d: CheckDef) -> None:
        interval = d.interval_ns / 1e9
        if interval < self.min_interval:
            self.logger.warning(
                "check interval below minimum, raised", check_id=cid, interval=interval, minimum=self.min_interval
            )
            interval = self.min_interval
        handler = StatusHandler(d.success_before_passing, d.failures_before_warning, d.failures_before_critical)
        await asyncio.sleep(max(0.0, self._stagger(interval)))
        while True:
            try:
                if d.type() == "http":
                    status, output = await self.http_probe(d, interval)
                else:
                    status, output = await self.tcp_probe(d, interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe must never kill its loop
                self.logger.error("check probe failed unexpectedly", exc=exc, check_id=cid)
                status, output = CRITICAL, str(exc)
            outcome = handler.apply(status, output)
            if outcome is not None:
                self.record(cid, *outcome)
            await asyncio.sleep(interval)

    async def http_probe(self, d: CheckDef, interval: float) -> tuple[str, str]:
        method = d.method or "GET"
        url = d.http
        headers: list[tuple[str, str]] = []
        names = set()
        for name, values in d.header.items():
            names.add(name.lower())
            headers.extend((name, v) for v in values)
        if "user-agent" not in names:
            headers.append(("User-Agent", USER_AGENT))
        if "accept" not in names:
            headers.append(("Accept", ACCEPT))
        limit = d.output_max_size or DEFAULT_OUTPUT_MAX
        extensions = {"sni_hostname": d.tls_server_name} if d.tls_server_name else None
        client = self._client(d.tls_skip_verify)
        try:
            async with asyncio.timeout(probe_timeout(d, interval)):
                async with client.stream(
                    method,
                    url,
                    headers=headers,
                    content=d.body.encode() if d.body else None,
                    follow_redirects=not d.disable_redirects,
                    extensions=extensions,
                ) as resp:
                    # Keep only the last `limit` bytes, as Consul's circular buffer does.
                    buf = bytearray()
                    async for chunk in resp.aiter_bytes():
                        buf += chunk
                        if len(buf) > limit:
                            del buf[: len(buf) - limit]
        except TimeoutError:
            return CRITICAL, (
                f'{_go_op(method)} "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
            )
        except httpx.UnsupportedProtocol:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            return CRITICAL, f'{_go_op(method)} "{url}": unsupported protocol scheme "{scheme}"'
        except httpx.ConnectError as exc:
            return CRITICAL, f'{_go_op(method)} "{url}": {self._dial_error(url, exc)}'
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError, ssl.SSLError) as exc:
            return CRITICAL, f'{_go_op(method)} "{url}": {exc or type(exc).__name__}'
        reason = resp.reason_phrase or ""
        text = buf.decode("utf-8", "replace")
        output = f"HTTP {method} {url}: {resp.status_code} {reason} Output: {text}"
        if 200 <= resp.status_code <= 299:
            return PASSING, output
        if resp.status_code == 429:
            return WARNING, output
        return CRITICAL, output

    @staticmethod
    def _dial_error(url: str, exc: BaseException) -> str:
        try:
            parsed = httpx.URL(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            host = parsed.host
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        except Exception:
            target = url
        if _refused(exc):
            return f"dial tcp {target}: connect: connection refused"
        return f"dial tcp {target}: {exc or type(exc).__name__}"

    async def tcp_probe(self, d: CheckDef, interval: float) -> tuple[str, str]:
        addr = d.tcp
        hp = split_host_port(addr)
        if hp is None:
            return CRITICAL, f"dial tcp: address {addr}: missing port in address"
        host, port = hp
        ctx: ssl.SSLContext | None = None
        if d.tcp_use_tls:
            ctx = ssl.create_default_context()
            if d.tls_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        try:
            async with asyncio.timeout(probe_timeout(d, interval)):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=(d.tls_server_name or host) if ctx else None
                )
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        except TimeoutError:
            return CRITICAL, f"dial tcp {addr}: i/o timeout"
        except (OSError, ssl.SSLError, ValueError) as exc:
            if _refused(exc):
                return CRITICAL, f"dial tcp {addr}: connect: connection refused"
            return CRITICAL, f"dial tcp {addr}: {exc}"
        return PASSING, f"TCP connect {addr}: Success"

    # ------------------------------------------------------------------------------------------ reaper

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                self.reap_once()
            except Exception as exc:
                self.logger.error("reaper failed", exc=exc)

    def reap_once(self) -> list[str]:
        """Deregister services whose check stayed critical too long; forget old KV tombstones."""
        reaped = []
        for sid in self.state.agent.reap_candidates():
            if self.state.agent.deregister_service(sid):
                reaped.append(sid)
                self.logger.info(
                    "check for service has been critical for too long; deregistered service", service_id=sid
                )
        self.state.kv.reap_tombstones(self.state.clock() - self.tombstone_ttl)
        return reaped
