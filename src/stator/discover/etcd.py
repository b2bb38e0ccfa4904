"""Following one etcd key through etcd's v3 JSON gateway (``/v3/kv/range`` and a streaming ``/v3/watch``).

Why the gateway over httpx rather than a gRPC client: the maintained Python etcd clients are synchronous or
pull in grpcio (a large native dependency) for what is two HTTP calls here; the gateway ships with every etcd
since 3.3 and speaks JSON lines with base64 keys and values.

How the key is followed:

* first a range read gives the value and the store revision R;
* then one watch stream from R+1: every change after the read is delivered, none twice;
* after a disconnect the watch resumes from the last revision seen + 1, so changes made while disconnected
  arrive on reconnect; if etcd compacted those revisions away (``compact_revision`` in the answer), the
  poller starts over with a range read;
* a watch idle for ``wait`` is closed and reopened from the same revision: a connection that died silently
  (no RST from a vanished host) is noticed within ``wait``, as with Consul's blocking queries;
* a store whose revision is *behind* the last one seen (etcd restarted with an empty data dir, a restored
  backup, another cluster) would hold a resumed watch until it reaches the old revision — silently, maybe for
  ever. The watch's "created" answer carries the store's revision: when it is behind, the poller reads the key
  afresh and flags the result ``reset``, so a key missing from the new store keeps the last good set (a
  compaction is not a reset: it drops history, never live keys, so a key missing after one was deleted).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson

from stator.client import HTTPClient, ResponseTooLarge, UnexpectedStatus, aexpect_2xx, expect_2xx
from stator.discover.poller import PollError, PollResult

_ENVELOPE = 64 * 1024


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class _StoreWentBack(Exception):
    """The watch was created on a store whose revision is behind the last one seen."""


def _int(value: Any) -> int:
    # grpc-gateway encodes int64 as JSON strings ("revision": "42"); absent means 0.
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise PollError("protocol", f"bad revision {value!r} from etcd") from None


def http_error(exc: UnexpectedStatus | httpx.HTTPError, call: str) -> PollError:
    """A failed etcd call (``call``: "range" or "watch") as the poll error the watcher backs off on."""
    if isinstance(exc, UnexpectedStatus):
        return PollError("http", str(exc))
    if isinstance(exc, httpx.TimeoutException):
        return PollError("timeout", f"etcd {call} timed out: {type(exc).__name__}: {exc}")
    return PollError("transport", f"etcd {call} failed: {type(exc).__name__}: {exc}")


class WatchStream:
    """One etcd v3 watch over the JSON gateway (shared by the key poller here and the upstream prefix poller):
    opened on demand from a create request, read as newline-delimited messages of at most ``limit`` bytes, closed
    on idle, error or shutdown. No read timeout on the stream itself: the caller bounds idleness with ``wait``."""

    def __init__(self, request_timeout: float, limit: int) -> None:
        self.request_timeout = request_timeout
        self.limit = limit
        self.opened = 0  # streams opened (reconnects show here)
        self._stack: AsyncExitStack | None = None
        self._lines: AsyncIterator[bytes] | None = None

    @property
    def watching(self) -> bool:
        return self._lines is not None

    async def next_message(self, http: HTTPClient, create_request: dict[str, Any]) -> bytes:
        lines = self._lines or await self._open(http, create_request)
        line = await anext(lines, None)
        if line is None:
            raise PollError("transport", "etcd closed the watch stream")
        return line

    async def _open(self, http: HTTPClient, create_request: dict[str, Any]) -> AsyncIterator[bytes]:
        stack = AsyncExitStack()
        try:
            resp = await stack.enter_async_context(
                http.stream(
                    "POST",
                    "/v3/watch",
                    json={"create_request": create_request},
                    timeout=httpx.Timeout(self.request_timeout, read=None),
                )
            )
            await aexpect_2xx(resp)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._lines = _bounded_lines(resp, self.limit)
        self.opened += 1
        return self._lines

    async def close(self) -> None:
        stack, self._stack, self._lines = self._stack, None, None
        if stack is not None:
            await stack.aclose()


class EtcdPoller:
    """A :class:`~stator.discover.poller.Poller` over an etcd v3 key."""

    source = "etcd"

    def __init__(
        self,
        client_factory: Callable[[], HTTPClient],
        key: str,
        *,
        wait: float = 300.0,
        max_bytes: int = 1_048_576,
        request_timeout: float = 10.0,
    ) -> None:
        self._factory = client_factory
        self._client: HTTPClient | None = None
        self._key = key
        self._key_b64 = _b64(key)
        self.wait = wait
        self.max_bytes = max_bytes
        self.request_timeout = request_timeout
        self.revision = 0  # store revision everything up to which has been seen; 0 = read with a range first
        self._data: bytes | None = None
        self._index = 0
        self._watch = WatchStream(request_timeout, max_bytes * 4 // 3 + _ENVELOPE)
        self.resyncs = 0  # range reads after a compaction
        self.seen = 0  # the highest store revision observed (kept across errors and resyncs)
        self.resets = 0  # how often the store was found behind ``seen``
        self._went_back = False

    @property
    def key(self) -> str:
        return self._key

    @property
    def watches(self) -> int:
        """Watch streams opened (reconnects show here)."""
        return self._watch.opened

    def _http(self) -> HTTPClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def poll(self) -> PollResult:
        if self.revision == 0:
            return await self._range()
        return await self._next_change()

    # -- range ---------------------------------------------------------------------------------------------

    async def _range(self) -> PollResult:
        try:
            resp = await self._http().post(
                "/v3/kv/range",
                json={"key": self._key_b64},
                max_body=self.max_bytes * 4 // 3 + _ENVELOPE,
            )
            expect_2xx(resp)
        except ResponseTooLarge as exc:
            raise PollError("oversize", f"etcd answer for {self._key!r} too large: {exc}") from None
        except (UnexpectedStatus, httpx.HTTPError) as exc:
            raise http_error(exc, "range") from None
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise PollError("protocol", f"etcd answer is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict):
            raise PollError("protocol", "etcd range answer without header")
        revision = _int(body["header"].get("revision"))
        went_back = self._went_back or revision < self.seen
        if went_back and not self._went_back:
            self.resets += 1
        self._went_back = False
        self.seen = revision
        kvs = body.get("kvs") or []
        if not isinstance(kvs, list) or len(kvs) > 1:
            raise PollError("protocol", f"non-singular etcd range results for key: {self._key}")
        if kvs:
            self._data = self._value(kvs[0])
            self._index = _int(kvs[0].get("mod_revision"))
        else:
            self._data = None
            self._index = revision
        self.revision = max(revision, 1)
        return PollResult(self._data, max(self._index, 1), reset=went_back)

    def _value(self, kv: Any) -> bytes:
        if not isinstance(kv, dict):
            raise PollError("protocol", "etcd kv is not an object")
        raw = kv.get("value") or ""  # the gateway omits empty values
        if not isinstance(raw, str):
            raise PollError("protocol", "etcd value is not a string")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise PollError("protocol", f"etcd value of {self._key!r} is not base64") from None
        if len(data) > self.max_bytes:
            raise PollError("oversize", f"value of {self._key!r} is {len(data)} bytes, over {self.max_bytes}")
        return data

    # -- watch ---------------------------------------------------------------------------------------------

    async def _next_change(self) -> PollResult:
        try:
            request = {"key": self._key_b64, "start_revision": str(self.revision + 1)}
            async with asyncio.timeout(self.wait):
                while True:
                    result = self._handle(await self._watch.next_message(self._http(), request))
                    if result is not None:
                        return result
        except TimeoutError:
            # Idle for `wait`: reconnect next time (a silently dead connection would otherwise hang forever).
            await self._watch.close()
            return PollResult(self._data, max(self._index, 1))
        except _StoreWentBack:
            await self._watch.close()
            self.resets += 1
            self._went_back = True
            self.revision = 0
            return await self._range()
        except PollError as exc:
            await self._watch.close()
            if exc.reason == "oversize":
                # Resuming would replay the oversized event forever; a range read shows the key as it is now
                # (still too big: reported with backoff; fixed: picked up).
                self.revision = 0
            raise
        except ResponseTooLarge as exc:
            await self._watch.close()
            self.revision = 0  # start over with a range read: it reports the size problem with backoff
            raise PollError("oversize", f"etcd watch message too large: {exc}") from None
        except (UnexpectedStatus, httpx.HTTPError) as exc:
            await self._watch.close()
            raise http_error(exc, "watch") from None

    def _handle(self, line: bytes) -> PollResult | None:
        """One watch message: a change of our key (returned), or bookkeeping (None)."""
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PollError("protocol", f"etcd watch message is not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise PollError("protocol", "etcd watch message is not an object")
        if "error" in msg or not isinstance(msg.get("result"), dict):
            raise PollError("protocol", f"etcd watch error: {msg.get('message') or msg.get('error')!r}")
        result = msg["result"]
        compacted = _int(result.get("compact_revision"))
        if compacted:
            # The revisions we would resume from are gone: read the key afresh (and watch from there).
            self.resyncs += 1
            self.revision = 0
            raise PollError("protocol", f"etcd compacted revisions up to {compacted}; re-reading {self._key!r}")
        if result.get("canceled"):
            raise PollError("protocol", f"etcd canceled the watch: {result.get('cancel_reason', '')!r}")
        header = result.get("header")
        revision = _int(header.get("revision")) if isinstance(header, dict) else 0
        if result.get("created") and revision and revision < self.revision:
            raise _StoreWentBack()
        self.seen = max(self.seen, revision)
        events = result.get("events") or []
        if not isinstance(events, list):
            raise PollError("protocol", "etcd watch events is not an array")
        change: PollResult | None = None
        for event in events:  # several changes in one message: only the last one matters
            kv = event.get("kv") if isinstance(event, dict) else None
            if not isinstance(kv, dict) or kv.get("key") != self._key_b64:
                continue
            mod = _int(kv.get("mod_revision"))
            if event.get("type") == "DELETE":
                self._data = None
            else:
                self._data = self._value(kv)
            self._index = mod
            self.revision = max(self.revision, mod)
            change = PollResult(self._data, max(mod, 1))
        # Progress notifications and "created" carry only a header: everything up to it has been seen.
        if not events and revision and not result.get("created"):
            self.revision = max(self.revision, revision)
        return change

    async def aclose(self) -> None:
        await self._watch.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def monitor(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "watching": self._watch.watching,
            "watches_opened": self._watch.opened,
            "resyncs_after_compaction": self.resyncs,
            "seen_revision": self.seen,
            "revision_resets": self.resets,
            "wait_seconds": self.wait,
        }


async def _bounded_lines(resp: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """Newline-delimited messages of a stream, refusing any longer than ``limit`` bytes."""
    buf = b""
    async for chunk in resp.aiter_bytes():
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1 :]
            if len(line) > limit:
                raise ResponseTooLarge(limit, len(line), str(resp.url))
            if line.strip():
                yield line
        if len(buf) > limit:
            raise ResponseTooLarge(limit, len(buf), str(resp.url))
    if buf.strip():
        yield buf
