"""A Pyroscope-compatible ingest receiver for tests: decodes each ``POST /ingest?format=pprof`` it gets."""

from __future__ import annotations

import email.parser
import email.policy
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stator.profiling.pprof import Profile, decode


@dataclass
class Ingest:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    parts: dict[str, bytes]
    profile: Profile


@dataclass
class Receiver:
    fail_next: int = 0
    received: list[Ingest] = field(default_factory=list)
    failures: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, count: int, timeout: float = 15.0) -> list[Ingest]:
        with self.lock:
            self.lock.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            url = urlsplit(self.path)
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                receiver.failures += 1
                self.send_response(503)
                self.end_headers()
                return
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["content-type"].encode() + b"\r\n\r\n" + body
            )
            parts: dict[str, bytes] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                assert isinstance(name, str) and isinstance(payload, bytes)
                parts[name] = payload
            ingest = Ingest(
                url.path,
                {k: v[-1] for k, v in parse_qs(url.query).items()},
                {k.lower(): v for k, v in self.headers.items()},
                parts,
                decode(parts["profile"]),
            )
            with receiver.lock:
                receiver.received.append(ingest)
                receiver.lock.notify_all()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    return Handler


def start() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server
