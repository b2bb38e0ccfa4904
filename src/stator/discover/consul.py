"""Following one Consul KV key with blocking queries (works against Consul and stator's dev registry).

The rules (Consul's blocking-query guidance; ``docs/discovery.md``):

* the first request carries no index and answers at once; later ones send ``?index=N&wait=W`` and are held by
  Consul until the key's index passes N or W (plus up to W/16 of jitter) runs out;
* N is the ``X-Consul-Index`` header of the previous answer — not the entry's ModifyIndex (the seed's choice):
  the header also comes with a 404, so a watcher can block on a key that does not exist yet;
* an index lower than the previous one (snapshot restore, KV reaping, a different server) resets N to 0, so the
  next request starts over without an index; an index below 1 is not sane and is used as 1, never 0, so the
  following request blocks instead of spinning;
* "lower than the previous one" compares with the last index *observed*, not the one about to be sent (which
  an error already reset to 0): a registry that restarted empty answers its first read with a small index, and
  that observation is flagged ``reset`` so the watcher does not take the missing key for a deletion;
* the HTTP read timeout is above W*17/16 (W plus Consul's maximum jitter) plus the ordinary request timeout —
  the seed's client timeout equal to the wait cut every idle query short and looked like an error;
* after a timeout or a broken connection the next request is an immediate read (index 0): the registry may
  have restarted with indexes that started over, and a query blocking on an old index would sit out ``wait``;
  HTTP errors (a 500 while Consul has no leader) keep the index;
* a 404 is the state "no services published yet", not an error;
* a token bucket (:class:`~stator.discover.limiter.TokenBucket`) paces requests when Consul answers at once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from stator.client import HTTPClient, ResponseTooLarge, UnexpectedStatus, expect_2xx
from stator.discover.limiter import TokenBucket
from stator.discover.poller import PollError, PollResult

# Room for the JSON envelope around a base64 value (Key, indexes, flags): generous, still bounded.
_ENVELOPE = 64 * 1024


def wait_param(wait: float) -> str:
    """``wait`` as Consul expects it: a Go duration with a unit (milliseconds keep sub-second test waits)."""
    return f"{max(1, round(wait * 1000))}ms"


class ConsulKVPoller:
    """A :class:`~stator.discover.poller.Poller` over ``GET /v1/kv/<key>`` blocking queries."""

    source = "consul"

    def __init__(
        self,
        client_factory: Callable[[], HTTPClient],
        key: str,
        *,
        wait: float = 300.0,
        limiter: TokenBucket | None = None,
        max_bytes: int = 1_048_576,
        request_timeout: float = 10.0,
    ) -> None:
        self._factory = client_factory
        self._client: HTTPClient | None = None
        # Consul keys have no leading slash (a leading one would make the path "/v1/kv//key").
        self._key = key.lstrip("/")
        self._path = "/v1/kv/" + quote(self._key, safe="/")
        self.wait = wait
        self.limiter = limiter if limiter is not None else TokenBucket(3, 0.1)
        self.max_bytes = max_bytes
        self.request_timeout = request_timeout
        self.index = 0  # what the next request sends; 0 = no index (answer at once)
        self.last_index = 0  # the last index observed (kept across errors, unlike ``index``)
        self.resets = 0  # how often the index went backwards
        self.requests = 0

    @property
    def key(self) -> str:
        return self._key

    def _timeout(self, blocking: bool) -> httpx.Timeout:
        if not blocking:
            return httpx.Timeout(self.request_timeout)
        # Consul holds the query up to wait + wait/16 of jitter; then it still has to answer.
        return httpx.Timeout(self.request_timeout, read=self.wait * 17 / 16 + self.request_timeout)

    async def poll(self) -> PollResult:
        await self.limiter.acquire()
        if self._client is None:
            self._client = self._factory()
        blocking = self.index > 0
        params: dict[str, str | int] = {"index": self.index, "wait": wait_param(self.wait)} if blocking else {}
        self.requests += 1
        try:
            resp = await self._client.get(
                self._path,
                params=params,
                timeout=self._timeout(blocking),
                max_body=self.max_bytes * 4 // 3 + _ENVELOPE,
            )
        except ResponseTooLarge as exc:
            raise PollError("oversize", f"Consul answer for {self._key!r} too large: {exc}") from None
        except httpx.TimeoutException as exc:
            self.index = 0
            raise PollError("timeout", f"Consul request timed out: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            # After a broken connection we may be talking to a restarted registry whose indexes started over
            # (the dev registry, `consul agent -dev`, another agent): a blocking query on an index from its
            # previous life would sit out the whole wait. The next request is an immediate read instead.
            self.index = 0
            raise PollError("transport", f"Consul request failed: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 404:
            data = None
            index = self._header_index(resp, fallback=0)
        else:
            try:
                expect_2xx(resp)
            except UnexpectedStatus as exc:
                raise PollError("http", str(exc)) from None
            data, modify_index = self._entry(resp.content)
            index = self._header_index(resp, fallback=modify_index)
        went_back = self._advance(index)
        return PollResult(data, max(index, 1), reset=went_back)

    def _header_index(self, resp: httpx.Response, fallback: int) -> int:
        raw = resp.headers.get("X-Consul-Index")
        if raw is None:
            return fallback  # a proxy dropped it: the entry's ModifyIndex is the next best thing
        try:
            return int(raw)
        except ValueError:
            raise PollError("protocol", f"bad X-Consul-Index header {raw!r}") from None

    def _entry(self, body: bytes) -> tuple[bytes, int]:
        try:
            entries = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PollError("protocol", f"Consul answer is not JSON: {exc}") from None
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            raise PollError("protocol", f"non-singular kv results for key: {self._key}")
        entry = entries[0]
        value = entry.get("Value")
        modify = entry.get("ModifyIndex")
        if value is None:
            data = b""  # the key exists with an empty value
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise PollError("protocol", f"Value of {self._key!r} is not base64") from None
        else:
            raise PollError("protocol", f"Value of {self._key!r} is not a string")
        if len(data) > self.max_bytes:
            raise PollError("oversize", f"value of {self._key!r} is {len(data)} bytes, over {self.max_bytes}")
        return data, modify if type(modify) is int else 0

    def _advance(self, index: int) -> bool:
        """Take ``index`` as the next one to block on; True when it went backwards since the last observation."""
        # Sanity first: 0 is never an index to block on (it would answer at once, forever), so it counts as 1;
        # and a 0 after a real index then reads as "went backwards" only if the real index was above 1.
        index = max(index, 1)
        went_back = index < self.last_index
        self.last_index = index
        if went_back:
            self.resets += 1
        if index < self.index:
            # Backwards while blocking: our index means nothing to this server; start over with an immediate
            # read. (After an error the read was already immediate, and this index is the new starting point.)
            self.index = 0
        else:
            self.index = index
        return went_back

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def monitor(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "last_index": self.last_index,
            "wait_seconds": self.wait,
            "requests": self.requests,
            "index_resets": self.resets,
            "limiter": {
                "burst": self.limiter.burst,
                "interval_seconds": self.limiter.interval,
                "delayed": self.limiter.delayed,
                "delay_seconds_total": round(self.limiter.delay_total, 3),
            },
        }
