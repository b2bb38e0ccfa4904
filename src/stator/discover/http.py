"""``GET /services``: the current services set, optionally long-polled.

Answer (``application/json``)::

    {"services": [{"uri": ..., "capabilities": [{"name": ..., "capacity": ...}]}],
     "updated_at": 1718000000.123,   # Unix time of the last change (null before the first)
     "source": "consul",             # consul | etcd | file | none
     "index": 1234,                  # the source's index/revision of the published document (null before)
     "version": 7,                   # this process's change counter (0 before the first set)
     "state": "ok"}                  # waiting | ok | missing

``?after=<version>&wait=<duration>`` holds the request until the version passes ``after`` or ``wait`` (default
30s, at most 5m) runs out; an ``after`` other than the current version answers at once (a version from before
this process restarted included) — the same blocking-query idea as Consul's, for anything downstream of this service.
The version is also in the ``X-Stator-Version`` header. A long-poll ends at once when the service starts
shutting down, and when the client goes away.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import parse_qs

from stator.asgi import Receive, Scope, Send, send_bytes, send_json
from stator.config.durations import parse_duration
from stator.discover.worker import Discover, Snapshot

DEFAULT_WAIT: Final = 30.0
MAX_WAIT: Final = 300.0
_NONE: Final = Snapshot.make((), 0, "waiting", "none", None, None)


class ServicesEndpoint:
    """A pure ASGI app serving the watcher's snapshot; mount it with ``Route("/services", endpoint)``.

    It can be created before the watcher exists (the app is built before the Service) and given it later with
    :meth:`attach`; without one it answers an empty set with ``"source": "none"``.
    """

    def __init__(self, discover: Discover | None = None, *, max_wait: float = MAX_WAIT) -> None:
        self.discover = discover
        self.max_wait = max_wait

    def attach(self, discover: Discover | None) -> None:
        self.discover = discover

    def current(self) -> Snapshot:
        return self.discover.snapshot if self.discover is not None else _NONE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": f"method {method} not allowed"}, headers=[(b"allow", b"GET, HEAD")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        snap = self.current()
        if "after" in query:
            try:
                after = int(query["after"][-1])
                wait = self._wait(query.get("wait", [""])[-1])
            except ValueError as exc:
                await send_json(send, 400, {"error": str(exc)})
                return
            # Only a client at the current version waits: an `after` from the future comes from before a
            # restart of this process (versions start over), and must not be left hanging for the whole wait.
            if self.discover is not None and after == snap.version:
                snap = await self._wait_change(self.discover, after, wait, receive)
        headers = [(b"x-stator-version", str(snap.version).encode()), (b"cache-control", b"no-store")]
        await send_bytes(send, 200, snap.body, headers=headers, head=method == "HEAD")

    def _wait(self, raw: str) -> float:
        if not raw:
            return min(DEFAULT_WAIT, self.max_wait)
        try:
            seconds = float(raw)  # bare numbers are seconds
        except ValueError:
            seconds = parse_duration(raw)
        if seconds < 0:
            raise ValueError("wait must not be negative")
        return min(seconds, self.max_wait)

    async def _wait_change(self, discover: Discover, after: int, wait: float, receive: Receive) -> Snapshot:
        change = asyncio.ensure_future(discover.changed(after))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait([change, gone], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (change, gone):
                task.cancel()
            await asyncio.gather(change, gone, return_exceptions=True)
        return discover.snapshot


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
