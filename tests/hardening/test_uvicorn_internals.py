"""The edge subclasses uvicorn internals: this fails loudly, naming what changed, when a uvicorn upgrade moves them."""

from __future__ import annotations

import pytest
import uvicorn

from stator.http import protocol
from stator.http.protocol import Edge, EdgeLimits, classify, internals_problems
from stator.logs import Logger, MemorySink

VERIFIED = ((0, 54), (0, 55))  # [lower, upper): the range the overrides were read against


def test_the_httptools_internals_the_edge_overrides_are_still_there() -> None:
    assert internals_problems() == []


def test_uvicorn_is_in_the_verified_range() -> None:
    version = tuple(int(p) for p in uvicorn.__version__.split(".")[:2])
    assert VERIFIED[0] <= version < VERIFIED[1], (
        f"uvicorn {uvicorn.__version__}: re-read uvicorn/protocols/http/httptools_impl.py against"
        " stator/http/protocol.py (data_received, _start_asgi_task, the callbacks), then widen VERIFIED"
    )


def test_changed_internals_fall_back_to_plain_httptools_with_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MemorySink()
    edge = Edge(EdgeLimits(), Logger(app_id="t", run_id="r", sink=sink))
    assert isinstance(edge.protocol_class(), type)
    monkeypatch.setattr(protocol, "internals_problems", lambda: ["HttpToolsProtocol.data_received is gone"])
    assert edge.protocol_class() == "httptools"
    assert any(b"uvicorn internals changed" in line for line in sink.lines)


def test_parser_errors_map_to_a_closed_set_of_reasons() -> None:
    cases = {
        "Invalid method encountered": "bad_request_line",
        "Expected HTTP/, RTSP/ or ICE/": "bad_request_line",
        "Invalid char in url path": "bad_path",
        "Invalid header token": "bad_header",
        "Invalid character in chunk size": "bad_chunk",
        "Invalid character in Content-Length": "bad_content_length",
        "Transfer-Encoding can't be present with Content-Length": "length_and_chunked",
        "something new": "malformed",
    }
    for message, reason in cases.items():
        assert classify(message) == reason
        assert reason in protocol.REASONS
