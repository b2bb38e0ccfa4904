"""A local OTLP/HTTP trace receiver for the benchmarks: accepts, decodes and counts spans, keeps nothing else.

    .venv/bin/python bench/otlp_sink.py [--host 127.0.0.1] [--port 4318]

``POST /v1/traces`` takes an ``ExportTraceServiceRequest`` (protobuf, optionally ``Content-Encoding: gzip``),
parses it with ``opentelemetry-proto`` and answers 200 with an empty ``ExportTraceServiceResponse``; a body that
does not parse gets 400 and is counted as an error. ``GET /stats`` returns the counters as JSON
(``exports``, ``spans``, ``bytes``, ``errors``); ``POST /reset`` zeroes them. Prints ``listening <port>`` once
bound (``--port 0`` picks a free port). HTTP/1.1 keep-alive, one thread per connection: exporters keep one
connection open, so decoding is serialized per exporter as with a real collector.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_lock = threading.Lock()
_stats = {"exports": 0, "spans": 0, "bytes": 0, "errors": 0}
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def count_spans(body: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/reset":
            with _lock:
                for key in _stats:
                    _stats[key] = 0
            self._reply(200, b"{}", "application/json")
            return
        if self.path != "/v1/traces":
            self._reply(404, b"", "text/plain")
            return
        try:
            raw = gzip.decompress(body) if self.headers.get("Content-Encoding", "") == "gzip" else body
            spans = count_spans(raw)
        except Exception:
            with _lock:
                _stats["errors"] += 1
            self._reply(400, b"", "text/plain")
            return
        with _lock:
            _stats["exports"] += 1
            _stats["spans"] += spans
            _stats["bytes"] += len(body)
        self._reply(200, _EMPTY_RESPONSE, "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(404, b"", "text/plain")
            return
        with _lock:
            body = json.dumps(_stats).encode()
        self._reply(200, body, "application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
