"""An upstream's instances from etcd: every key under ``<prefix>/<service name>/``, the roster's layout.

The etcd registrar (:mod:`stator.roster.etcd`) keeps each instance at ``<prefix>/<name>/<id>`` under a lease,
its value the instance as JSON with a ``status`` that follows readiness. This poller follows the whole prefix the
way the discovery watcher's etcd poller follows one key: a range read gives the keys and the store revision R,
then one watch stream over the prefix from R+1 applies every PUT and DELETE; a broken stream resumes from the
last revision seen, a compaction starts over with a range read, an idle stream is reopened after ``wait``. A
lapsed lease (a crashed instance) deletes the key, and the watch delivers that at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from stator.client import HTTPClient, ResponseTooLarge, UnexpectedStatus, expect_2xx
from stator.discover.etcd import WatchStream, _int, http_error
from stator.discover.poller import PollError, PollResult
from stator.upstream.instances import Instance


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with ``prefix``": the prefix with its last byte incremented."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


class EtcdPrefixPoller:
    """A :class:`~stator.discover.poller.Poller` over every key under a prefix. ``data`` is a JSON array of the
    values (in key order); ``index`` the store revision they were read at."""

    source = "etcd"

    def __init__(
        self,
        client_factory: Callable[[], HTTPClient],
        prefix: str,
        *,
        wait: float = 300.0,
        max_bytes: int = 4 * 1_048_576,
        request_timeout: float = 10.0,
    ) -> None:
        self._factory = client_factory
        self._client: HTTPClient | None = None
        self._prefix = prefix
        raw = prefix.encode()
        self._range = {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}
        self.wait = wait
        self.max_bytes = max_bytes
        self.request_timeout = request_timeout
        self.revision = 0  # 0 = start with a range read
        self.values: dict[str, bytes] = {}
        self._watch = WatchStream(request_timeout, max_bytes)
        self.resyncs = 0
        self._went_back = False  # the store was found behind what we saw: flag the next read as a reset

    @property
    def key(self) -> str:
        return self._prefix

    def _http(self) -> HTTPClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _result(self, reset: bool = False) -> PollResult:
        data = b"[" + b",".join(self.values[k] for k in sorted(self.values)) + b"]"
        return PollResult(data, max(self.revision, 1), reset=reset)

    async def poll(self) -> PollResult:
        if self.revision == 0:
            return await self._read()
        return await self._next_change()

    async def _read(self) -> PollResult:
        try:
            resp = await self._http().post("/v3/kv/range", json=self._range, max_body=self.max_bytes)
            expect_2xx(resp)
        except ResponseTooLarge as exc:
            raise PollError("oversize", f"etcd answer for {self._prefix!r} too large: {exc}") from None
        except (UnexpectedStatus, httpx.HTTPError) as exc:
            raise http_error(exc, "range") from None
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise PollError("protocol", f"etcd answer is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict):
            raise PollError("protocol", "etcd range answer without header")
        kvs = body.get("kvs") or []
        if not isinstance(kvs, list):
            raise PollError("protocol", "etcd range kvs is not an array")
        values: dict[str, bytes] = {}
        for kv in kvs:
            key, value = _kv(kv)
            values[key] = value
        self.values = values
        self.revision = max(_int(body["header"].get("revision")), 1)
        reset, self._went_back = self._went_back, False
        return self._result(reset)

    async def _next_change(self) -> PollResult:
        try:
            request = {**self._range, "start_revision": str(self.revision + 1)}
            async with asyncio.timeout(self.wait):
                while True:
                    if self._handle(await self._watch.next_message(self._http(), request)):
                        return self._result()
        except TimeoutError:
            await self._watch.close()  # idle for `wait`: reopen next time (a silently dead connection)
            return self._result()
        except PollError:
            await self._watch.close()
            raise
        except ResponseTooLarge as exc:
            await self._watch.close()
            self.revision = 0
            raise PollError("oversize", f"etcd watch message too large: {exc}") from None
        except (UnexpectedStatus, httpx.HTTPError) as exc:
            await self._watch.close()
            raise http_error(exc, "watch") from None

    def _handle(self, line: bytes) -> bool:
        """Apply one watch message; True when a key under the prefix changed."""
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PollError("protocol", f"etcd watch message is not JSON: {exc}") from None
        if not isinstance(msg, dict) or "error" in msg or not isinstance(msg.get("result"), dict):
            raise PollError("protocol", f"etcd watch error: {msg!r:.200}")
        result = msg["result"]
        if _int(result.get("compact_revision")):
            self.resyncs += 1
            self.revision = 0  # the revisions to resume from are gone: read the prefix afresh
            raise PollError("protocol", f"etcd compacted the revisions of {self._prefix!r}; re-reading")
        if result.get("canceled"):
            raise PollError("protocol", f"etcd canceled the watch: {result.get('cancel_reason', '')!r}")
        header = result.get("header")
        revision = _int(header.get("revision")) if isinstance(header, dict) else 0
        if result.get("created") and 0 < revision < self.revision:
            # A store behind what we saw (restarted empty, restored): a resumed watch would wait silently until
            # it caught up. Read the prefix afresh instead.
            seen, self.revision = self.revision, 0
            self.resyncs += 1
            self._went_back = True
            raise PollError("protocol", f"etcd store revision {revision} is behind {seen}; re-reading")
        events = result.get("events") or []
        if not isinstance(events, list):
            raise PollError("protocol", "etcd watch events is not an array")
        changed = False
        for event in events:
            kv = event.get("kv") if isinstance(event, dict) else None
            if event.get("type") == "DELETE":
                key = _key(kv)
                changed |= self.values.pop(key, None) is not None
            else:
                key, value = _kv(kv)
                changed |= self.values.get(key) != value
                self.values[key] = value
            self.revision = max(self.revision, _int(kv.get("mod_revision")) if isinstance(kv, dict) else 0)
        if revision and not result.get("created"):
            self.revision = max(self.revision, revision)
        return changed

    async def aclose(self) -> None:
        await self._watch.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def monitor(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "keys": len(self.values),
            "watching": self._watch.watching,
            "watches_opened": self._watch.opened,
            "resyncs_after_compaction": self.resyncs,
            "wait_seconds": self.wait,
        }


def _key(kv: Any) -> str:
    if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
        raise PollError("protocol", "etcd kv without a key")
    try:
        return base64.b64decode(kv["key"], validate=True).decode()
    except (binascii.Error, ValueError):
        raise PollError("protocol", "etcd key is not base64 UTF-8") from None


def _kv(kv: Any) -> tuple[str, bytes]:
    key = _key(kv)
    raw = kv.get("value") or ""
    if not isinstance(raw, str):
        raise PollError("protocol", f"etcd value of {key!r} is not a string")
    try:
        return key, base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise PollError("protocol", f"etcd value of {key!r} is not base64") from None


def decode_roster(scheme: str) -> Callable[[bytes | None], tuple[Instance, ...]]:
    """A decoder of :class:`EtcdPrefixPoller` data: the roster's instance documents whose ``status`` is
    ``passing`` (a registrar reporting not-ready writes ``critical``). A value that is not such a document is
    an unusable answer (ValueError): the last good set is kept and the writer is logged once."""

    def decode(data: bytes | None) -> tuple[Instance, ...]:
        try:
            docs = orjson.loads(data or b"[]")
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"an instance under the prefix is not JSON: {exc}") from None
        out: dict[str, Instance] = {}
        for doc in docs:
            if not isinstance(doc, dict):
                raise ValueError("an instance under the prefix is not a JSON object")
            ident, address, port = doc.get("id"), doc.get("address"), doc.get("port")
            if not isinstance(ident, str) or not ident or not isinstance(address, str) or not address:
                raise ValueError(f"instance without id or address: {doc!r:.200}")
            if type(port) is not int or not 0 < port < 65536:
                raise ValueError(f"instance {ident!r} with a bad port {port!r}")
            if doc.get("status", "passing") != "passing":
                continue
            tags, meta = doc.get("tags") or [], doc.get("meta") or {}
            out[ident] = Instance(
                ident,
                address,
                port,
                scheme,
                tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
                {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
            )
        return tuple(sorted(out.values(), key=lambda i: i.id))

    return decode
