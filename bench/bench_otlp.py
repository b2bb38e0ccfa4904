"""OTLP span encoding: the stock exporter's encoder vs stator's direct protobuf writer, same spans, same run.

Why it matters: the export thread shares the GIL with request handling, so encoding cost is paid out of request
throughput even though it runs off the event loop. 512 SERVER spans with the attributes the stator middleware
sets (the stock figure on this machine class was ~31 µs/span in peer_overhead.md).
Run: .venv/bin/python bench/bench_otlp.py
"""

from __future__ import annotations

import io
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record_section
from stator.tracing.otlp import encode_spans


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def make_spans(n: int = 512) -> list[ReadableSpan]:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench", "service.instance.id": "abc"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("stator", "0.1.0")
    for i in range(n):
        span = tracer.start_span(
            "GET",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "url.path": f"/items/{i}",
                "url.scheme": "http",
                "network.protocol.version": "1.1",
                "stator.request_id": f"0190f1e4-5b7a-7c1e-9d2a-{i:012x}",
                "server.address": "127.0.0.1",
                "server.port": 8087,
                "client.address": "127.0.0.1",
            },
        )
        span.set_attributes({"http.response.status_code": 200, "http.route": "/items/{item_id}"})
        span.update_name("GET /items/{item_id}")
        span.end()
    return keep.spans


def main() -> None:
    spans = make_spans()
    contenders = {
        "stock (opentelemetry-exporter-otlp-proto-common)": lambda: stock_encode(spans).SerializeToString(),
        "stator.tracing.otlp": lambda: encode_spans(spans),
    }
    results: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(3):  # interleaved cycles
        for name, fn in contenders.items():
            results[name].append(min(timeit.repeat(fn, number=5, repeat=5)) / 5 / len(spans) * 1e6)
    med = {k: statistics.median(v) for k, v in results.items()}
    stock, ours = med.values()
    buf = io.StringIO()
    buf.write(f"{len(spans)} SERVER spans, 10 attributes each; best of 5x5, median of 3 interleaved cycles.\n\n")
    buf.write("| encoder | µs/span | stock ÷ this |\n|---|---|---|\n")
    for name, value in med.items():
        buf.write(f"| {name} | {value:.2f} | {stock / value:.2f}x |\n")
    buf.write(
        f"\nstator's encoder is {stock / ours:.1f}x faster; output decodes to the same message "
        "(tests/tracing/test_otlp.py).\n"
    )
    print(buf.getvalue())
    record_section("OTLP encoding", buf.getvalue(), ["opentelemetry-sdk", "opentelemetry-proto", "protobuf"])


if __name__ == "__main__":
    main()
