"""A TCP proxy in front of a real registry that can misbehave on demand: refuse, answer 500s, answer garbage,
hang - or forward faithfully. It works below HTTP, so the same proxy stands in front of Consul and etcd.

It runs its own event loop in a thread, so both sync tests driving subprocesses and async tests can use it.
Switching modes drops every open connection: a client's keep-alive connection must not outlive the behaviour
it was opened under.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Literal

Mode = Literal["forward", "refuse", "500", "garbage", "garbage200", "hang"]

GARBAGE = b"\x00\xff\xfeSSH-2.0-definitely-not-http\r\n\r\n"


class ChaosProxy:
    def __init__(self, upstream_port: int, mode: Mode = "forward") -> None:
        self.upstream_port = upstream_port
        self.mode: Mode = mode
        self.port = 0
        self.requests: dict[str, int] = {}  # requests seen per mode ("forward" counts connections)
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_mode(self, mode: Mode) -> None:
        async def switch() -> None:
            self.mode = mode
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

        self._call(switch())

    def count(self, mode: str) -> int:
        return self.requests.get(mode, 0)

    def wait_requests(self, mode: str, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(mode) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy saw {self.count(mode)} requests in mode {mode!r}, wanted {n}")
            time.sleep(0.05)

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Connection handlers still running (a forward pipe, a hang) end here, not at interpreter exit.
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- connection handling ---------------------------------------------------------------------------

    def _seen(self, mode: str) -> None:
        self.requests[mode] = self.requests.get(mode, 0) + 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        mode = self.mode
        try:
            if mode == "refuse":
                self._seen(mode)
                return
            if mode == "forward":
                self._seen(mode)
                await self._forward(reader, writer)
                return
            while True:  # one request at a time on a keep-alive connection
                if not await _read_request(reader):
                    return
                self._seen(mode)
                if mode == "hang":
                    await reader.read()  # never answer; returns once the connection is dropped (mode switch, close)
                    return
                elif mode == "garbage":
                    writer.write(GARBAGE)
                    await writer.drain()
                    return
                elif mode == "garbage200":
                    body = b"<html>upstream says hello</html>"
                    writer.write(_response(200, body, "text/html"))
                    await writer.drain()
                else:
                    writer.write(_response(500, b"rpc error: No cluster leader", "text/plain"))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return  # upstream down: the client sees the connection closed
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(up_writer)


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP/1.1 request (head and Content-Length body); False at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    if length:
        await reader.readexactly(length)
    return True


def _response(status: int, body: bytes, content_type: str) -> bytes:
    reason = {200: "OK", 500: "Internal Server Error"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body
