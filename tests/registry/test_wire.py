"""Go standard-library behaviours reproduced in stator.registry.wire and decode."""

from __future__ import annotations

import pytest

from stator.config.durations import DurationError
from stator.config.durations import format_duration_ns as duration_string
from stator.config.durations import parse_duration_ns as parse_duration
from stator.registry.decode import DecodeError, load_json
from stator.registry.wire import (
    GoError,
    clean_path,
    parse_bool,
    parse_query,
    parse_uint,
    query_encode,
)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("10s", 10 * 10**9),
        ("120000ms", 120 * 10**9),
        ("1m30s", 90 * 10**9),
        ("1.5h", 5400 * 10**9),
        ("-2s", -2 * 10**9),
        ("+3ms", 3 * 10**6),
        ("1\u00b5s", 1000),
        ("1\u03bcs", 1000),
        ("1us", 1000),
        (".5s", 5 * 10**8),
        ("1.s", 10**9),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        ("abc", 'time: invalid duration "abc"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
        ("9999999999999999999h", 'time: invalid duration "9999999999999999999h"'),
        ("10 s", 'time: unknown unit " s" in duration "10 s"'),
    ],
)
def test_parse_duration_errors(text: str, error: str) -> None:
    with pytest.raises(DurationError) as exc:
        parse_duration(text)
    assert str(exc.value) == error


def test_duration_string() -> None:
    assert duration_string(0) == "0s"
    assert duration_string(10**9) == "1s"
    assert duration_string(90 * 10**9) == "1m30s"
    assert duration_string(5 * 10**8) == "500ms"
    assert duration_string(1500) == "1.5\u00b5s"
    assert duration_string(3600 * 10**9) == "1h0m0s"


def test_parse_uint_and_bool() -> None:
    assert parse_uint("42") == 42
    for bad in ("", "+1", "-1", "1_0", "1e3", "\u00b2", " 1"):
        with pytest.raises(GoError, match="invalid syntax"):
            parse_uint(bad)
    with pytest.raises(GoError, match="value out of range"):
        parse_uint(str(1 << 64))
    assert parse_bool("T") is True and parse_bool("0") is False
    with pytest.raises(GoError):
        parse_bool("yes")


def test_parse_query_is_gos() -> None:
    q = parse_query(b"recurse&tag=a&tag=b&x=1%202&y=a+b&bad=%zz&semi=1;2&=empty")
    assert q == {"recurse": [""], "tag": ["a", "b"], "x": ["1 2"], "y": ["a b"], "": ["empty"]}
    assert query_encode({"cas": ["1"], "acquire": ["s p"]}) == "acquire=s+p&cas=1"


def test_clean_path() -> None:
    assert clean_path("/v1/kv//a") == "/v1/kv/a"
    assert clean_path("/v1/kv/a/../b/") == "/v1/kv/b/"
    assert clean_path("/v1/kv/") == "/v1/kv/"
    assert clean_path("/") == "/"


def test_load_json_reads_first_value_only() -> None:
    assert load_json(b'{"a":1} trailing garbage') == [("a", 1)]
    with pytest.raises(DecodeError, match=r"^EOF$"):
        load_json(b" ")
    with pytest.raises(DecodeError, match="unexpected EOF"):
        load_json(b'{"a":')
    with pytest.raises(DecodeError, match="invalid character"):
        load_json(b"NaN")
    with pytest.raises(DecodeError):
        load_json(b"[" * 100_000)
